package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine/lock"
)

// Issue 11, item 9: a lock file planted as a symlink to another file is
// refused (exit 3, a clear message) and the file is not truncated.
func TestApplyRefusesSymlinkedLockFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	victim := e.write("victim", "root-owned content\n")
	if err := os.MkdirAll(e.locks, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, lock.Path(e.locks, "sim-1")); err != nil {
		t.Fatal(err)
	}
	pf := e.write("p.yaml", plan("p", "", powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 3 || !strings.Contains(r.stderr, "symlink") {
		t.Fatalf("want exit 3 naming the symlink, got %s", r)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root-owned content\n" {
		t.Fatalf("the symlink's target was changed: %q", b)
	}
}

// Issue 11, item 11: symlinks already in the artifacts directory are
// replaced, never followed: console.log, plan.rendered.yaml, report.json
// and junit.xml do not overwrite files outside it.
func TestApplyArtifactsSymlinksNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := t.TempDir()
	names := []string{"console.log", "plan.rendered.yaml", "report.json", "junit.xml"}
	os.MkdirAll(e.art, 0o755)
	for _, n := range names {
		v := filepath.Join(outside, n)
		os.WriteFile(v, []byte("precious"), 0o644)
		if err := os.Symlink(v, filepath.Join(e.art, n)); err != nil {
			t.Fatal(err)
		}
	}
	pf := e.write("p.yaml", plan("p", "  - run: echo hello\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	for _, n := range names {
		if b, _ := os.ReadFile(filepath.Join(outside, n)); string(b) != "precious" {
			t.Errorf("%s outside the artifacts was overwritten: %.60q", n, b)
		}
		fi, err := os.Lstat(filepath.Join(e.art, n))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			t.Errorf("%s in the artifacts: %v %v", n, fi, err)
		}
	}
	readReport(t, e.art)
}
