package steps

import (
	"context"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
)

// sleepAction pauses the plan.
type sleepAction struct{ D engine.Duration }

func init() {
	engine.Register(engine.StepType{
		Name:    "sleep",
		Summary: "Pause for a duration, e.g. sleep: 5s. Prefer waiting on the console where you can.",
		Schema:  ref("duration"),
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &sleepAction{}
			if !dc.Decode(n, &a.D) {
				return nil
			}
			return a
		},
	})
}

func (a *sleepAction) Run(ctx context.Context, r *engine.StepRun) error {
	return sleepCtx(ctx, a.D.Duration)
}

// MarshalYAML renders the step as written.
func (a *sleepAction) MarshalYAML() (any, error) { return a.D.MarshalYAML() }
