package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/expr"
)

// DecodeContext is what a step type's Decode gets: reporting with
// positions, strict decoding, and access to nested steps and used plans.
type DecodeContext struct {
	l      *Loader
	pi     *planInstance
	path   string
	ptr    string
	failed bool
}

// Path is the action's place in the document, e.g. "steps[2].flash".
func (dc *DecodeContext) Path() string { return dc.path }

// File is the file the step is in.
func (dc *DecodeContext) File() string { return dc.pi.f.path }

// Mode says whether this is a validation or a run.
func (dc *DecodeContext) Mode() Mode { return dc.l.opts.Mode }

// Range returns the source range of n.
func (dc *DecodeContext) Range(n *yaml.Node) diag.Range { return rangeOf(dc.pi.f.path, n) }

// Errorf reports an invalid-plan error at n; sub is the key path below the
// action ("expect[1]"), or "".
func (dc *DecodeContext) Errorf(n *yaml.Node, sub, format string, args ...any) *diag.Diagnostic {
	dc.failed = true
	d := diag.Errorf(rangeOf(dc.pi.f.path, n), joinSub(dc.path, sub), format, args...)
	dc.l.report(d)
	return d
}

func joinSub(path, sub string) string {
	switch {
	case sub == "":
		return path
	case strings.HasPrefix(sub, "["):
		return path + sub
	}
	return path + "." + sub
}

// Decode decodes n into v (a pointer to the action's struct). Mistakes the
// schema cannot see become diagnostics, never Go type errors.
func (dc *DecodeContext) Decode(n *yaml.Node, v any) bool {
	k, err := decodeStrict(n, v)
	switch {
	case k != nil:
		dc.Errorf(k, k.Value, "unknown key %q", k.Value)
		return false
	case err != nil:
		dc.Errorf(n, "", "%s", cleanDecodeError(err))
		return false
	}
	return true
}

// Pending reports whether s still holds a reference whose value is not
// known (only during `jsplan validate`).
func (dc *DecodeContext) Pending(s string) bool { return expr.Has(s) }

// Regexp compiles the regular expression in n. It returns false after
// reporting an error, and a zero Pattern (Re == nil) when the value is a
// pending reference.
func (dc *DecodeContext) Regexp(n *yaml.Node, sub string) (Pattern, bool) {
	before := len(dc.l.diags)
	p, ok := dc.l.compile(dc.pi.f.path, n, joinSub(dc.path, sub))
	if len(dc.l.diags) > before {
		dc.failed = true
		return p, false
	}
	if !ok {
		return Pattern{Source: n.Value, Range: rangeOf(dc.pi.f.path, n)}, true
	}
	return p, true
}

// Patterns compiles a string or a list of strings of regular expressions.
func (dc *DecodeContext) Patterns(n *yaml.Node, sub string) ([]Pattern, bool) {
	if n == nil {
		return nil, true
	}
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	var out []Pattern
	ok := true
	for i, c := range items {
		s := sub
		if n.Kind == yaml.SequenceNode {
			s = fmt.Sprintf("%s[%d]", sub, i)
		}
		p, good := dc.Regexp(c, s)
		ok = ok && good
		out = append(out, p)
	}
	return out, ok
}

// Child returns the node under key in mapping n, or nil.
func (dc *DecodeContext) Child(n *yaml.Node, key string) *yaml.Node {
	_, v := mapGet(n, key)
	return v
}

// LocalPath resolves a host path relative to the directory of the plan
// file that holds the step.
func (dc *DecodeContext) LocalPath(p string) string {
	if p == "" || filepath.IsAbs(p) || expr.Has(p) {
		return p
	}
	return filepath.Join(dc.pi.sc.dir, p)
}

