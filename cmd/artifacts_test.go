package cmd

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run into a reused artifacts directory removes what the previous run
// wrote, says so, and leaves files no jsplan run wrote; its report lists
// only its own files (and those).
func TestApplyReusedArtifactsAreTheRunsOwn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write("one.txt", "one\n")
	e.write("two.txt", "two\n")
	plan := func(name string) string {
		return e.write(name+".yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: "+name+"\nsteps:\n"+
			"  - collect: {paths: \"${{ plan.dir }}/"+name+".txt\", from: local, to: files}\n")
	}
	if err := os.MkdirAll(e.art, 0o755); err != nil {
		t.Fatal(err)
	}
	e.write("artifacts/notes.txt", "a person's notes\n")

	r := e.run(e.applyArgs(plan("one"), e.art)...)
	if r.code != 0 {
		t.Fatalf("first run: %s", r)
	}
	if !strings.Contains(r.stdout, "also holds 1 file no jsplan run wrote, left as they are: notes.txt") {
		t.Errorf("the first run does not say what else the directory holds: %s", r)
	}
	if !holds(e.art, "one.txt") {
		t.Fatalf("first run collected nothing: %s", r)
	}
	r = e.run(e.applyArgs(plan("two"), e.art)...)
	if r.code != 0 {
		t.Fatalf("second run: %s", r)
	}
	if !strings.Contains(r.stdout, "artifacts: removed ") || !strings.Contains(r.stdout, "of the previous run") {
		t.Errorf("the second run does not say it removed the first run's files: %s", r)
	}
	if holds(e.art, "one.txt") {
		t.Errorf("the first run's file is still in the artifacts")
	}
	for _, f := range []string{"two.txt", "notes.txt", "report.json", "console.log"} {
		if !holds(e.art, f) {
			t.Errorf("no %s in the artifacts", f)
		}
	}
	page, err := os.ReadFile(filepath.Join(e.art, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(page), "one.txt") || !strings.Contains(string(page), "two.txt") || strings.Contains(string(page), ".jsplan-artifacts") {
		t.Errorf("report.html lists files that are not the run's (one.txt, .jsplan-artifacts) or misses two.txt")
	}
}

// holds tells whether a file named name is anywhere under dir.
func holds(dir, name string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == name {
			found = true
		}
		return nil
	})
	return found
}
