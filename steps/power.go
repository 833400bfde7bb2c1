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

func (a *powerAction) Run(ctx context.Context, r *engine.Run) error {
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
		if rs, ok := p.(drivers.Resetter); ok {
			return infra(rs.Reset(ctx))
		}
		r.Logf(ctx, "the power driver has no reset; cycling power instead")
	}
	// A board that is off needs no pause before it is switched on.
	if ps, ok := p.(drivers.PowerStater); ok {
		if on, err := ps.PowerState(ctx); err == nil && !on {
			return infra(p.On(ctx))
		}
	}
	if c, ok := p.(drivers.Cycler); ok {
		return infra(c.Cycle(ctx, a.Delay.Duration))
	}
	if err := p.Off(ctx); err != nil {
		return infra(err)
	}
	if err := sleepCtx(ctx, a.Delay.Duration); err != nil {
		return err
	}
	return infra(p.On(ctx))
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
