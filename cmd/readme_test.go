package cmd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The plans and inventories shown in README.md are valid as written (the
// plan next to a copy of plans/lib, as the README says it is saved).
func TestReadmeExamplesValidate(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1)
	dir := t.TempDir()
	libs, _ := filepath.Glob("../plans/lib/*.yaml")
	for _, l := range libs {
		b, _ := os.ReadFile(l)
		p := filepath.Join(dir, "plans", "lib", filepath.Base(l))
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checked := 0
	for i, m := range blocks {
		if !bytes.Contains(m[1], []byte("apiVersion: jsplan.dev/v1")) {
			continue
		}
		p := filepath.Join(dir, "plans", "examples", "readme-"+string(rune('a'+i))+".yaml")
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, m[1], 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if code := run([]string{"jsplan", "validate", p}, &out, &errOut); code != 0 {
			t.Errorf("README example %d is invalid:\n%s\n%s", i+1, m[1], errOut.String())
		}
		checked++
	}
	if checked < 2 {
		t.Fatalf("expected the README's plan and inventory examples, found %d", checked)
	}
}

// readmeTree copies plans/lib and plans/examples/playbooks under dir/plans,
// where README says its plan is saved.
func readmeTree(t *testing.T, dir string) {
	t.Helper()
	for _, pat := range []string{"../plans/lib/*.yaml", "../plans/examples/playbooks/*.yaml"} {
		files, _ := filepath.Glob(pat)
		if len(files) == 0 {
			t.Fatalf("no %s", pat)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel("../plans", f)
			p := filepath.Join(dir, "plans", rel)
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Every plan README shows runs as written on the board it is written for,
// the virtual board, with the demo's kind of image: on the built-in
// inventory and on README's inventory. Fragments (steps to paste into a
// plan) are validated inside a plan.
func TestReadmePlansRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs README's plans on the virtual board")
	}
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	readmeTree(t, e.dir)
	img := e.write("out/demo.img", strings.Repeat("x", 1<<20)+"\nJSPLAN_IMAGE_ID=demo-42\n")
	sum := sha256.Sum256([]byte(strings.Repeat("x", 1<<20) + "\nJSPLAN_IMAGE_ID=demo-42\n"))
	var plans, inventories []string
	for i, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1) {
		doc := string(m[1])
		switch {
		case strings.Contains(doc, "kind: Plan"):
			plans = append(plans, e.write(fmt.Sprintf("plans/examples/readme-%d.yaml", i), doc))
		case strings.Contains(doc, "kind: Boards"):
			inventories = append(inventories, e.write(fmt.Sprintf("readme-boards-%d.yaml", i), doc))
		case strings.HasPrefix(doc, "  - "):
			frag := e.write(fmt.Sprintf("plans/examples/fragment-%d.yaml", i), "apiVersion: jsplan.dev/v1\nkind: Plan\nname: fragment\nsteps:\n"+doc)
			if r := e.run("validate", frag); r.code != 0 {
				t.Errorf("README's fragment %d does not validate in a plan: %s", i, r)
			}
		}
	}
	if len(plans) == 0 || len(inventories) == 0 {
		t.Fatalf("found %d plans and %d inventories in README", len(plans), len(inventories))
	}
	for _, inv := range append([]string{""}, inventories...) {
		for _, p := range plans {
			args := []string{"apply", p, "--artifacts", filepath.Join(e.dir, "artifacts"), "--lock-dir", e.locks, "--state-dir", e.state,
				"--set", "image=" + img, "--set", "sha256=" + hex.EncodeToString(sum[:])}
			if inv != "" {
				args = append(args, "--boards", inv)
			}
			r := e.run(args...)
			if r.code != 0 {
				t.Errorf("README's plan %s on inventory %q: %s", filepath.Base(p), inv, r)
				continue
			}
			rep := readReport(t, filepath.Join(e.dir, "artifacts"))
			if rep.Status != "passed" {
				t.Errorf("README's plan: %s", rep.Status)
			}
			// collect /tmp/*.log took the board's files only
			logs, _ := filepath.Glob(filepath.Join(e.dir, "artifacts", "logs", "tmp", "*"))
			for _, l := range logs {
				if !strings.HasPrefix(filepath.Base(l), "jsplan-") {
					t.Errorf("collect /tmp/*.log took a file that is not the board's: %s", l)
				}
			}
			if len(logs) == 0 {
				t.Errorf("collect /tmp/*.log took nothing")
			}
		}
	}
}
