package engine

// Reference expansion: ${{ ... }} in a plan's YAML nodes, resolved against
// the scope, copy-on-write, with secrets kept out of shell commands.

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/expr"
)

// loc is a node's place in the document, turned into a path or a JSON
// pointer only when needed (an error, a schema-error check).
type loc struct {
	up  *loc
	key string // "" for a list index
	idx int
}

func (c *loc) path() string {
	if c == nil {
		return ""
	}
	p := c.up.path()
	if c.key == "" {
		return fmt.Sprintf("%s[%d]", p, c.idx)
	}
	return joinPath(p, c.key)
}

func (c *loc) ptr() string {
	if c == nil {
		return ""
	}
	if c.key == "" {
		return c.up.ptr() + "/" + strconv.Itoa(c.idx)
	}
	return c.up.ptr() + "/" + c.key
}

// Roles of nodes while expanding: lists under steps/finally hold steps,
// whose action keys may be verbatim.
const (
	rolePlain = iota
	roleSteps
	roleStep
	roleNoSecret // a scalar whose references must not be secrets
	roleHostCode // a scalar naming code run on the host (StepType.HostCode)
)

// expand returns n with every reference in its scalars replaced. It never
// changes n: nodes on the way to a changed scalar are copied, the rest is
// shared, so a library used many times is parsed once and copied little.
func (l *Loader) expand(f *fileDoc, n *yaml.Node, at *loc, sc *scope, role int) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		var out *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			// params hold the defaults, which are values, not templates
			if at == nil && key == "params" {
				continue
			}
			v := n.Content[i+1]
			child := &loc{up: at, key: key}
			var nv *yaml.Node
			st, isAction := LookupStep(key)
			switch {
			case role == roleStep && isAction && (len(st.Verbatim) > 0 || len(st.NoSecrets) > 0 || len(st.HostCode) > 0):
				nv = l.expandVerbatim(f, st, v, child, sc)
			case key == "steps" || key == "finally" || role == roleStep && key == "parallel":
				nv = l.expand(f, v, child, sc, roleSteps)
			default:
				nv = l.expand(f, v, child, sc, rolePlain)
			}
			if nv != v {
				if out == nil {
					out = shallowCopy(n)
				}
				out.Content[i+1] = nv
			}
		}
		if out != nil {
			return out
		}
	case yaml.SequenceNode:
		var out *yaml.Node
		itemRole := rolePlain
		if role == roleSteps {
			itemRole = roleStep
		}
		if role == roleNoSecret { // a list of paths, say
			itemRole = roleNoSecret
		}
		for i, c := range n.Content {
			nc := l.expand(f, c, &loc{up: at, idx: i}, sc, itemRole)
			if nc != c {
				if out == nil {
					out = shallowCopy(n)
				}
				out.Content[i] = nc
			}
		}
		if out != nil {
			return out
		}
	case yaml.ScalarNode:
		if !expr.Has(n.Value) || f.isBad(at.ptr()) {
			return n
		}
		c := *n
		if l.expandScalar(f, &c, at.path(), sc, role == roleNoSecret) {
			if role == roleHostCode && !expr.Has(c.Value) {
				l.checkHostCode(f, n, &c, at.path(), sc)
			}
			return &c
		}
	}
	return n
}

