package engine

// Plans that need several boards: roles (boards:), labels they share
// (same:), shares of shared resources (resources:), and the choice of
// boards and resources that satisfies all of it.

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/expr"
)

// Role is one board a plan with boards: asks for.
type Role struct {
	Name     string
	Selector BoardSelector
	Range    diag.Range
}

// ResourceRequest asks for a share of one shared resource: by name, or by
// kind (then one attached to every board of the run).
type ResourceRequest struct {
	Name  string     `yaml:"name,omitempty" json:"name,omitempty"`
	Kind  string     `yaml:"kind,omitempty" json:"kind,omitempty"`
	Range diag.Range `yaml:"-" json:"-"`
}

func (q *ResourceRequest) String() string {
	if q.Name != "" {
		return q.Name
	}
	return "a " + q.Kind + " attached to every board"
}

// Multi reports whether the plan runs through the multi-board path: it
// names roles or asks for shared resources.
func (p *Plan) Multi() bool { return len(p.Roles) > 0 || len(p.Resources) > 0 }

// RoleList is the plan's roles; a single-board plan has one, named "",
// with the plan's board selector.
func (p *Plan) RoleList() []*Role {
	if len(p.Roles) > 0 {
		return p.Roles
	}
	return []*Role{{Selector: p.Board, Range: p.BoardRange}}
}

// FirstRole is the role steps without on: run on ("" for one board).
func (p *Plan) FirstRole() string {
	if len(p.Roles) > 0 {
		return p.Roles[0].Name
	}
	return ""
}

// roleNames lists the role names of a plan document's boards: mapping.
func roleNames(root *yaml.Node) []string {
	_, bn := mapGet(root, "boards")
	if bn == nil || bn.Kind != yaml.MappingNode {
		return nil
	}
	var out []string
	for i := 0; i+1 < len(bn.Content); i += 2 {
		out = append(out, bn.Content[i].Value)
	}
	return out
}

// decodeMulti reads boards:, same: and resources: of a plan document.
func (l *Loader) decodeMulti(f *fileDoc, work *yaml.Node, p *Plan) {
	bk, bn := mapGet(work, "boards")
	if bn != nil && bn.Kind == yaml.MappingNode && !f.isBad("/boards") {
		if k, _ := mapGet(work, "board"); k != nil {
			l.report(diag.Errorf(rangeOf(f.path, k), "board", "a plan has either board: (one board) or boards: (roles), not both").
				WithDetail("boards: is at %s", rangeOf(f.path, bk)))
		}
		for i := 0; i+1 < len(bn.Content); i += 2 {
			k, v := bn.Content[i], bn.Content[i+1]
			r := &Role{Name: k.Value, Range: rangeOf(f.path, k)}
			if v.Kind == yaml.MappingNode {
				if err := v.Decode(&r.Selector); err != nil {
					l.report(diag.Errorf(rangeOf(f.path, v), "boards."+k.Value, "%s", cleanDecodeError(err)))
				}
			}
			p.Roles = append(p.Roles, r)
		}
		p.BoardRange = rangeOf(f.path, bk)
	}
	if sk, sn := mapGet(work, "same"); sn != nil && !f.isBad("/same") {
		if len(p.Roles) < 2 {
			l.report(diag.Errorf(rangeOf(f.path, sk), "same", "same: needs a plan with two or more boards: roles"))
		}
		for _, c := range sn.Content {
			p.Same = append(p.Same, c.Value)
		}
	}
	if _, rn := mapGet(work, "resources"); rn != nil && rn.Kind == yaml.SequenceNode && !f.isBad("/resources") {
		for i, c := range rn.Content {
			q := &ResourceRequest{Range: rangeOf(f.path, c)}
			if c.Kind == yaml.ScalarNode {
				q.Name = c.Value
			} else {
				_ = c.Decode(q)
			}
			if (q.Name == "") == (q.Kind == "") {
				l.report(diag.Errorf(q.Range, fmt.Sprintf("resources[%d]", i), "a resource request has either a name or a kind").
					WithDetail("e.g. resources: [can0] or resources: [{kind: canbus}]"))
				continue
			}
			p.Resources = append(p.Resources, q)
		}
	}
}

// checkOn checks a step's on: names a role of the top-level plan.
func (l *Loader) checkOn(f *fileDoc, v *yaml.Node, path string) bool {
	for _, r := range l.roles {
		if r == v.Value {
			return true
		}
	}
	d := diag.Errorf(rangeOf(f.path, v), path+".on", "unknown board role %q", v.Value)
	switch {
	case len(l.roles) == 0:
		d.WithDetail("the plan declares no roles: name them under boards:, e.g. boards: {dut: {labels: {kind: virtual}}}")
	case suggest(v.Value, l.roles) != "":
		d.WithDetail("did you mean %q?", suggest(v.Value, l.roles))
	default:
		d.WithDetail("the plan's roles: %s", strings.Join(l.roles, ", "))
	}
	l.report(d)
	return false
}

