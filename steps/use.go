package steps

import (
	"context"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
)

// useAction runs the steps of another plan (a library) with inputs.
type useAction struct {
	plan *engine.Plan
}

func init() {
	engine.Register(engine.StepType{
		Name:    "use",
		Summary: "Run another plan's steps (and its finally) with inputs: a shared library of steps.",
		Schema: shortOr(obj{"type": "string"}, object(obj{
			"plan": str("Path of the plan, relative to this file."),
			"with": described(ref("stringMap"), "Values for the used plan's params."),
		}, "plan")),
		HostCode: []string{"", "plan"},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			planNode, withNode := n, (*yaml.Node)(nil)
			if n.Kind == yaml.MappingNode {
				planNode, withNode = dc.Child(n, "plan"), dc.Child(n, "with")
			}
			p := dc.Use(planNode, withNode)
			if p == nil {
				if dc.Mode() == engine.ModeValidate && dc.Pending(planNode.Value) {
					return &useAction{plan: &engine.Plan{}}
				}
				return nil
			}
			return &useAction{plan: p}
		},
	})
}

// Children implements engine.Parent.
func (a *useAction) Children() [][]*engine.Step {
	return [][]*engine.Step{a.plan.Steps, a.plan.Finally}
}

func (a *useAction) Run(ctx context.Context, r *engine.StepRun) error {
	return runBlock(ctx, r, a.plan.Steps, a.plan.Finally)
}

// Title implements engine.Titler.
func (a *useAction) Title() string { return a.plan.Name }
