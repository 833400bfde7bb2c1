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

// consoleAction sends text to the console and waits for one of several
// patterns.
type consoleAction struct {
	Send   any             `yaml:"send,omitempty"`
	Expect any             `yaml:"expect,omitempty"`
	FailOn []string        `yaml:"fail-on,omitempty"`
	Pace   engine.Duration `yaml:"pace,omitempty"`
	send   []string
	expect []engine.Pattern
	failOn []engine.Pattern
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

func (a *consoleAction) Run(ctx context.Context, r *engine.Run) error {
	con, err := r.Console()
	if err != nil {
		return err
	}
	for _, s := range a.send {
		if err := con.Send(ctx, []byte(expandKeys(s)), a.Pace.Duration); err != nil {
			return diag.Infraf("console: %v", err)
		}
	}
	if len(a.expect) == 0 {
		return nil
	}
	m, err := con.Expect(ctx, regexps(a.expect), regexps(a.failOn))
	if err != nil {
		if ctx.Err() != nil {
			var want []string
			for _, p := range a.expect {
				want = append(want, fmt.Sprintf("%q", p.Source))
			}
			tail := strings.TrimSpace(r.Redact(con.Tail(200)))
			return diag.Failf("%v waiting for %s; the console last printed: %q", context.Cause(ctx), strings.Join(want, " or "), tail)
		}
		return waitError(err, "console")
	}
	r.Output(ctx, m.Before+m.Text)
	if len(a.expect) > 1 {
		r.Logf(ctx, "matched %q", a.expect[m.Index].Source)
	}
	return nil
}
