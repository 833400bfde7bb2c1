package steps

import (
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/shell"
	"github.com/jsplan/jsplan/internal/results"
)

// runAction runs a command in the board's shell over the console.
type runAction struct {
	Command      string            `yaml:"command"`
	Env          map[string]string `yaml:"env,omitempty"`
	ExitCode     *int              `yaml:"exit-code,omitempty"`
	ExpectOutput string            `yaml:"expect-output,omitempty"`
	FailOutput   string            `yaml:"fail-output,omitempty"`
	Results      any               `yaml:"results,omitempty"`
	expect, fail engine.Pattern
	results      *resultsSpec
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
			"command": str("The command; several lines run as one script in the login shell. " +
				"References are pasted as written and must not be secrets: pass values through env."),
			"env": described(ref("stringMap"), "Variables exported for the command only; values may use references "+
				"(secrets too) and reach the board quoted, whatever they hold."),
			"exit-code":     obj{"type": "integer", "minimum": 0, "maximum": 255, "description": "The expected exit status (default 0)."},
			"expect-output": str("A regex the output must match."),
			"fail-output":   str("A regex the output must not match."),
			"results":       resultsSchema("The command's output"),
		}, "command")),
		Needs:          []drivers.Capability{drivers.CapConsole},
		DefaultTimeout: 10 * time.Minute,
		NoSecrets:      []string{"", "command"},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &runAction{}
			if !scalarOr(dc, n, &a.Command, a) {
				return nil
			}
			if strings.TrimSpace(a.Command) == "" {
				dc.Errorf(n, "command", "empty command")
				return nil
			}
			if cmd := replacesShell(a.Command); cmd != "" {
				node := n
				if c := dc.Child(n, "command"); c != nil {
					node = c
				}
				dc.Errorf(node, "command", "`exec %s` replaces the board's login shell: jsplan could not tell when it ends, and the step would wait out its timeout", cmd).
					WithDetail("run it without exec, or in a subshell: (exec %s)", cmd)
				return nil
			}
			for _, k := range slices.Sorted(maps.Keys(a.Env)) {
				if !envNameRE.MatchString(k) {
					dc.Errorf(dc.Child(n, "env"), "env", "%q is not a shell variable name", k).
						WithDetail("use letters, digits and _, not starting with a digit")
					return nil
				}
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
			if a.results, ok = decodeResults(dc, n); !ok {
				return nil
			}
			a.expect, a.fail = multiline(a.expect), multiline(a.fail)
			return a
		},
	})
}

func (a *runAction) Run(ctx context.Context, r *engine.StepRun) error {
	env := make([]shell.Var, 0, len(a.Env))
	for _, k := range slices.Sorted(maps.Keys(a.Env)) {
		env = append(env, shell.Var{Name: k, Value: a.Env[k]})
	}
	var parser results.Parser
	var stream io.Writer
	if a.results != nil {
		parser = a.results.parser()
		stream = parser
	}
	r.Waiting(fmt.Sprintf("the command %q to finish", engineClip(a.Command)))
	sh, err := r.Shell()
	if err != nil {
		return err
	}
	res, err := sh.RunTo(ctx, a.Command, maxOutput, stream, env...)
	if err != nil {
		if parser != nil {
			// The board stopped answering: keep the cases it printed.
			_, _ = a.results.judge(r, parser.Close())
		}
		return err
	}
	out := string(res.Output)
	r.Output(out)
	var verdict *results.Verdict
	var testErr error
	if parser != nil {
		verdict, testErr = a.results.judge(r, parser.Close())
	}
	want := 0
	if a.ExitCode != nil {
		want = *a.ExitCode
	}
	// With results, a test runner's non-zero status that reports failing
	// cases is judged by the cases (some may be allowed), unless the plan
	// asks for a status.
	judged := verdict != nil && a.ExitCode == nil && verdict.Fail+verdict.Error > 0
	if res.Code != want && !judged {
		return diag.Failf("command exited with status %d (expected %d)%s", res.Code, want, lastLines(r.Redactor().String(out), 3))
	}
	if a.expect.Re != nil && !a.expect.Re.MatchString(out) {
		return diag.Failf("output does not match %q%s", a.expect.Source, lastLines(r.Redactor().String(out), 3))
	}
	if a.fail.Re != nil {
		if m := a.fail.Re.FindString(out); m != "" {
			return diag.Failf("output matches fail-output %q: %q", a.fail.Source, r.Redactor().String(m))
		}
	}
	return testErr
}

// envNameRE matches the names of variables a shell can export.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

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

// engineClip shortens a command to one line of at most 60 bytes, for
// progress lines.
func engineClip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
