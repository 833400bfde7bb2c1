package steps_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	_ "github.com/jsplan/jsplan/drivers/all"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/redact"
	_ "github.com/jsplan/jsplan/steps"
)

const head = "apiVersion: jsplan.dev/v1\nkind: Plan\nname: t\n"

// simBoards is an inventory with one fast-booting virtual board.
const simBoards = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    drivers:
      sim: {password: sim-password, boot-delay: 1ms}
`

// login is the start of a plan on the sim board: power on and log in.
const login = "steps:\n  - power: on\n  - wait-for-login: {username: root, password: sim-password}\n"

// run is a finished run and where it wrote.
type run struct {
	res       *engine.Result
	artifacts string
	dir       string
}

// setup is what an execOption may change before a run.
type setup struct {
	boards string // the inventory (simBoards)
	cfg    *engine.RunConfig
}

// execOption changes a run's setup.
type execOption func(*setup)

// withBoards runs on the inventory doc instead of simBoards (its board sim-1).
func withBoards(doc string) execOption { return func(s *setup) { s.boards = doc } }

// withConfig changes the run's configuration.
func withConfig(fn func(*engine.RunConfig)) execOption { return func(s *setup) { fn(s.cfg) } }

// execute loads plan (a document written to dir/plan.yaml) for a run and
// executes it: on the sim board when onBoard, else with no board.
func execute(t *testing.T, dir, artifacts, plan string, onBoard bool, values map[string]string, options ...execOption) *run {
	t.Helper()
	set := &setup{boards: simBoards, cfg: &engine.RunConfig{}}
	for _, o := range options {
		o(set)
	}
	if dir == "" {
		dir = t.TempDir()
	}
	if artifacts == "" {
		artifacts = filepath.Join(t.TempDir(), "artifacts")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	vals := map[string]engine.Value{}
	for k, v := range values {
		vals[k] = engine.Value{Text: v}
	}
	opts := engine.Options{Mode: engine.ModeRun, Artifacts: artifacts, Values: vals, Env: func(string) (string, bool) { return "", false }}
	var spec *engine.BoardSpec
	if onBoard {
		inv := &engine.Inventory{}
		il := engine.NewLoader(engine.Options{})
		il.LoadBoardsBytes("boards.yaml", []byte(set.boards), inv)
		if il.Diagnostics().HasErrors() {
			t.Fatal(il.Diagnostics())
		}
		spec = inv.Lookup("sim-1")
		opts.Board = spec.Info()
	}
	l := engine.NewLoader(opts)
	p := l.LoadPlanBytes(filepath.Join(dir, "plan.yaml"), []byte(plan))
	if p == nil || l.Diagnostics().HasErrors() {
		t.Fatalf("load: %v", l.Diagnostics())
	}
	red := &redact.Redactor{}
	red.Add(l.Secrets()...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clogFile, err := os.Create(filepath.Join(artifacts, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer clogFile.Close()
	clog := console.NewLog(clogFile, time.Now(), red)
	defer clog.Close()
	cfg := *set.cfg
	cfg.Plan, cfg.Artifacts, cfg.Redactor, cfg.ConsoleLog = p, artifacts, red, clog
	if onBoard {
		b, err := engine.OpenBoard(ctx, spec, drivers.Env{Board: "sim-1", StateDir: filepath.Join(t.TempDir(), "state"), Secret: func(v string) { red.Add(v) }})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		cfg.Board = b
	}
	res := engine.Execute(ctx, cfg)
	clog.Close()
	return &run{res: res, artifacts: artifacts, dir: dir}
}

// consoleLog returns the run's console log.
func (r *run) consoleLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.artifacts, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// step finds a top-level step result by name.
func (r *run) step(t *testing.T, name string) *engine.StepResult {
	t.Helper()
	for _, s := range r.res.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q in the result", name)
	return nil
}
