package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// A malformed value of a declared parameter is one error, at the value: its
// references are not then reported as undefined (with a "did you mean" the
// same name).
func TestBadParamValueIsOneError(t *testing.T) {
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.yaml")
	plan := head + "params:\n  boot-timeout: {type: duration, default: 5m}\n  count: {type: integer, default: 1}\n" +
		"steps:\n  - {sleep: 1s, timeout: \"${{ params.boot-timeout }}\"}\n  - log: \"${{ params.count }}\"\n" +
		"  - use: {plan: lib.yaml, with: {t: nonsense}}\n"
	lib := head + "params:\n  t: {type: duration, required: true}\nsteps:\n  - {sleep: 1s, timeout: \"${{ params.t }}\"}\n"
	for name, doc := range map[string]string{"plan.yaml": plan, "lib.yaml": lib} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []engine.Mode{engine.ModeValidate, engine.ModeRun} {
		l := engine.NewLoader(engine.Options{Mode: mode, Env: func(string) (string, bool) { return "", false },
			Values: map[string]engine.Value{
				"boot-timeout": {Text: "xyz", Source: diag.Range{Filename: "--set boot-timeout"}},
				"count":        {Text: "many", Source: diag.Range{Filename: "--set count"}},
			}})
		l.LoadPlan(planFile)
		ds := l.Diagnostics()
		var got []string
		for _, d := range ds {
			got = append(got, d.Subject.Filename+": "+d.Summary)
		}
		if len(ds) != 3 || !strings.Contains(strings.Join(got, "\n"), `--set boot-timeout: parameter "boot-timeout": malformed duration "xyz"`) ||
			!strings.Contains(strings.Join(got, "\n"), `--set count: parameter "count"`) ||
			!strings.Contains(strings.Join(got, "\n"), `parameter "t": malformed duration "nonsense"`) {
			t.Errorf("mode %v: want one error per bad value, got:\n%s", mode, strings.Join(got, "\n"))
		}
		for _, d := range ds {
			if strings.Contains(d.Summary, "undefined") {
				t.Errorf("mode %v: %s: %s (%s)", mode, d.Subject, d.Summary, d.Detail)
			}
		}
	}
}

// A tab in the indentation is reported on its own line and column, not on
// the line before.
func TestYAMLTabErrorPointsAtTheTab(t *testing.T) {
	for _, tc := range []struct {
		src       string
		line, col int
	}{
		{head + "steps:\n  - log: a\n\t- log: b\n", 6, 1},
		{head + "steps:\n  - log: a\n  \t- log: b\n", 6, 3},
		{head + "steps:\n  - group:\n      steps:\n\t\t- log: b\n", 7, 1},
	} {
		dir := t.TempDir()
		p := filepath.Join(dir, "plan.yaml")
		if err := os.WriteFile(p, []byte(tc.src), 0o644); err != nil {
			t.Fatal(err)
		}
		l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
		l.LoadPlan(p)
		ds := l.Diagnostics()
		if len(ds) != 1 || ds[0].Subject.Start.Line != tc.line || ds[0].Subject.Start.Column != tc.col || !strings.Contains(ds[0].Summary, "tab") {
			t.Errorf("%q: want one tab error at %d:%d, got %v", tc.src, tc.line, tc.col, ds)
		}
	}
}
