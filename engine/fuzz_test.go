package engine_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// FuzzLoad feeds arbitrary documents to the loader (from memory: a file
// write per input made the fuzzer wait on the disk), as a plan (to validate
// and to run) and as an inventory. It must never panic, every problem must
// be a positioned diagnostic without Go or YAML type jargon, and what loads
// must render. `go test` runs the seeds only; `make fuzz` searches.
func FuzzLoad(f *testing.F) {
	// The plan library, so seeds that use it resolve.
	root := f.TempDir()
	libs, _ := filepath.Glob("../plans/lib/*.yaml")
	examples, _ := filepath.Glob("../plans/examples/*.yaml")
	if len(libs) == 0 || len(examples) == 0 {
		f.Fatal("no plans found for the seed corpus")
	}
	for _, p := range libs {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		writeFile(f, filepath.Join(root, "lib", filepath.Base(p)), b)
		f.Add(b)
	}
	for _, p := range examples {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, tc := range loaderCases {
		for name, content := range tc.files {
			if name != "plan.yaml" {
				writeFile(f, filepath.Join(root, "examples", name), []byte(content))
			}
			f.Add([]byte(content))
		}
		if tc.boards != "" {
			f.Add([]byte(tc.boards))
		}
	}
	f.Add([]byte(boardsDoc))
	f.Add([]byte(""))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte(head + "steps:\n  - log: &a [*a]\n"))
	f.Add([]byte(head + "params: {x: {type: enum, values: [a], default: b}}\nsteps:\n  - log: ${{ params.x }}\n"))
	f.Add([]byte(head + "steps:\n  - group: {steps: [{group: {steps: [{log: ${{ }}}]}}]}\n"))
	f.Add([]byte(head + "steps:\n  - retry: {attempts: 0, delay: -1s}\n    log: x\n    timeout: ${{ env.X }}\n"))

	planPath := filepath.Join(root, "examples", "plan.yaml")
	inv := &engine.Inventory{}
	engine.NewLoader(engine.Options{}).LoadBoardsBytes("boards.yaml", []byte(boardsDoc), inv)
	board := &engine.BoardInfo{Name: "sim-1", Labels: map[string]string{"arch": "x86_64"}, Vars: map[string]string{"image-id-file": "etc/image-id"}}

	f.Fuzz(func(t *testing.T, src []byte) {
		env := func(string) (string, bool) { return "1", true }
		for _, opts := range []engine.Options{
			{Mode: engine.ModeValidate},
			{Mode: engine.ModeRun, Env: env, Board: board, Artifacts: root},
		} {
			l := engine.NewLoader(opts)
			p := l.LoadPlanBytes(planPath, src)
			ds := l.Diagnostics()
			checkDiags(t, ds, l.Sources())
			if p == nil && !ds.HasErrors() {
				t.Fatalf("mode %d: no plan and no error", opts.Mode)
			}
			if p != nil {
				n := engine.Render(p, nil)
				engine.YAML(n)
				engine.JSON(n)
				l.CheckBoard(p, inv, engine.BoardSelector{})
				checkDiags(t, l.Diagnostics(), l.Sources())
			}
		}
		l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
		l.LoadBoardsBytes("boards.yaml", src, &engine.Inventory{})
		checkDiags(t, l.Diagnostics(), l.Sources())
	})
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkDiags checks every diagnostic names a file, says something, shows
// no Go type error, and prints.
func checkDiags(t *testing.T, ds diag.Diagnostics, src diag.Sources) {
	t.Helper()
	for _, d := range ds {
		if d.Subject.Filename == "" || strings.TrimSpace(d.Summary) == "" {
			t.Errorf("diagnostic without a file or a message: %#v", d)
		}
		for _, jargon := range []string{"cannot unmarshal", "yaml: unmarshal", "interface {}", "map[string]"} {
			if strings.Contains(d.Error(), jargon) {
				t.Errorf("diagnostic shows a Go type error: %v", d)
			}
		}
	}
	var buf bytes.Buffer
	diag.WriteText(&buf, ds, src)
	if len(ds) > 0 && buf.Len() == 0 {
		t.Errorf("diagnostics print nothing")
	}
}
