package engine

// Steps: decoding the step lists of a plan (each step's action by its
// registered type), checks across steps, and walks over them.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/internal/yamlerr"
	"github.com/jsplan/jsplan/schema"
)

func (l *Loader) decodeSteps(pi *planInstance, n *yaml.Node, path, ptr string) []*Step {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	steps := make([]*Step, 0, len(n.Content))
	for i, c := range n.Content {
		sp, sptr := fmt.Sprintf("%s[%d]", path, i), fmt.Sprintf("%s/%d", ptr, i)
		if s := l.decodeStep(pi, c, sp, sptr); s != nil {
			steps = append(steps, s)
		}
	}
	return steps
}

func (l *Loader) decodeStep(pi *planInstance, n *yaml.Node, path, ptr string) *Step {
	f := pi.f
	if n.Kind != yaml.MappingNode || pi.f.isBad(ptr) && !pi.f.onlyNestedBad(ptr) {
		return nil
	}
	s := &Step{Path: path, Range: rangeOf(f.path, n)}
	if l.steps++; l.steps > MaxSteps {
		if !l.tooMany {
			l.tooMany = true
			chain := make([]string, len(l.stack))
			for i, p := range l.stack {
				chain[i] = relToWD(p)
			}
			l.report(diag.Errorf(s.Range, path, "the plan has more than %d steps once use: and group: are expanded", MaxSteps).
				WithDetail("reached through %s; a use: of a plan that itself uses plans multiplies the steps", strings.Join(chain, " -> ")))
		}
		return nil
	}
	var actionKey, actionVal *yaml.Node
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "name":
			s.Name = v.Value
		case "id":
			s.ID = v.Value
			if prev, dup := pi.ids[v.Value]; dup {
				l.report(diag.Errorf(rangeOf(f.path, v), path+".id", "duplicate step id %q", v.Value).
					WithDetail("first used at line %d, column %d", prev.Start.Line, prev.Start.Column))
			} else {
				pi.ids[v.Value] = rangeOf(f.path, v)
			}
		case "timeout":
			err = v.Decode(&s.Timeout)
			if err == nil && s.Timeout.Known() && s.Timeout.Duration <= 0 {
				err = fmt.Errorf("timeout must be longer than 0 (omit it for the step type's default)")
			}
		case "retry":
			err = v.Decode(&s.Retry)
			if a := s.Retry.Attempts; err == nil && a.Expr == "" && a.Value > MaxAttempts {
				_, an := mapGet(v, "attempts")
				l.report(diag.Errorf(rangeOf(f.path, an), path+".retry.attempts", "retry.attempts %d is more than the limit of %d", a.Value, MaxAttempts))
				ok = false
			}
		case "continue-on-error":
			err = v.Decode(&s.ContinueOnError)
		case "on":
			s.On = v.Value
			if !l.checkOn(f, v, path) {
				ok = false
			}
		default:
			if _, known := LookupStep(k.Value); known && actionKey == nil {
				actionKey, actionVal = k, v
			}
		}
		if err != nil {
			ok = false
			l.report(diag.Errorf(rangeOf(f.path, v), path+"."+k.Value, "%s", cleanDecodeError(err)))
		}
	}
	if actionKey == nil || !ok {
		return nil // the schema reported it
	}
	st, _ := LookupStep(actionKey.Value)
	s.Type = st.Name
	s.node = actionVal
	dc := &DecodeContext{l: l, pi: pi, path: path + "." + st.Name, ptr: ptr + "/" + st.Name}
	s.Action = st.Decode(dc, actionVal)
	if s.Action == nil || dc.failed {
		return nil
	}
	return s
}

// checkTimeouts reports steps whose timeout exceeds the plan's.
func (l *Loader) checkTimeouts(p *Plan) {
	if !p.Timeout.IsSet() || !p.Timeout.Known() {
		return
	}
	WalkSteps(p.Steps, func(s *Step) {
		if s.Timeout.Known() && s.Timeout.Duration > p.Timeout.Duration {
			l.report(diag.Errorf(s.Range, s.Path+".timeout", "step timeout %s is longer than the plan timeout %s",
				schema.FormatDuration(s.Timeout.Duration), schema.FormatDuration(p.Timeout.Duration)).
				WithDetail("the plan would time out first; shorten the step timeout or raise the plan's"))
			return
		}
		// Not wrong, but likely not meant: the later attempts can never run.
		if n := s.Retry.Count(); n > 1 && s.Timeout.Known() {
			total := time.Duration(n)*s.Timeout.Duration + time.Duration(n-1)*s.Retry.Delay.Duration
			if total > p.Timeout.Duration {
				d := diag.Errorf(s.Range, s.Path+".retry", "%d attempts of up to %s each can take %s, longer than the plan timeout %s",
					n, schema.FormatDuration(s.Timeout.Duration), schema.FormatDuration(total), schema.FormatDuration(p.Timeout.Duration)).
					WithDetail("the plan would time out before the last attempts; fewer attempts, a shorter step timeout or a longer plan timeout")
				d.Severity = diag.Warning
				l.report(d)
			}
		}
	})
}

// WalkSteps calls fn for every step, depth first, including steps inside
// groups and used plans.
func WalkSteps(steps []*Step, fn func(*Step)) {
	for _, s := range steps {
		fn(s)
		if p, ok := s.Action.(Parent); ok {
			for _, list := range p.Children() {
				WalkSteps(list, fn)
			}
		}
	}
}

// Needs maps each capability the steps use to the first step (in walk
// order) that uses it.
func Needs(steps ...[]*Step) map[drivers.Capability]*Step {
	out := map[drivers.Capability]*Step{}
	for _, list := range steps {
		WalkSteps(list, func(s *Step) {
			var caps []drivers.Capability
			if n, ok := s.Action.(Needer); ok {
				caps = n.Needs()
			} else if st, ok := LookupStep(s.Type); ok {
				caps = st.Needs
			}
			for _, c := range caps {
				if _, seen := out[c]; !seen {
					out[c] = s
				}
			}
		})
	}
	return out
}

// cleanDecodeError says in plain words why a node did not decode.
func cleanDecodeError(err error) string { return yamlerr.Decode(err).Msg }

// decodeErrorAt says why n did not decode and which value under n (or n
// itself) the error is about: a value's own UnmarshalYAML (a duration, a
// command) names its node.
func decodeErrorAt(n *yaml.Node, err error) (*yaml.Node, string) {
	e := yamlerr.Decode(err)
	if ye := (*yamlerr.Error)(nil); errors.As(err, &ye) && e.Line > 0 {
		if v := valueAtLine(n, e.Line); v != nil {
			return v, e.Msg
		}
	}
	return n, e.Msg
}