// resolveRole resolves ${{ boards.ROLE.name|labels.X|vars.X }}.
func (l *Loader) resolveRole(ref expr.Ref) (string, bool, string, error) {
	role, rest, _ := strings.Cut(ref.Rest(), ".")
	known := false
	for _, r := range l.roles {
		known = known || r == role
	}
	if !known {
		if len(l.roles) == 0 {
			return "", false, "", fmt.Errorf("unknown reference %q: the plan declares no boards: roles (use board.*)", ref.Path)
		}
		msg := fmt.Sprintf("unknown board role %q in %q", role, ref.Path)
		if s := suggest(role, l.roles); s != "" {
			return "", false, "", fmt.Errorf("%s: did you mean %q?", msg, s)
		}
		return "", false, "", fmt.Errorf("%s: the plan's roles are %s", msg, strings.Join(l.roles, ", "))
	}
	if rest != "name" && !strings.HasPrefix(rest, "labels.") && !strings.HasPrefix(rest, "vars.") {
		return "", false, "", fmt.Errorf("unknown reference %q: use boards.%s.name, boards.%s.labels.NAME or boards.%s.vars.NAME", ref.Path, role, role, role)
	}
	b := l.opts.Roles[role]
	if b == nil {
		return "", false, "", nil // not chosen yet: pending
	}
	switch {
	case rest == "name":
		return b.Name, true, "!!str", nil
	case strings.HasPrefix(rest, "labels."):
		k := strings.TrimPrefix(rest, "labels.")
		if v, ok := b.Labels[k]; ok {
			return v, true, "!!str", nil
		}
		return "", false, "", fmt.Errorf("board %q (role %s) has no label %q", b.Name, role, k)
	default:
		k := strings.TrimPrefix(rest, "vars.")
		if v, ok := b.Vars[k]; ok {
			return v, true, "!!str", nil
		}
		return "", false, "", fmt.Errorf("board %q (role %s) has no var %q (add it under vars: in the inventory)", b.Name, role, k)
	}
}

// Assignment is one way to run a plan: a board for every role and the
// resources it holds a share of.
type Assignment struct {
	// Boards are in the plan's role order.
	Boards    []*BoardSpec
	Roles     []string
	Resources []*ResourceSpec
}

// Board returns the board of role, or nil.
func (a *Assignment) Board(role string) *BoardSpec {
	for i, r := range a.Roles {
		if r == role {
			return a.Boards[i]
		}
	}
	return nil
}

// Infos returns the boards as plans read them, by role.
func (a *Assignment) Infos() map[string]*BoardInfo {
	out := map[string]*BoardInfo{}
	for i, r := range a.Roles {
		out[r] = a.Boards[i].Info()
	}
	return out
}

func (a *Assignment) String() string {
	var parts []string
	for i, r := range a.Roles {
		if r == "" {
			parts = append(parts, a.Boards[i].Name)
		} else {
			parts = append(parts, r+"="+a.Boards[i].Name)
		}
	}
	for _, res := range a.Resources {
		parts = append(parts, "resource "+res.Name)
	}
	return strings.Join(parts, ", ")
}

// maxAssignments bounds how many ways to run a plan are listed: enough to
// find a free one in any lab, few enough to try them all quickly.
const maxAssignments = 256

// RoleNeeds returns the capabilities each role's steps use: a step runs on
// its on: role, else where its enclosing step runs, else the first role.
func RoleNeeds(p *Plan) map[string]map[drivers.Capability]*Step {
	out := map[string]map[drivers.Capability]*Step{}
	var walk func(steps []*Step, role string)
	walk = func(steps []*Step, role string) {
		for _, s := range steps {
			r := role
			if s.On != "" {
				r = s.On
			}
			var caps []drivers.Capability
			if n, ok := s.Action.(Needer); ok {
				caps = n.Needs()
			} else if st, ok := LookupStep(s.Type); ok {
				caps = st.Needs
			}
			for _, c := range caps {
				if out[r] == nil {
					out[r] = map[drivers.Capability]*Step{}
				}
				if _, seen := out[r][c]; !seen {
					out[r][c] = s
				}
			}
			if pa, ok := s.Action.(Parent); ok {
				for _, list := range pa.Children() {
					walk(list, r)
				}
			}
		}
	}
	walk(p.Steps, p.FirstRole())
	walk(p.Finally, p.FirstRole())
	return out
}

