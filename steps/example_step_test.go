package steps_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/redact"
	"github.com/jsplan/jsplan/schema"
)

// waitFile is a complete step type: wait until a file exists on the host,
// e.g. the flag a test rig writes when it is ready.
//
//	steps:
//	  - wait-file: rig.ready
//	  - wait-file: {path: rig.ready, within: 30s}
type waitFile struct {
	Path   string          `yaml:"path"`
	Within engine.Duration `yaml:"within,omitempty"`
}

func init() {
	engine.Register(engine.StepType{
		Name:    "wait-file",
		Summary: "Wait until a file exists on the host (relative to the plan's directory).",
		Config:  waitFile{},
		// The short form (a string) or the mapping: one schema with a
		// type list, each keyword applying to its own type.
		Schema: schema.Obj{
			"type":      []any{"string", "object"},
			"minLength": 1,
			"properties": schema.Obj{
				"path":   schema.NonEmpty("The file to wait for."),
				"within": schema.Described(schema.Ref("duration"), "How long to wait (default 10s)."),
			},
			"required":             []any{"path"},
			"additionalProperties": false,
		},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &waitFile{Within: engine.Duration{Duration: 10 * time.Second}}
			if n.Kind == yaml.ScalarNode {
				a.Path = n.Value
			} else if !dc.Decode(n, a) {
				return nil // dc reported the error at its position
			}
			a.Path = dc.LocalPath(a.Path)
			return a
		},
		// Every step that waits on something outside jsplan has a bound.
		DefaultTimeout: time.Minute,
	})
}

// Run polls for the file. The step's context ends at its timeout or when
// the run is interrupted; a file that does not come is a test failure
// (diag.Failf, exit status 1), a broken host an infrastructure error
// (diag.Infraf, exit status 3).
func (a *waitFile) Run(ctx context.Context, r *engine.StepRun) error {
	deadline := time.Now().Add(a.Within.Duration)
	for {
		_, err := os.Stat(a.Path)
		if err == nil {
			r.Logf("%s is there", filepath.Base(a.Path))
			return nil
		}
		if !os.IsNotExist(err) {
			return diag.Infraf("wait-file: %v", err)
		}
		if time.Now().After(deadline) {
			return diag.Failf("%s did not appear within %s", filepath.Base(a.Path), a.Within.Duration)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// A step type registered by an imported package is part of the plan
// format: the loader validates it against its schema (a typo is reported
// at its line and column), decodes it, and a run runs it.
func Example_stepType() {
	dir, _ := os.MkdirTemp("", "wait-file")
	defer os.RemoveAll(dir)
	head := "apiVersion: jsplan.dev/v1\nkind: Plan\nname: rig\nsteps:\n"

	l := engine.NewLoader(engine.Options{})
	l.LoadPlanBytes("plan.yaml", []byte(head+"  - wait-file: {path: rig.ready, withn: 5s}\n"))
	for _, d := range l.Diagnostics() {
		fmt.Println(d.Error())
	}

	_ = os.WriteFile(filepath.Join(dir, "rig.ready"), nil, 0o644)
	plan := head + "  - wait-file: rig.ready\n  - name: rig done\n    wait-file: {path: rig.done, within: 50ms}\n"
	l = engine.NewLoader(engine.Options{Mode: engine.ModeRun})
	p := l.LoadPlanBytes(filepath.Join(dir, "plan.yaml"), []byte(plan))
	res := engine.Execute(context.Background(), engine.RunConfig{Plan: p, Artifacts: dir, Redactor: &redact.Redactor{}})
	for _, s := range res.Steps {
		fmt.Println(strings.TrimSpace(s.Name + ": " + string(s.Status) + " " + s.Error))
	}
	fmt.Println("exit status", res.ExitCode)
	// Output:
	// plan.yaml:5:34: unknown key "withn" (at steps[0].wait-file.withn); did you mean "within"?
	// wait-file rig.ready: passed
	// rig done: failed rig.done did not appear within 50ms
	// exit status 1
}