// CheckFile reports, at key in mapping n (or at n), a host file the step
// reads that cannot be opened when the plan is loaded to run; a path that
// waits on an expression is checked when it has its value. It returns
// whether the step may go on.
func (dc *DecodeContext) CheckFile(n *yaml.Node, key, path string) bool {
	if dc.Mode() != ModeRun || dc.Pending(path) {
		return true
	}
	_, err := os.Stat(path)
	if err == nil {
		return true
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	node := n
	if c := dc.Child(n, key); c != nil {
		node = c
	}
	dc.Errorf(node, key, "%s %s: %v", key, path, err)
	return false
}

// Steps decodes a nested list of steps (a group's), at key sub ("": n is
// the action's value itself).
func (dc *DecodeContext) Steps(n *yaml.Node, sub string) []*Step {
	if sub == "" {
		return dc.l.decodeSteps(dc.pi, n, dc.path, dc.ptr)
	}
	return dc.l.decodeSteps(dc.pi, n, joinSub(dc.path, sub), dc.ptr+"/"+strings.ReplaceAll(sub, ".", "/"))
}

// Use loads the plan at planNode (a path relative to the current file)
// with the inputs in withNode (a mapping, or nil) and returns it. Cycles,
// missing files and missing or unknown inputs are reported.
func (dc *DecodeContext) Use(planNode, withNode *yaml.Node) *Plan {
	if planNode == nil || planNode.Kind != yaml.ScalarNode {
		dc.Errorf(planNode, "plan", "expected the path of a plan file")
		return nil
	}
	if expr.Has(planNode.Value) {
		if dc.Mode() == ModeRun {
			dc.Errorf(planNode, "plan", "unresolved reference in the path of a used plan")
		}
		return nil
	}
	target := planNode.Value
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(dc.pi.f.abs), target)
	}
	l := dc.l
	abs, _ := filepath.Abs(target)
	for i, s := range l.stack {
		if s == abs {
			chain := append(append([]string{}, l.stack[i:]...), abs)
			for j := range chain {
				chain[j] = relToWD(chain[j])
			}
			dc.Errorf(planNode, "plan", "use cycle: %s", strings.Join(chain, " -> "))
			return nil
		}
	}
	before := len(l.diags)
	f, err := l.openFile(relToWD(target), true)
	if err != nil {
		// point at the use: key, not at the missing file
		dc.Errorf(planNode, "plan", "used plan %q not found", planNode.Value)
		return nil
	}
	if f.root == nil {
		dc.failed = true // its own errors are reported
		return nil
	}
	if f.kind != "Plan" {
		dc.Errorf(planNode, "plan", "%s is a %s, not a Plan", planNode.Value, f.kind)
		return nil
	}
	values := map[string]valueSrc{}
	declared := map[string]bool{}
	if _, pn := mapGet(f.root, "params"); pn != nil && pn.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(pn.Content); i += 2 {
			declared[pn.Content[i].Value] = true
		}
	}
	if withNode != nil && withNode.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(withNode.Content); i += 2 {
			k, v := withNode.Content[i], withNode.Content[i+1]
			if !declared[k.Value] {
				d := dc.Errorf(k, "with."+k.Value, "%s has no input %q", planNode.Value, k.Value)
				if s := suggest(k.Value, slices.Sorted(maps.Keys(declared))); s != "" {
					d.WithDetail("did you mean %q?", s)
				} else {
					d.WithDetail("its inputs: %s", strings.Join(slices.Sorted(maps.Keys(declared)), ", "))
				}
				continue
			}
			if v.Kind != yaml.ScalarNode {
				dc.Errorf(v, "with."+k.Value, "an input value must be a string, number or boolean")
				continue
			}
			values[k.Value] = valueSrc{text: v.Value, known: !expr.Has(v.Value), src: rangeOf(dc.pi.f.path, v), base: dc.pi.sc.dir}
		}
	}
	at := rangeOf(dc.pi.f.path, planNode)
	l.stack = append(l.stack, abs)
	p := l.instantiate(f, values, &at)
	l.stack = l.stack[:len(l.stack)-1]
	if l.diags[before:].HasErrors() {
		dc.failed = true
	}
	return p
}

// relToWD shortens p to a path relative to the working directory when it
// is below it, for messages.
func relToWD(p string) string {
	if wd, err := filepath.Abs("."); err == nil {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return p
}
