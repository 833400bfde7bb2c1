package steps

import (
	"context"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
)

// groupAction runs a block of steps; with the step's retry, the whole block
// is retried.
type groupAction struct {
	steps, finally []*engine.Step
}

func init() {
	engine.Register(engine.StepType{
		Name:    "group",
		Summary: "A block of steps with its own finally; retry on the step retries the whole block.",
		Schema: object(obj{
			"steps":   ref("steps"),
			"finally": described(ref("steps"), "Steps that always run after the block."),
		}, "steps"),
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &groupAction{}
			a.steps = dc.Steps(dc.Child(n, "steps"), "steps")
			a.finally = dc.Steps(dc.Child(n, "finally"), "finally")
			return a
		},
	})
}

// Children implements engine.Parent.
func (a *groupAction) Children() [][]*engine.Step { return [][]*engine.Step{a.steps, a.finally} }

func (a *groupAction) Run(ctx context.Context, r *engine.StepRun) error {
	return runBlock(ctx, r, a.steps, a.finally)
}

// runBlock runs steps, then finally (always), and returns the first error.
func runBlock(ctx context.Context, r *engine.StepRun, steps, finally []*engine.Step) error {
	err := r.RunSteps(ctx, steps)
	if len(finally) > 0 {
		ferr := r.RunFinally(ctx, finally)
		if err == nil {
			err = ferr
		}
	}
	return err
}
