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
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/shell"
)

// consoleAction sends text to the console and waits for one of several
// patterns.
type consoleAction struct {
	Send    any             `yaml:"send,omitempty"`
	Expect  any             `yaml:"expect,omitempty"`
	FailOn  []string        `yaml:"fail-on,omitempty"`
	Pace    engine.Duration `yaml:"pace,omitempty"`
	Results any             `yaml:"results,omitempty"`
	results *resultsSpec
	send    []string
	expect  []engine.Pattern
	failOn  []engine.Pattern
}

func init() {
	engine.Register(engine.StepType{
		Name:    "console",
		Config:  consoleAction{},
		Summary: "Send keys or text to the console, then wait until it prints one of several regexes.",
		Schema: object(obj{
			"send": described(ref("stringList"),
				"Text to type; key macros such as <ENTER>, <CTRL-C>, <ESC>, <F2>, <UP> are replaced. A list is typed in order."),
			"expect": described(ref("stringList"),
				"Regexes; the step passes when the console prints any of them (the first to match wins)."),
			"fail-on": described(obj{"type": "array", "items": obj{"type": "string"}}, "Regexes that fail the step when printed first."),
			"pace":    described(ref("duration"), "Pause between 16-byte chunks when typing, for slow line editors."),
			"results": resultsSchema("What the console prints until expect matches (from what it printed since the last wait, e.g. KUnit's results at boot)"),
		}),
		Needs:          []drivers.Capability{drivers.CapConsole},
		DefaultTimeout: 10 * time.Minute,
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &consoleAction{}
			if !dc.Decode(n, a) {
				return nil
			}
			if a.Send == nil && a.Expect == nil {
				dc.Errorf(n, "", "a console step needs send, expect or both")
				return nil
			}
			a.send = stringList(a.Send)
			var ok bool
			if a.expect, ok = dc.Patterns(dc.Child(n, "expect"), "expect"); !ok {
				return nil
			}
			if a.failOn, ok = dc.Patterns(dc.Child(n, "fail-on"), "fail-on"); !ok {
				return nil
			}
			if a.results, ok = decodeResults(dc, n); !ok {
				return nil
			}
			if a.results != nil && a.Expect == nil {
				dc.Errorf(dc.Child(n, "results"), "results", "results need expect: the text that ends them (e.g. \"# Totals\" or a prompt)")
				return nil
			}
			return a
		},
	})
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func regexps(ps []engine.Pattern) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, p := range ps {
		if p.Re != nil {
			out = append(out, p.Re)
		}
	}
	return out
}

func (a *consoleAction) Run(ctx context.Context, r *engine.StepRun) error {
	con, err := r.Console()
	if err != nil {
		return err
	}
	if a.results != nil {
		// From what the console printed since the last wait (the results
		// may come during the boot, before this step starts) until expect
		// matches, or the wait ends: a board that dies mid-suite still
		// reports the cases it printed.
		p := a.results.parser()
		stop := con.Tee(p, len(a.send) == 0)
		err := a.run(ctx, r, con)
		stop()
		_, testErr := a.results.judge(r, p.Close())
		if err != nil {
			return err
		}
		return testErr
	}
	return a.run(ctx, r, con)
}

func (a *consoleAction) run(ctx context.Context, r *engine.StepRun, con *console.Session) error {
	if len(a.send) > 0 {
		// What the board printed before the keys land (a prompt already on
		// screen) answers nothing: expect matches what comes after them, as
		// pexpect does after a send. Without send, it matches from the
		// previous match on (the boot log a power step started).
		con.Discard()
	}
	for _, s := range a.send {
		if err := con.Send(ctx, []byte(expandKeys(s)), a.Pace.Duration); err != nil {
			return diag.Infraf("console: %v", err)
		}
	}
	if len(a.expect) == 0 {
		return nil
	}
	var want []string
	for _, p := range a.expect {
		want = append(want, fmt.Sprintf("%q", p.Source))
	}
	r.Waiting("the console to print " + strings.Join(want, " or "))
	m, err := con.Expect(ctx, regexps(a.expect), regexps(a.failOn))
	if err != nil {
		if ctx.Err() != nil {
			// masked before it is cut: a secret cut by the window is not shown in part
			tail := strings.TrimSpace(r.Redactor().Tail(con.Tail(200+r.Redactor().MaxLen()), 200))
			return diag.Failf("%v waiting for %s; the console last printed: %q", context.Cause(ctx), strings.Join(want, " or "), tail)
		}
		return shell.WaitError(err, "console")
	}
	r.Output(m.Before + m.Text)
	if len(a.expect) > 1 {
		r.Logf("matched %q", a.expect[m.Index].Source)
	}
	return nil
}
