package engine_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "github.com/jsplan/jsplan/drivers/all"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	_ "github.com/jsplan/jsplan/steps"
)

const head = "apiVersion: jsplan.dev/v1\nkind: Plan\nname: t\n"

// wantDiag is one expected diagnostic: its position in a file of the test
// and substrings of its message and detail.
type wantDiag struct {
	file      string // "" is plan.yaml
	line, col int
	summary   string
	detail    string
}

// boardsDoc is an inventory for the checks against boards.
const boardsDoc = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {arch: x86_64}
    drivers:
      sim: {}
`

var loaderCases = []struct {
	name  string
	files map[string]string // plan.yaml is the plan loaded; others are used plans
	// boards, when set, checks the plan against this inventory too.
	boards string
	want   []wantDiag
}{
	{
		name:  "unknown key with did-you-mean",
		files: map[string]string{"plan.yaml": head + "steps:\n  - log: hi\n    timout: 30s\n"},
		want:  []wantDiag{{line: 6, col: 5, summary: `unknown key "timout"`, detail: `did you mean "timeout"?`}},
	},
	{
		name:  "unknown top-level key",
		files: map[string]string{"plan.yaml": head + "stepz:\n  - log: hi\n"},
		want: []wantDiag{
			{line: 1, col: 1, summary: `missing required key "steps"`},
			{line: 4, col: 1, summary: `unknown key "stepz"`, detail: `did you mean "steps"?`},
		},
	},
	{
		name:  "unknown step type",
		files: map[string]string{"plan.yaml": head + "steps:\n  - slep: 1s\n"},
		want:  []wantDiag{{line: 5, col: 5, summary: `unknown key "slep"`, detail: `did you mean "sleep"?`}},
	},
	{
		name:  "duplicate key",
		files: map[string]string{"plan.yaml": head + "steps:\n  - name: a\n    log: hi\n    name: b\n"},
		want:  []wantDiag{{line: 7, col: 5, summary: `duplicate key "name"`, detail: "first defined at line 5, column 5"}},
	},
	{
		name:  "two actions",
		files: map[string]string{"plan.yaml": head + "steps:\n  - log: hi\n    sleep: 1s\n"},
		want:  []wantDiag{{line: 6, col: 5, summary: "step has 2 actions (log, sleep)", detail: "split it into 2 steps"}},
	},
	{
		name:  "no action",
		files: map[string]string{"plan.yaml": head + "steps:\n  - name: nothing to do\n"},
		want:  []wantDiag{{line: 5, col: 5, summary: "step has no action", detail: "add one of:"}},
	},
	{
		name:  "wrong type",
		files: map[string]string{"plan.yaml": head + "steps:\n  - log: hi\n    retry: {attempts: many}\n"},
		want:  []wantDiag{{line: 6, col: 23, summary: `attempts must be an integer of at least 1, got the string "many"`}},
	},
	{
		name:  "wrong type of a list",
		files: map[string]string{"plan.yaml": head + "steps: hello\n"},
		want:  []wantDiag{{line: 4, col: 8, summary: `expected a list, got the string "hello"`}},
	},
	{
		name:  "malformed duration",
		files: map[string]string{"plan.yaml": head + "timeout: 30 seconds\nsteps:\n  - log: hi\n"},
		want:  []wantDiag{{line: 4, col: 10, summary: `malformed duration "30 seconds"`, detail: "e.g. 30s"}},
	},
	{
		name:  "malformed step duration",
		files: map[string]string{"plan.yaml": head + "steps:\n  - sleep: 5 minutes\n"},
		want:  []wantDiag{{line: 5, col: 12, summary: `malformed duration "5 minutes"`}},
	},
	{
		name: "undefined param",
		files: map[string]string{"plan.yaml": head + "params:\n  image: {type: string, default: a}\n" +
			"steps:\n  - log: \"flashing ${{ params.imagee }}\"\n"},
		want: []wantDiag{{line: 7, col: 10, summary: `undefined parameter "imagee"`, detail: `did you mean "image"?`}},
	},
	{
		name:  "use of a missing file",
		files: map[string]string{"plan.yaml": head + "steps:\n  - use: lib/nothere.yaml\n"},
		want:  []wantDiag{{line: 5, col: 10, summary: `used plan "lib/nothere.yaml" not found`}},
	},
	{
		name: "missing required input",
		files: map[string]string{
			"plan.yaml": head + "steps:\n  - use: {plan: lib.yaml}\n",
			"lib.yaml":  head + "params:\n  image: {type: path, required: true}\nsteps:\n  - log: ${{ params.image }}\n",
		},
		want: []wantDiag{{line: 5, col: 17, summary: `missing required input "image" of`, detail: "with:"}},
	},
	{
		name: "unknown input",
		files: map[string]string{
			"plan.yaml": head + "steps:\n  - use:\n      plan: lib.yaml\n      with: {image: a.img, imag: b.img}\n",
			"lib.yaml":  head + "params:\n  image: {type: path, required: true}\nsteps:\n  - log: ${{ params.image }}\n",
		},
		want: []wantDiag{{line: 7, col: 28, summary: `lib.yaml has no input "imag"`, detail: `did you mean "image"?`}},
	},
	{
		name: "use cycle",
		files: map[string]string{
			"plan.yaml": head + "steps:\n  - use: a.yaml\n",
			"a.yaml":    head + "steps:\n  - use: b.yaml\n",
			"b.yaml":    head + "steps:\n  - log: in b\n  - use: a.yaml\n",
		},
		want: []wantDiag{{file: "b.yaml", line: 6, col: 10, summary: "use cycle:", detail: ""}},
	},
	{
		name:  "self use",
		files: map[string]string{"plan.yaml": head + "steps:\n  - use: plan.yaml\n"},
		want:  []wantDiag{{line: 5, col: 10, summary: "use cycle:"}},
	},
	{
		name:  "duplicate id",
		files: map[string]string{"plan.yaml": head + "steps:\n  - id: boot\n    log: a\n  - id: boot\n    log: b\n"},
		want:  []wantDiag{{line: 7, col: 9, summary: `duplicate step id "boot"`, detail: "first used at line 5, column 9"}},
	},
	{
		name:  "step timeout longer than the plan's",
		files: map[string]string{"plan.yaml": head + "timeout: 1m\nsteps:\n  - log: fast\n  - sleep: 1s\n    timeout: 5m\n"},
		want:  []wantDiag{{line: 7, col: 5, summary: "step timeout 5m is longer than the plan timeout 1m"}},
	},
	{
		name:  "step timeout in a group longer than the plan's",
		files: map[string]string{"plan.yaml": head + "timeout: 1m\nsteps:\n  - group:\n      steps:\n        - sleep: 1s\n          timeout: 2h\n"},
		want:  []wantDiag{{line: 8, col: 11, summary: "step timeout 2h is longer than the plan timeout 1m"}},
	},
	{
		name:  "bad regex",
		files: map[string]string{"plan.yaml": head + "fail-on:\n  - \"Kernel panic (\"\nsteps:\n  - log: hi\n"},
		want:  []wantDiag{{line: 5, col: 5, summary: "invalid regular expression: missing closing )", detail: "RE2"}},
	},
	{
		name:  "bad regex in a step",
		files: map[string]string{"plan.yaml": head + "steps:\n  - console: {expect: \"[a-\"}\n"},
		want:  []wantDiag{{line: 5, col: 23, summary: "invalid regular expression: missing closing ]"}},
	},
	{
		name:   "board selector matching nothing",
		files:  map[string]string{"plan.yaml": head + "board: {name: sim-2}\nsteps:\n  - log: hi\n"},
		boards: boardsDoc,
		want:   []wantDiag{{line: 4, col: 1, summary: "no board in the inventory matches sim-2", detail: `did you mean "sim-1"?`}},
	},
	{
		name:   "board labels matching nothing",
		files:  map[string]string{"plan.yaml": head + "board:\n  labels: {arch: arm64}\nsteps:\n  - log: hi\n"},
		boards: boardsDoc,
		want:   []wantDiag{{line: 4, col: 1, summary: "no board in the inventory matches arch=arm64"}},
	},
	{
		name:   "missing capability",
		files:  map[string]string{"plan.yaml": head + "steps:\n  - log: hi\n  - collect: {paths: /var/log/syslog, via: ssh}\n"},
		boards: boardsDoc,
		want:   []wantDiag{{line: 6, col: 5, summary: `needs network, but board "sim-1" has no network driver`, detail: "sim-1 serves: power, console, storage"}},
	},
	{
		name: "reference in a local command",
		files: map[string]string{"plan.yaml": head + "params:\n  image: {type: string, default: a}\n" +
			"steps:\n  - local: cp ${{ params.image }} /tmp\n"},
		want: []wantDiag{{line: 7, col: 12, summary: "references are not expanded in local commands", detail: "env:"}},
	},
	{
		name: "reference in a local argv",
		files: map[string]string{"plan.yaml": head + "params:\n  image: {type: string, default: a}\n" +
			"steps:\n  - local:\n      command: [cp, \"${{ params.image }}\", /tmp]\n"},
		want: []wantDiag{{line: 8, col: 16, summary: "references are not expanded in local commands"}},
	},
	{
		name:   "missing capability on every matching board",
		files:  map[string]string{"plan.yaml": head + "board:\n  labels: {arch: x86_64}\nsteps:\n  - collect: {paths: /x, via: ssh}\n"},
		boards: boardsDoc + "  - name: sim-2\n    labels: {arch: x86_64}\n    drivers:\n      sim: {}\n",
		want:   []wantDiag{{line: 7, col: 5, summary: "needs network, but none of the 2 boards matching arch=x86_64 has a network driver"}},
	},
	{
		name:  "YAML syntax error in a flow sequence",
		files: map[string]string{"plan.yaml": head + "steps:\n  - log: [unclosed\n"},
		want:  []wantDiag{{line: 5, col: 1, summary: "YAML syntax error: did not find expected ',' or ']'"}},
	},
	{
		name:  "YAML syntax error in a block sequence",
		files: map[string]string{"plan.yaml": head + "steps:\n  - log: a\n   bad: x\n"},
		want:  []wantDiag{{line: 5, col: 1, summary: "YAML syntax error: did not find expected '-' indicator"}},
	},
	{
		name:  "YAML scanner error",
		files: map[string]string{"plan.yaml": head + "steps:\n  - log: a: b\n"},
		want:  []wantDiag{{line: 5, col: 1, summary: "YAML syntax error: mapping values are not allowed in this context"}},
	},
	{
		name:  "YAML alias",
		files: map[string]string{"plan.yaml": head + "steps:\n  - log: &m hi\n  - log: *m\n"},
		want:  []wantDiag{{line: 6, col: 10, summary: "YAML aliases (*m) are not supported"}},
	},
	{
		name: "five mistakes at once, sorted",
		files: map[string]string{"plan.yaml": head +
			"timeout: soon\n" + // 4: malformed duration
			"steps:\n" +
			"  - log: a\n" +
			"    timout: 1s\n" + // 7: unknown key
			"  - id: x\n" +
			"    log: ${{ params.nope }}\n" + // 9: undefined parameter
			"  - id: x\n" + // 10: duplicate id
			"    log: c\n" +
			"  - console: {expect: \"(\"}\n"}, // 12: bad regex
		want: []wantDiag{
			{line: 4, col: 10, summary: `malformed duration "soon"`},
			{line: 7, col: 5, summary: `unknown key "timout"`},
			{line: 9, col: 10, summary: `undefined parameter "nope"`},
			{line: 10, col: 9, summary: `duplicate step id "x"`},
			{line: 12, col: 23, summary: "invalid regular expression"},
		},
	},

	{
		// Issue 11, item 20: limits, reported where they are set.
		name: "zero timeouts and too many attempts",
		files: map[string]string{"plan.yaml": head + "timeout: 0s\nsteps:\n" +
			"  - log: a\n    timeout: 0s\n" + // 6, 7
			"  - log: b\n    retry: {attempts: 1000000000}\n" + // 8, 9
			"  - log: c\n    retry: {attempts: 100}\n"}, // 100 is allowed
		want: []wantDiag{
			{line: 4, col: 10, summary: "timeout must be longer than 0", detail: "omit it"},
			{line: 7, col: 14, summary: "timeout must be longer than 0"},
			{line: 9, col: 23, summary: "retry.attempts 1000000000 is more than the limit of 100"},
		},
	}}

// writeFiles writes a case's files into a new directory and returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoaderDiagnostics(t *testing.T) {
	for _, tc := range loaderCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			planFile := filepath.Join(dir, "plan.yaml")
			l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
			p := l.LoadPlan(planFile)
			if tc.boards != "" {
				if p == nil {
					t.Fatalf("plan did not load: %v", l.Diagnostics())
				}
				inv := &engine.Inventory{}
				l.LoadBoardsBytes("boards.yaml", []byte(tc.boards), inv)
				l.CheckBoard(p, inv, engine.BoardSelector{})
			}
			ds := l.Diagnostics()
			if len(ds) != len(tc.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%v", len(ds), len(tc.want), ds)
			}
			for i, w := range tc.want {
				d := ds[i]
				file := w.file
				if file == "" {
					file = "plan.yaml"
				}
				at := filepath.Join(dir, file) + ":" + strconv.Itoa(w.line) + ":" + strconv.Itoa(w.col)
				if d.Subject.String() != at {
					t.Errorf("diagnostic %d at %s, want %s: %v", i, d.Subject, at, d)
				}
				if !strings.Contains(d.Summary, w.summary) {
					t.Errorf("diagnostic %d: %q does not contain %q", i, d.Summary, w.summary)
				}
				if !strings.Contains(d.Detail, w.detail) {
					t.Errorf("diagnostic %d: detail %q does not contain %q", i, d.Detail, w.detail)
				}
				if d.Severity != diag.Error || d.Class != diag.Invalid {
					t.Errorf("diagnostic %d: %s %s, want an invalid-plan error", i, d.Severity, d.Class)
				}
				if strings.Contains(d.Error(), "yaml: unmarshal") || strings.Contains(d.Error(), "!!") {
					t.Errorf("diagnostic %d shows a Go/YAML type error: %v", i, d)
				}
			}
		})
	}
}

// TestLoaderUseCycleNamesTheChain checks the cycle message lists the files.
func TestLoaderUseCycleNamesTheChain(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"plan.yaml": head + "steps:\n  - use: a.yaml\n",
		"a.yaml":    head + "steps:\n  - use: b.yaml\n",
		"b.yaml":    head + "steps:\n  - use: a.yaml\n",
	})
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	l.LoadPlan(filepath.Join(dir, "plan.yaml"))
	ds := l.Diagnostics()
	if len(ds) != 1 {
		t.Fatalf("want 1 diagnostic, got %v", ds)
	}
	msg := ds[0].Summary
	ia, ib, ia2 := strings.Index(msg, "a.yaml"), strings.Index(msg, "b.yaml"), strings.LastIndex(msg, "a.yaml")
	if ia < 0 || ib < ia || ia2 < ib || !strings.Contains(msg, "->") {
		t.Errorf("cycle message does not name a.yaml -> b.yaml -> a.yaml: %q", msg)
	}
}

// TestLoaderRunModeMissingValue checks a required parameter without a
// value is an error for a run and fine for validation.
func TestLoaderRunModeMissingValue(t *testing.T) {
	dir := writeFiles(t, map[string]string{"plan.yaml": head + "params:\n  image: {type: path, required: true}\nsteps:\n  - log: ${{ params.image }}\n"})
	planFile := filepath.Join(dir, "plan.yaml")
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	if l.LoadPlan(planFile) == nil || l.Diagnostics().HasErrors() {
		t.Fatalf("validate: %v", l.Diagnostics())
	}
	l = engine.NewLoader(engine.Options{Mode: engine.ModeRun, Env: func(string) (string, bool) { return "", false }})
	l.LoadPlan(planFile)
	ds := l.Diagnostics()
	if len(ds) == 0 || ds[0].Subject.String() != planFile+":5:3" || !strings.Contains(ds[0].Summary, `missing value for required parameter "image"`) ||
		!strings.Contains(ds[0].Detail, "--set image=VALUE") {
		t.Errorf("run mode: %v", ds)
	}
	l = engine.NewLoader(engine.Options{Mode: engine.ModeRun, Values: map[string]engine.Value{"imag": {Text: "x", Source: diag.Range{Filename: "--set imag"}}},
		Env: func(string) (string, bool) { return "", false }})
	l.LoadPlan(planFile)
	found := false
	for _, d := range l.Diagnostics() {
		if d.Subject.Filename == "--set imag" && strings.Contains(d.Summary, `unknown parameter "imag"`) && strings.Contains(d.Detail, `"image"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("unknown --set parameter not reported: %v", l.Diagnostics())
	}
}

