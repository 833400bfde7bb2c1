// Package expectpower is a lab's own step type, compiled into a custom
// jsplan (see ../README.md): expect-power checks that the board's power
// really is in a state, read back from the power driver (a relay card that
// sticks, a plug that ignored its command), waiting up to a bound for it:
//
//	steps:
//	  - expect-power: on
//	  - expect-power: {state: off, within: 2s}
//
// A board whose power driver cannot report its state fails the step as an
// infrastructure error; a state that does not come fails it as a test
// failure.
package expectpower

import (
	"context"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/schema"
)

// Name is the step's action key.
const Name = "expect-power"

// Poll is how often the state is read while waiting for it.
const Poll = 50 * time.Millisecond

// action is a decoded expect-power step.
type action struct {
	State  string          `yaml:"state"`
	Within engine.Duration `yaml:"within,omitempty"`
}

func init() {
	engine.Register(engine.StepType{
		Name:    Name,
		Summary: "Check the board's power is on or off, read back from the power driver, waiting up to within (default: no wait).",
		Config:  action{},
		// One schema with a type list: the short form (a string) or the
		// mapping, as the stock steps write theirs.
		Schema: schema.Obj{
			"type":    []any{"string", "object"},
			"pattern": "^(on|off)$",
			"properties": schema.Obj{
				"state":  schema.Obj{"enum": []any{"on", "off"}, "description": "The state the power must read."},
				"within": schema.Described(schema.Ref("duration"), "How long the state may take to come."),
			},
			"required":             []any{"state"},
			"additionalProperties": false,
		},
		Needs: []drivers.Capability{drivers.CapPower},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &action{}
			if n.Kind == yaml.ScalarNode {
				a.State = n.Value
				return a
			}
			if !dc.Decode(n, a) {
				return nil
			}
			return a
		},
		DefaultTimeout: time.Minute,
	})
}

// Run reads the power state until it is the expected one or within has
// passed.
func (a *action) Run(ctx context.Context, r *engine.StepRun) error {
	p, err := r.Board().Power()
	if err != nil {
		return err
	}
	ps, ok := p.(drivers.PowerStater)
	if !ok {
		return diag.Infraf("the board's power driver cannot report the power state")
	}
	want := a.State == "on"
	deadline := time.Now().Add(a.Within.Duration)
	for {
		on, err := ps.PowerState(ctx)
		if err != nil {
			return &diag.ClassError{C: diag.Infra, Err: err}
		}
		if on == want {
			r.Logf("power is %s, as expected", a.State)
			return nil
		}
		if !time.Now().Before(deadline) {
			if a.Within.Duration > 0 {
				return diag.Failf("power is %s, expected %s within %s", word(on), a.State, a.Within.Duration)
			}
			return diag.Failf("power is %s, expected %s", word(on), a.State)
		}
		select {
		case <-time.After(Poll):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func word(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// MarshalYAML renders the step as written (jsplan render): the short form
// when it says everything.
func (a *action) MarshalYAML() (any, error) {
	if !a.Within.IsSet() {
		return a.State, nil
	}
	return struct {
		State  string          `yaml:"state"`
		Within engine.Duration `yaml:"within"`
	}{a.State, a.Within}, nil
}