// CheckBoards lists the ways plan p can run on the boards of inv, first
// choice first, and reports why there is none: a role no board matches or
// none with the capabilities its steps need, boards that share no value of
// a same: label, a resource that does not exist or is attached to none of
// them. It covers single-board plans that ask for resources too.
//
// A non-zero override (from the command line) applies to the first role:
// a name alone (--board) picks its board, which must still carry the
// role's labels; labels (--selector) replace the role's selector.
func (l *Loader) CheckBoards(p *Plan, inv *Inventory, override BoardSelector) []*Assignment {
	return l.CheckBoardsPinned(p, inv, override, nil)
}

// CheckBoardsPinned is CheckBoards where pins give some roles their board
// by name (role -> board, as a Kubernetes claim assigns one per request);
// a pinned board must still carry its role's labels. A pin wins over the
// override for its role.
func (l *Loader) CheckBoardsPinned(p *Plan, inv *Inventory, override BoardSelector, pins map[string]string) []*Assignment {
	roles := p.RoleList()
	needs := RoleNeeds(p)
	cands := make([][]*BoardSpec, len(roles))
	failed := false
	for i, r := range roles {
		sel := r.Selector
		pinned, isPinned := pins[r.Name]
		switch {
		case isPinned && r.Name != "":
			sel = BoardSelector{Name: pinned, Labels: r.Selector.Labels}
		case i > 0 || override.IsZero():
		case len(override.Labels) == 0:
			// --board (a claim's assignment) picks the board; it must
			// still satisfy the role's labels
			sel = BoardSelector{Name: override.Name, Labels: r.Selector.Labels}
		default:
			sel = override
		}
		matches := inv.Select(sel)
		name := "board"
		if r.Name != "" {
			name = "role " + r.Name
		}
		if len(matches) == 0 {
			dropped := false
			for _, b := range inv.dropped {
				dropped = dropped || b.Matches(sel)
			}
			if !dropped {
				d := diag.Errorf(r.Range, "boards."+r.Name, "%s: no board in the inventory matches %s", name, sel)
				if sel.Name != "" {
					if s := suggest(sel.Name, inv.Names()); s != "" {
						d.WithDetail("did you mean %q?", s)
					}
				}
				l.report(d)
			}
			failed = true
			continue
		}
		for _, b := range matches {
			ok := true
			for c := range needs[r.Name] {
				ok = ok && b.Has(c)
			}
			if ok {
				cands[i] = append(cands[i], b)
			}
		}
		if len(cands[i]) == 0 {
			b := matches[0]
			for _, c := range drivers.AllCapabilities {
				if s, need := needs[r.Name][c]; need && !b.Has(c) {
					l.report(diag.Errorf(s.Range, s.Path, "step %q needs %s on %s, but no board matching %s has a %s driver", s.Title(), c, name, sel, c).
						WithDetail("%s serves: %s", b.Name, capList(b.Capabilities())))
				}
			}
			failed = true
		}
	}
	for _, q := range p.Resources {
		if q.Name != "" && inv.Resource(q.Name) == nil {
			d := diag.Errorf(q.Range, "resources", "unknown resource %q", q.Name)
			if s := suggest(q.Name, inv.ResourceNames()); s != "" {
				d.WithDetail("did you mean %q?", s)
			} else if len(inv.Resources) > 0 {
				d.WithDetail("resources: %s", strings.Join(inv.ResourceNames(), ", "))
			} else {
				d.WithDetail("the inventory declares no resources")
			}
			l.report(d)
			failed = true
		}
	}
	if failed {
		return nil
	}
	var out []*Assignment
	chosen := make([]*BoardSpec, len(roles))
	used := map[*BoardSpec]bool{}
	var pick func(i int)
	pick = func(i int) {
		if len(out) >= maxAssignments {
			return
		}
		if i == len(roles) {
			for _, rs := range resourceChoices(p, inv, chosen) {
				a := &Assignment{Boards: append([]*BoardSpec(nil), chosen...), Resources: rs}
				for _, r := range roles {
					a.Roles = append(a.Roles, r.Name)
				}
				out = append(out, a)
			}
			return
		}
		for _, b := range cands[i] {
			if used[b] || !sameLabels(p.Same, chosen[:i], b) {
				continue
			}
			used[b], chosen[i] = true, b
			pick(i + 1)
			used[b] = false
		}
	}
	pick(0)
	if len(out) == 0 {
		what := "no set of distinct boards for the roles"
		if len(p.Same) > 0 {
			what += " that share a value of " + strings.Join(p.Same, ", ")
		}
		if len(p.Resources) > 0 {
			what += " with the resources asked for"
		}
		d := diag.Errorf(p.BoardRange, "boards", "%s in the inventory", what)
		var ds []string
		for i, r := range roles {
			var names []string
			for _, b := range cands[i] {
				names = append(names, b.Name+labelsOf(b, p.Same))
			}
			ds = append(ds, fmt.Sprintf("%s: %s", r.Name, strings.Join(names, ", ")))
		}
		d.WithDetail("candidates: %s", strings.Join(ds, "; "))
		l.report(d)
	}
	return out
}

