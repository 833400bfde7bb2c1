package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
)

func TestInventoryHealth(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "check.yaml"), []byte("apiVersion: jsplan.dev/v1\nkind: Plan\nsteps: [{log: hi}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inv := `apiVersion: jsplan.dev/v1
kind: Boards
health:
  - labels: {kind: virtual}
    plan: check.yaml
    every: 12h
  - plan: check.yaml
    after-failures: 5
boards:
  - name: own
    labels: {kind: virtual}
    health: {plan: check.yaml, every: 1h, after-failures: 3}
    drivers: {sim: {}}
  - name: kind
    labels: {kind: virtual}
    drivers: {sim: {}}
  - name: other
    labels: {kind: real}
    drivers: {sim: {}}
`
	p := filepath.Join(dir, "boards.yaml")
	if err := os.WriteFile(p, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	got := &engine.Inventory{}
	l.LoadBoards(p, got)
	if ds := l.Diagnostics(); len(ds) > 0 {
		t.Fatalf("diagnostics: %v", ds)
	}
	want := map[string][2]any{"own": {time.Hour, 3}, "kind": {12 * time.Hour, 2}, "other": {24 * time.Hour, 5}}
	for name, w := range want {
		h := got.Lookup(name).Health
		if h == nil || h.Every != w[0] || h.AfterFailures != w[1] || h.Plan != filepath.Join(dir, "check.yaml") {
			t.Errorf("%s: health %+v, want every %v after-failures %v", name, h, w[0], w[1])
		}
	}

	// Every mistake at once, each at its place.
	bad := `apiVersion: jsplan.dev/v1
kind: Boards
health:
  - labels: {kind: virtual}
    plan: missing.yaml
boards:
  - name: b
    health: {plan: check.yaml, every: soon, after-failures: 0, retries: 2}
    drivers: {sim: {}}
`
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	l = engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	l.LoadBoards(p, &engine.Inventory{})
	var all []string
	for _, d := range l.Diagnostics() {
		all = append(all, d.Error())
	}
	text := strings.Join(all, "\n")
	for _, w := range []string{"boards.yaml:5:11: health check plan \"missing.yaml\": not found", "boards.yaml:8:39: \"soon\" does not match", "boards.yaml:8:61: must be >= 1", "boards.yaml:8:64: unknown key \"retries\""} {
		if !strings.Contains(text, w) {
			t.Errorf("diagnostics lack %q:\n%s", w, text)
		}
	}
}
