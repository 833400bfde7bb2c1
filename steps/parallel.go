package steps

import (
	"context"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
)

// parallelAction runs its steps (branches) at once, typically each on
// another board (on: ROLE), and waits for all of them; a failing branch
// stops the others, whose finally blocks still run.
type parallelAction struct {
	branches []*engine.Step
}

func init() {
	engine.Register(engine.StepType{
		Name:    "parallel",
		Summary: "Branches that run at once (each a step, usually a group with on: ROLE); waits for all; one failing stops the others, every finally still runs.",
		Schema: described(obj{"type": "array", "minItems": 1, "items": ref("step")},
			"The branches: steps run at the same time."),
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			return &parallelAction{branches: dc.Steps(n, "")}
		},
	})
}

// Children implements engine.Parent.
func (a *parallelAction) Children() [][]*engine.Step { return [][]*engine.Step{a.branches} }

func (a *parallelAction) Run(ctx context.Context, r *engine.StepRun) error {
	return r.RunParallel(ctx, a.branches)
}