// checkHostCode refuses a path of code run on the host that a parameter,
// the environment or the artifacts directory chose (through references)
// from outside the plan's own files: it must lie inside the directory of
// the top-level plan, of a plan on the way to this one (use:), or of the
// file holding the step, symlinks resolved.
func (l *Loader) checkHostCode(f *fileDoc, raw, n *yaml.Node, path string, sc *scope) {
	// References to the plan (plan.dir) and the board's inventory entry
	// (board.vars) are the plan's and the lab's own choice; parameters,
	// the environment and the artifacts directory come from whoever runs
	// jsplan.
	refs, err := expr.Find(raw.Value)
	if err == nil && !slices.ContainsFunc(refs, func(r expr.Ref) bool {
		return r.Namespace() != "plan" && r.Namespace() != "board" && r.Namespace() != "boards"
	}) {
		return
	}
	target := n.Value
	if !filepath.IsAbs(target) {
		target = filepath.Join(sc.dir, target)
	}
	target, _ = filepath.Abs(target)
	if real, err := filepath.EvalSymlinks(target); err == nil {
		target = real
	}
	// The plans' own directories: the top-level plan's, and those of the
	// plans that used this one on the way here (a path parameter's default
	// in an intermediate plan names a file of that plan's).
	var roots []string
	for _, p := range l.stack {
		roots = append(roots, filepath.Dir(p))
	}
	roots = append(roots, sc.dir)
	for _, r := range roots {
		if real, err := filepath.EvalSymlinks(r); err == nil {
			r = real
		}
		if rel, err := filepath.Rel(r, target); err == nil && filepath.IsLocal(rel) {
			return
		}
	}
	l.report(diag.Errorf(rangeOf(f.path, raw), path, "a parameter cannot choose the code that runs on the host: this value came to %s, outside the plan's directory %s",
		relToWD(target), relToWD(roots[0])).
		WithDetail("a value given on the command line, in a params file or the environment may only name a file inside the plan's directory: write the path in the plan, or put the file there"))
}

func shallowCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = append([]*yaml.Node(nil), n.Content...)
	return &c
}

// expandVerbatim expands an action whose listed keys are taken as written.
func (l *Loader) expandVerbatim(f *fileDoc, st *StepType, n *yaml.Node, at *loc, sc *scope) *yaml.Node {
	verbatim := map[string]bool{}
	for _, k := range st.Verbatim {
		verbatim[k] = true
	}
	roleOf := func(key string) int {
		if slices.Contains(st.NoSecrets, key) {
			return roleNoSecret
		}
		if slices.Contains(st.HostCode, key) {
			return roleHostCode
		}
		return rolePlain
	}
	switch {
	case n.Kind == yaml.ScalarNode && verbatim[""]:
		return n
	case n.Kind != yaml.MappingNode:
		return l.expand(f, n, at, sc, roleOf(""))
	}
	var out *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		if verbatim[key] {
			continue
		}
		v := n.Content[i+1]
		if nv := l.expand(f, v, &loc{up: at, key: key}, sc, roleOf(key)); nv != v {
			if out == nil {
				out = shallowCopy(n)
			}
			out.Content[i+1] = nv
		}
	}
	if out != nil {
		return out
	}
	return n
}

// expandScalar expands n in place and reports whether it changed.
// With noSecret, a reference to a secret is an error.
func (l *Loader) expandScalar(f *fileDoc, n *yaml.Node, path string, sc *scope, noSecret bool) bool {
	r := rangeOf(f.path, n)
	var tag string
	whole, isWhole := expr.Whole(n.Value)
	lookup := func(ref expr.Ref) (string, bool, error) {
		v, ok, t, err := l.resolve(ref, sc)
		if err == nil && noSecret && l.isSecret(ref, sc, v, ok) {
			name := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(ref.Rest()))
			detail := fmt.Sprintf("pass it through env, e.g. env: {%s: \"${{ %s }}\"}, and use \"$%s\" in the command", name, ref.Path, name)
			if strings.Contains(path, "collect") {
				detail = "a path is typed on the board's shell or sent over ssh, where the secret could not be masked: do not name files after secrets"
			}
			return "", false, &diag.Diagnostic{Severity: diag.Error,
				Summary: fmt.Sprintf("%s is a secret: it cannot be pasted into a shell command", ref.Path),
				Detail:  detail}
		}
		if isWhole && ref == whole {
			tag = t
		}
		return v, ok, err
	}
	out, err := expr.Expand(n.Value, lookup, l.opts.Mode == ModeRun)
	if err != nil {
		var d *diag.Diagnostic
		if errors.As(err, &d) {
			d.Subject, d.Path = r, path
			l.report(d)
		} else {
			l.report(diag.Errorf(r, path, "%v", err))
		}
		return false
	}
	if out == n.Value {
		return false
	}
	n.Value = out
	n.Style = 0
	n.Tag = "!!str"
	if isWhole && tag != "" && !expr.Has(out) {
		n.Tag = tag
	}
	return true
}

