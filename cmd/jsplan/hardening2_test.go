package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 22, item 16: a parameter cannot choose the code that runs on the
// host. A used plan or a playbook named through references must be a file
// inside the plan's directory; from elsewhere it is refused (exit 2) by
// render and apply (and validate, given the values), before anything runs.
func TestParamCannotChooseHostCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := t.TempDir()
	evilMark := filepath.Join(outside, "EVIL-RAN")
	evil := filepath.Join(outside, "evil.yaml")
	if err := os.WriteFile(evil, []byte("apiVersion: jsplan.dev/v1\nkind: Plan\nname: evil\nsteps:\n  - local: {command: 'touch \"$M\"', env: {M: "+evilMark+"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	libMark := filepath.Join(outside, "LIB-RAN")
	lib := e.write("plans/lib.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: lib\nsteps:\n  - local: {command: 'touch \"$M\"', env: {M: "+libMark+"}}\n")
	pf := e.write("plans/p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nparams:\n  p: {type: path, required: true}\nsteps:\n  - use: {plan: \"${{ params.p }}\"}\n")
	// Through a symlink inside the plan's directory: still outside.
	link := filepath.Join(filepath.Dir(pf), "link.yaml")
	if err := os.Symlink(evil, link); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{evil, link} {
		for _, cmd := range [][]string{{"render", pf, "--set", "p=" + bad},
			e.applyArgs(pf, e.art, "--set", "p="+bad)} {
			r := e.run(cmd...)
			if r.code != 2 || !strings.Contains(r.stderr, "a parameter cannot choose the code that runs on the host") {
				t.Errorf("%s with p=%s: want exit 2 and why, got %s", cmd[0], bad, r)
			}
		}
	}
	if _, err := os.Stat(evilMark); err == nil {
		t.Fatalf("the plan a parameter named ran")
	}
	// A plan inside the plan's directory may be chosen.
	if r := e.run(e.applyArgs(pf, e.art, "--set", "p="+lib)...); r.code != 0 {
		t.Fatalf("apply with p=%s: %s", lib, r)
	}
	if _, err := os.Stat(libMark); err != nil {
		t.Errorf("the library plan did not run")
	}

	// The shipped checks-over-ssh.yaml: its playbook parameter is such a
	// value.
	shipped, err := filepath.Abs("../../plans/lib/checks-over-ssh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	evilBook := filepath.Join(outside, "evil.yml")
	os.WriteFile(evilBook, []byte("- hosts: localhost\n  tasks: [{command: touch "+evilMark+"}]\n"), 0o644)
	e.write("plans/site.yml", "- hosts: all\n  tasks: []\n")
	pb := e.write("plans/pb.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: pb\nparams:\n  book: {type: path, required: true}\nsteps:\n  - use: {plan: "+shipped+", with: {playbook: \"${{ params.book }}\"}}\n")
	r := e.run("render", pb, "--set", "book="+evilBook)
	if r.code != 2 || !strings.Contains(r.stderr, "a parameter cannot choose the code that runs on the host") {
		t.Errorf("render with book=%s: want exit 2, got %s", evilBook, r)
	}
	// (sim-1 has no network for ansible: that is the only complaint)
	if r := e.run("render", pb, "--set", "book="+filepath.Join(filepath.Dir(pb), "site.yml")); strings.Contains(r.stderr, "cannot choose") || !strings.Contains(r.stderr, "no network driver") {
		t.Errorf("render with a playbook in the plan's directory: %s", r)
	}
	// Written in the plan, a path may lead anywhere: the author chose it.
	pw := e.write("plans/pw.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: pw\nsteps:\n  - use: {plan: "+evil+"}\n")
	if r := e.run("validate", pw); r.code != 0 {
		t.Errorf("validate of a plan naming a used plan itself: %s", r)
	}
}
