package cmd

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateReportsEveryErrorWithCaret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("bad.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: bad\ntimeout: soon\nsteps:\n  - log: a\n    timout: 1s\n  - sleep: 1s\n    power: on\n")
	r := e.run("validate", pf)
	if r.code != 2 {
		t.Fatalf("want exit 2, got %s", r)
	}
	for _, want := range []string{
		pf + ":4:10: error: malformed duration \"soon\" (at timeout)",
		pf + ":7:5: error: unknown key \"timout\" (at steps[0].timout)",
		"    timout: 1s\n   |     ^~~~~~\n",
		"did you mean \"timeout\"?",
		pf + ":9:5: error: step has 2 actions (sleep, power)",
		"3 errors in 1 file",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	r = e.run("validate", "--output", "json", pf)
	var out struct {
		Valid       bool `json:"valid"`
		Diagnostics []struct {
			File    string `json:"file"`
			Line    int    `json:"line"`
			Column  int    `json:"column"`
			Message string `json:"message"`
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 2 {
		t.Fatalf("JSON output (exit %d): %v\n%s", r.code, err, r.stdout)
	}
	if out.Valid || len(out.Diagnostics) != 3 || out.Diagnostics[1].Line != 7 || out.Diagnostics[1].Column != 5 {
		t.Errorf("JSON diagnostics: %+v", out)
	}
}

func TestValidateShippedPlans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plans, err := filepath.Abs("../plans")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.run("validate", plans); r.code != 0 || !strings.Contains(r.stdout, "valid") {
		t.Errorf("plans/ do not validate: %s", r)
	}
}

// A file named on the command line is checked or refused, never skipped
// silently; foreign YAML found in a directory is skipped.
func TestValidateNamedForeignFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	typo := e.write("typo.yaml", "apiVersion: jsplan/v1\nkind: Plan\nsteps:\n  - log: hi\n")
	r := e.run("validate", typo)
	if r.code != 2 || !strings.Contains(r.stderr, typo+`:1:13: error: not a jsplan document: found apiVersion "jsplan/v1" and kind "Plan"`) ||
		!strings.Contains(r.stderr, "apiVersion: jsplan.dev/v1") {
		t.Errorf("a named plan with a mistyped apiVersion: %s", r)
	}
	book := e.write("dir/site.yml", "- hosts: all\n  tasks: []\n")
	pod := e.write("dir/pod.yaml", "apiVersion: v1\nkind: Pod\n")
	e.write("dir/ok.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nsteps:\n  - log: hi\n")
	r = e.run("validate", pod)
	if r.code != 2 || !strings.Contains(r.stderr, `found apiVersion "v1" and kind "Pod"`) {
		t.Errorf("a named foreign file: %s", r)
	}
	r = e.run("validate", book)
	if r.code != 2 || !strings.Contains(r.stderr, "found a list, not a mapping") {
		t.Errorf("a named playbook: %s", r)
	}
	r = e.run("validate", filepath.Dir(pod))
	if r.code != 0 || !strings.Contains(r.stdout, "1 file valid (2 skipped: not jsplan documents)") {
		t.Errorf("a directory with foreign YAML: %s", r)
	}
	r = e.run("validate", "--skip-foreign", book, pod)
	if r.code != 0 || !strings.Contains(r.stdout, "2 skipped") {
		t.Errorf("--skip-foreign on foreign files: %s", r)
	}
	r = e.run("validate", "--skip-foreign", book, typo)
	if r.code != 2 || !strings.Contains(r.stderr, "not a jsplan document") {
		t.Errorf("--skip-foreign must still refuse a file meant for jsplan: %s", r)
	}
}

// An inventory given with --boards and also found in a directory named on the
// command line is one inventory, read once: README's
// `jsplan validate --boards plans/boards/lab.yaml plans/` is valid.
func TestValidateBoardsAlsoInDirectory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plans, err := filepath.Abs("../plans")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"validate", "--boards", filepath.Join(plans, "boards/lab.yaml"), plans},
		{"validate", "--boards", plans + "/examples/../boards/lab.yaml", plans},
		{"validate", filepath.Join(plans, "boards/lab.yaml"), plans},
	} {
		if r := e.run(args...); r.code != 0 || strings.Contains(r.stderr, "duplicate") {
			t.Errorf("%q: %s", args, r)
		}
	}
	// a real duplicate, in two files, is still one
	dup := e.write("dup/boards.yaml", testBoards)
	if r := e.run("validate", "--boards", e.boards, dup); r.code != 2 || !strings.Contains(r.stderr, `duplicate board name "sim-1"`) {
		t.Errorf("two inventories naming one board: %s", r)
	}
}

// A driver's Validate can warn (drivers.WarnField): validate prints the
// warning at the field it names and the inventory is valid (exit 0).
func TestValidatePrintsADriversWarning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	inv := e.write("boards.yaml", "apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n  - name: rig\n    drivers:\n      serial:\n        port: /dev/ttyUSB0\n")
	r := e.run("validate", inv)
	if r.code != 0 {
		t.Fatalf("want exit 0 for a warning, got %s", r)
	}
	for _, want := range []string{
		inv + ":7:15: warning: serial: port: /dev/ttyUSB0 is the name the kernel gave the adapter",
		"name the port by its link under /dev/serial/by-id",
		"1 file valid",
	} {
		if !strings.Contains(r.stderr+r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r)
		}
	}
}