// isSecret reports whether a resolved reference is a secret: a secret
// parameter of this plan, or a value registered as secret (one passed down
// from a using plan).
func (l *Loader) isSecret(ref expr.Ref, sc *scope, val string, known bool) bool {
	if ref.Namespace() == "params" && sc.values[ref.Rest()].secret {
		return true
	}
	return known && val != "" && l.secrets[val]
}

// resolve looks a reference up. ok=false leaves it pending.
func (l *Loader) resolve(ref expr.Ref, sc *scope) (val string, ok bool, tag string, err error) {
	ns, rest := ref.Namespace(), ref.Rest()
	switch ns {
	case "params":
		v, found := sc.values[rest]
		if !found {
			d := &diag.Diagnostic{Severity: diag.Error, Summary: fmt.Sprintf("undefined parameter %q", rest)}
			if s := suggest(rest, sc.names); s != "" {
				d.Detail = fmt.Sprintf("did you mean %q?", s)
			} else if len(sc.names) == 0 {
				d.Detail = "declare it under `params:`"
			} else {
				d.Detail = "declared parameters: " + strings.Join(sc.names, ", ")
			}
			return "", false, "", d
		}
		return v.text, v.known, v.tag, nil
	case "env":
		if rest == "" {
			return "", false, "", fmt.Errorf("reference %q needs a variable name, e.g. env.HOME", ref.Path)
		}
		if l.opts.Mode != ModeRun || l.opts.Env == nil {
			return "", false, "", nil
		}
		v, found := l.opts.Env(rest)
		if !found {
			return "", false, "", fmt.Errorf("environment variable %s is not set", rest)
		}
		return v, true, "!!str", nil
	case "board":
		b := l.opts.Board
		if b == nil {
			if rest == "name" || strings.HasPrefix(rest, "labels.") || strings.HasPrefix(rest, "vars.") {
				return "", false, "", nil
			}
			return "", false, "", fmt.Errorf("unknown reference %q: use board.name, board.labels.NAME or board.vars.NAME", ref.Path)
		}
		switch {
		case rest == "name":
			return b.Name, true, "!!str", nil
		case strings.HasPrefix(rest, "labels."):
			k := strings.TrimPrefix(rest, "labels.")
			if v, ok := b.Labels[k]; ok {
				return v, true, "!!str", nil
			}
			return "", false, "", fmt.Errorf("board %q has no label %q", b.Name, k)
		case strings.HasPrefix(rest, "vars."):
			k := strings.TrimPrefix(rest, "vars.")
			if v, ok := b.Vars[k]; ok {
				return v, true, "!!str", nil
			}
			return "", false, "", fmt.Errorf("board %q has no var %q (add it under vars: in the inventory)", b.Name, k)
		}
		return "", false, "", fmt.Errorf("unknown reference %q: use board.name, board.labels.NAME or board.vars.NAME", ref.Path)
	case "boards":
		return l.resolveRole(ref)
	case "plan":
		switch rest {
		case "name":
			return sc.plan, true, "!!str", nil
		case "dir":
			return sc.dir, true, "!!str", nil
		}
		return "", false, "", fmt.Errorf("unknown reference %q: use plan.name or plan.dir", ref.Path)
	case "artifacts":
		if rest != "dir" {
			return "", false, "", fmt.Errorf("unknown reference %q: use artifacts.dir", ref.Path)
		}
		if l.opts.Artifacts == "" {
			return "", false, "", nil
		}
		return l.opts.Artifacts, true, "!!str", nil
	}
	return "", false, "", fmt.Errorf("unknown reference %q: references start with params., env., board., boards., plan. or artifacts", ref.Path)
}
