package steps

import (
	"context"
	"errors"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// powerAction switches the board's power.
type powerAction struct {
	Action string          `yaml:"action"`
	Delay  engine.Duration `yaml:"delay,omitempty"`
}

var powerActions = []any{"on", "off", "cycle", "reset"}

func init() {
	engine.Register(engine.StepType{
		Name:    "power",
		Config:  powerAction{},
		Summary: "Switch the board's power: on, off, cycle (off, pause, on) or reset.",
		Schema: shortOr(obj{"enum": powerActions},
			object(obj{
				"action": obj{"enum": powerActions},
				"delay":  described(ref("duration"), "Pause between off and on for cycle (default 2s)."),
			}, "action")),
		Needs: []drivers.Capability{drivers.CapPower},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &powerAction{}
			if !scalarOr(dc, n, &a.Action, a) {
				return nil
			}
			if !a.Delay.IsSet() {
				a.Delay.Duration = 2 * time.Second
			}
			return a
		},
		DefaultTimeout: 2 * time.Minute,
	})
}

func (a *powerAction) Run(ctx context.Context, r *engine.StepRun) error {
	err := a.switchPower(ctx, r)
	if err == nil && a.Action != "off" {
		r.WatchConsole("power " + a.Action)
	}
	return err
}

func (a *powerAction) switchPower(ctx context.Context, r *engine.StepRun) error {
	p, err := r.Board().Power()
	if err != nil {
		return err
	}
	switch a.Action {
	case "on":
		return infra(p.On(ctx))
	case "off":
		return infra(p.Off(ctx))
	case "reset":
		cycled, err := drivers.ResetPower(ctx, p, a.Delay.Duration)
		if cycled {
			r.Logf("the power driver has no reset; cycled power instead")
		}
		return powerErr(ctx, err)
	}
	return powerErr(ctx, drivers.CyclePower(ctx, p, a.Delay.Duration))
}

// powerErr is infra(err), except for the run's own cancellation (an
// interruption during the pause of a cycle), which keeps its class.
func powerErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && err == context.Cause(ctx) {
		return err
	}
	return infra(err)
}

// infra marks a driver's error as an infrastructure error.
func infra(err error) error {
	if err == nil {
		return nil
	}
	var ce *diag.ClassError
	if errors.As(err, &ce) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &diag.ClassError{C: diag.Infra, Err: err}
}