// TestLoaderExamplePlansAreValid keeps the shipped plans valid.
func TestLoaderExamplePlansAreValid(t *testing.T) {
	files, _ := filepath.Glob("../plans/*/*.yaml")
	if len(files) == 0 {
		t.Fatal("no plans found")
	}
	for _, f := range files {
		l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
		if k := l.Kind(f); k != "Plan" {
			continue
		}
		if p := l.LoadPlan(f); p == nil || l.Diagnostics().HasErrors() {
			t.Errorf("%s: %v", f, l.Diagnostics())
		}
	}
}

// Issue 11, item 20: a use: fan-out is stopped at MaxSteps while loading,
// with an error at the step that crossed it, not after expanding it all.
func TestLoaderStepLimit(t *testing.T) {
	leaf := head + "steps:\n" + strings.Repeat("  - log: x\n", 25)
	mid := head + "steps:\n" + strings.Repeat("  - use: leaf.yaml\n", 20)
	top := head + "steps:\n" + strings.Repeat("  - use: mid.yaml\n", 1000) // 521,000 steps
	dir := writeFiles(t, map[string]string{"plan.yaml": top, "mid.yaml": mid, "leaf.yaml": leaf})
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	if p := l.LoadPlan(filepath.Join(dir, "plan.yaml")); p != nil && !l.Diagnostics().HasErrors() {
		t.Fatal("a plan of 521,000 steps loaded")
	}
	ds := l.Diagnostics()
	if len(ds) != 1 || !strings.Contains(ds[0].Summary, "more than 10000 steps") ||
		!strings.HasPrefix(ds[0].Subject.String(), filepath.Join(dir, "leaf.yaml")+":") || ds[0].Subject.Start.Line < 4 {
		t.Fatalf("want one error at a step of leaf.yaml, got %v", ds)
	}
	if !strings.Contains(ds[0].Detail, "mid.yaml") {
		t.Errorf("the detail does not show the use chain: %q", ds[0].Detail)
	}
}

