package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