func labelsOf(b *BoardSpec, keys []string) string {
	var kv []string
	for _, k := range keys {
		kv = append(kv, k+"="+b.Labels[k])
	}
	if len(kv) == 0 {
		return ""
	}
	return " (" + strings.Join(kv, ",") + ")"
}

// sameLabels reports whether b carries the same value of every label in
// same as the boards already chosen (and carries the label at all).
func sameLabels(same []string, chosen []*BoardSpec, b *BoardSpec) bool {
	for _, k := range same {
		v, ok := b.Labels[k]
		if !ok {
			return false
		}
		for _, c := range chosen {
			if c.Labels[k] != v {
				return false
			}
		}
	}
	return true
}

// resourceChoices lists the sets of resources that satisfy the plan's
// requests with these boards: a named one as is, a kind by a resource of
// that kind attached to every board.
func resourceChoices(p *Plan, inv *Inventory, boards []*BoardSpec) [][]*ResourceSpec {
	out := [][]*ResourceSpec{nil}
	for _, q := range p.Resources {
		var opts []*ResourceSpec
		if q.Name != "" {
			opts = []*ResourceSpec{inv.Resource(q.Name)}
		} else {
			for _, r := range inv.Resources {
				if r.Kind == q.Kind && attachedToAll(r.Name, boards) {
					opts = append(opts, r)
				}
			}
		}
		var next [][]*ResourceSpec
		for _, have := range out {
			for _, r := range opts {
				dup := false
				for _, h := range have {
					dup = dup || h == r
				}
				if !dup {
					next = append(next, append(append([]*ResourceSpec(nil), have...), r))
				}
			}
		}
		out = next
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	}
	return out
}

func attachedToAll(res string, boards []*BoardSpec) bool {
	for _, b := range boards {
		found := false
		for _, r := range b.Resources {
			found = found || r == res
		}
		if !found {
			return false
		}
	}
	return true
}

// RenderAssigned is Render for a plan that runs on the boards and
// resources of a (nil: not chosen yet).
func RenderAssigned(p *Plan, a *Assignment) *yaml.Node { return render(p, nil, a) }

// renderMulti adds boards:, same: and resources: to a rendered plan: each
// role's board when chosen, else its selector.
func renderMulti(m *yaml.Node, p *Plan, a *Assignment) {
	if len(p.Roles) > 0 {
		bs := mapping()
		for _, r := range p.Roles {
			var b *BoardSpec
			if a != nil {
				b = a.Board(r.Name)
			}
			if b == nil {
				add(bs, r.Name, encode(r.Selector))
				continue
			}
			bm := mapping()
			add(bm, "name", scalar(b.Name))
			if len(b.Labels) > 0 {
				add(bm, "labels", encode(b.Labels))
			}
			d := mapping()
			for _, c := range b.Capabilities() {
				add(d, string(c), scalar(b.Serve[c]))
			}
			add(bm, "drivers", d)
			add(bs, r.Name, bm)
		}
		add(m, "boards", bs)
	} else if a != nil {
		b := a.Boards[0]
		bm := mapping()
		add(bm, "name", scalar(b.Name))
		if len(b.Labels) > 0 {
			add(bm, "labels", encode(b.Labels))
		}
		add(m, "board", bm)
	} else if !p.Board.IsZero() {
		add(m, "board", encode(p.Board))
	}
	if len(p.Same) > 0 {
		add(m, "same", encode(p.Same))
	}
	if len(p.Resources) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for i, q := range p.Resources {
			if a != nil && i < len(a.Resources) && q.Kind != "" {
				// the one chosen for the kind asked for
				for _, r := range a.Resources {
					if r.Kind == q.Kind {
						seq.Content = append(seq.Content, scalar(r.Name))
						break
					}
				}
				continue
			}
			if q.Name != "" {
				seq.Content = append(seq.Content, scalar(q.Name))
			} else {
				k := mapping()
				add(k, "kind", scalar(q.Kind))
				seq.Content = append(seq.Content, k)
			}
		}
		add(m, "resources", seq)
	}
}
