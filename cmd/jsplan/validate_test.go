package main

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
	plans, err := filepath.Abs("../../plans")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.run("validate", plans); r.code != 0 || !strings.Contains(r.stdout, "valid") {
		t.Errorf("plans/ do not validate: %s", r)
	}
}