// A driver's value that its own UnmarshalYAML rejects (yamlerr.At) is
// pointed at, not the driver's block; a driver's warning (WarnField) is a
// warning at its field, and the board loads.
func TestLoaderDriverValuePositions(t *testing.T) {
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	inv := &engine.Inventory{}
	l.LoadBoardsBytes("boards.yaml", []byte(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: rig-1
    drivers:
      serial:
        port: usb-X-if00
        reopen-timeout:   99999999999999999999h
  - name: rig-2
    drivers:
      serial:
        port: /dev/ttyACM0
`), inv)
	ds := l.Diagnostics()
	if len(ds) != 2 {
		t.Fatalf("got %d diagnostics, want 2:\n%v", len(ds), ds)
	}
	if d := ds[0]; d.Subject.String() != "boards.yaml:8:27" || !strings.Contains(d.Summary, `bad duration "99999999999999999999h"`) || !d.Severity.IsError() {
		t.Errorf("the duration: %s %s: %s", d.Subject, d.Severity, d.Summary)
	}
	if d := ds[1]; d.Subject.String() != "boards.yaml:12:15" || d.Severity != diag.Warning || !strings.Contains(d.Summary, "/dev/ttyACM0") {
		t.Errorf("the warning: %s %s: %s", d.Subject, d.Severity, d.Summary)
	}
	if len(inv.Boards) != 1 || inv.Boards[0].Name != "rig-2" {
		t.Errorf("boards loaded: %+v", inv.Boards)
	}
}
