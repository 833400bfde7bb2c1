package steps

import (
	"context"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
)

// logAction writes a message to the run log and the console log.
type logAction struct {
	Message string `yaml:"message"`
}

func init() {
	engine.Register(engine.StepType{
		Name:    "log",
		Config:  logAction{},
		Summary: "Write a message to the run log and the console log.",
		Schema:  shortOr(obj{"type": "string"}, object(obj{"message": str("The message.")}, "message")),
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &logAction{}
			if !scalarOr(dc, n, &a.Message, a) {
				return nil
			}
			return a
		},
	})
}

func (a *logAction) Run(ctx context.Context, r *engine.StepRun) error {
	r.Logf("%s", a.Message)
	r.Output(a.Message)
	return nil
}
