package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A sha256 that is not 64 hex digits is a plan error (exit 2) found before
// the run, whether written in the plan or passed to a parameter.
func TestApplyMalformedSHA256IsAPlanError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.write("demo.img", "an image\n")
	smoke, err := filepath.Abs("../../plans/examples/virtual-smoke.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := e.run(e.applyArgs(smoke, e.art, "--set", "image="+img, "--set", "sha256=abc123")...)
	if r.code != 2 || !strings.Contains(r.stderr, `sha256 "abc123" is not 64 hex digits`) {
		t.Errorf("apply with --set sha256=abc123: %s", r)
	}
	if _, err := os.Stat(filepath.Join(e.art, "console.log")); err == nil {
		t.Errorf("the run started (console.log written) before the plan error")
	}
	plan := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\n"+
		"params:\n  sum: {type: string, default: not-a-checksum}\nsteps:\n  - flash: {image: demo.img, sha256: \"${{ params.sum }}\"}\n")
	if r := e.run("validate", plan); r.code != 2 || !strings.Contains(r.stderr, `sha256 "not-a-checksum" is not 64 hex digits`) {
		t.Errorf("validate, a bad default: %s", r)
	}
	// a good one, and an empty one (no check), still run
	if r := e.run("validate", "--boards", e.boards, smoke); r.code != 0 {
		t.Errorf("validate virtual-smoke: %s", r)
	}
}

// boards list --check has a health column and exits 1 when a board is
// unhealthy (its console cannot be opened); it checks boards in parallel.
// With -o json it exits 0 and each row carries its verdict.
func TestBoardsListCheckHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var inv strings.Builder
	inv.WriteString("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n")
	for _, n := range []string{"sim-1", "sim-2", "sim-3", "sim-4"} {
		inv.WriteString("  - name: " + n + "\n    drivers:\n      sim: {password: sim-password, boot-delay: 5ms}\n")
	}
	inv.WriteString("  - name: unplugged\n    drivers:\n      serial: {port: " + filepath.Join(e.dir, "no-such-tty") + "}\n")
	boards := e.write("farm.yaml", inv.String())
	start := time.Now()
	r := e.run("boards", "list", "--check", "--boards", boards, "--lock-dir", e.locks, "--state-dir", e.state)
	took := time.Since(start)
	if r.code != 1 || !strings.Contains(r.stderr, "1 board unhealthy") {
		t.Errorf("an unplugged board: want exit 1 and a message: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 6 || !strings.Contains(lines[0], "HEALTH") {
		t.Fatalf("want a header with HEALTH and 5 rows: %s", r)
	}
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "sim-") && !strings.Contains(l, "ok (open, power off, console silent"):
			t.Errorf("a healthy sim board: %q", l)
		case strings.HasPrefix(l, "unplugged") && !strings.Contains(l, "UNHEALTHY: ") && !strings.Contains(l, "cannot open"):
			t.Errorf("the unplugged board: %q", l)
		}
	}
	// each sim check waits 3 s for a silent console: in parallel, not 12 s
	if took > 9*time.Second {
		t.Errorf("checking 5 boards took %s: not in parallel", took)
	}
	r = e.run("boards", "list", "--check", "--boards", boards, "--lock-dir", e.locks, "--state-dir", e.state, "-o", "json")
	var rows []struct {
		Name    string
		Healthy *bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || r.code != 0 || len(rows) != 5 {
		t.Fatalf("json (exit 0 for the DRA driver): %v %s", err, r)
	}
	for _, row := range rows {
		if row.Healthy == nil || *row.Healthy != (row.Name != "unplugged") {
			t.Errorf("json: %s healthy=%v", row.Name, row.Healthy)
		}
	}
}
