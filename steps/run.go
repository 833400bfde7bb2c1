package steps

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// runAction runs a command in the board's shell over the console.
type runAction struct {
	Command      string `yaml:"command"`
	ExitCode     *int   `yaml:"exit-code,omitempty"`
	ExpectOutput string `yaml:"expect-output,omitempty"`
	FailOutput   string `yaml:"fail-output,omitempty"`
	expect, fail engine.Pattern
}

// maxOutput bounds what a command may print (it is also what collect can
// move over the console in one go).
const maxOutput = 64 << 20

func init() {
	engine.Register(engine.StepType{
		Name:    "run",
		Config:  runAction{},
		Summary: "Run a shell command on the board (over the console) and check its exit status and output.",
		Schema: shortOr(obj{"type": "string"}, object(obj{
			"command":       str("The command; several lines run as one script in the login shell."),
			"exit-code":     obj{"type": "integer", "minimum": 0, "maximum": 255, "description": "The expected exit status (default 0)."},
			"expect-output": str("A regex the output must match."),
			"fail-output":   str("A regex the output must not match."),
		}, "command")),
		Needs:          []drivers.Capability{drivers.CapConsole},
		DefaultTimeout: 10 * time.Minute,
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &runAction{}
			if !scalarOr(dc, n, &a.Command, a) {
				return nil
			}
			if strings.TrimSpace(a.Command) == "" {
				dc.Errorf(n, "command", "empty command")
				return nil
			}
			ok := true
			if c := dc.Child(n, "expect-output"); c != nil {
				a.expect, ok = dc.Regexp(c, "expect-output")
			}
			if c := dc.Child(n, "fail-output"); c != nil && ok {
				a.fail, ok = dc.Regexp(c, "fail-output")
			}
			if !ok {
				return nil
			}
			a.expect, a.fail = multiline(a.expect), multiline(a.fail)
			return a
		},
	})
}

func (a *runAction) Run(ctx context.Context, r *engine.Run) error {
	res, err := runShell(ctx, r, a.Command, maxOutput)
	if err != nil {
		return err
	}
	out := string(res.Output)
	r.Output(ctx, out)
	want := 0
	if a.ExitCode != nil {
		want = *a.ExitCode
	}
	if res.Code != want {
		return diag.Failf("command exited with status %d (expected %d)%s", res.Code, want, lastLines(r.Redact(out), 3))
	}
	if a.expect.Re != nil && !a.expect.Re.MatchString(out) {
		return diag.Failf("output does not match %q%s", a.expect.Source, lastLines(r.Redact(out), 3))
	}
	if a.fail.Re != nil {
		if m := a.fail.Re.FindString(out); m != "" {
			return diag.Failf("output matches fail-output %q: %q", a.fail.Source, r.Redact(m))
		}
	}
	return nil
}

// lastLines returns ": " and the last n lines of s, for error messages.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return " (no output)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("; output ends with: %q", strings.Join(lines, "\n"))
}

// multiline makes ^ and $ match at line boundaries in command output, as
// people reading the output expect ("^Linux$" matches a line).
func multiline(p engine.Pattern) engine.Pattern {
	if p.Re != nil {
		p.Re = regexp.MustCompile("(?m)" + p.Re.String())
	}
	return p
}

// Title implements engine.Titler.
func (a *runAction) Title() string { return a.Command }
