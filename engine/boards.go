package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine/diag"
)

// Inventory is a set of boards from one or more Boards documents.
type Inventory struct {
	Boards []*BoardSpec
	// Resources are the shared resources boards attach to (resources.go).
	Resources []*ResourceSpec
	// dropped are boards left out for an error already reported; a plan
	// that selects one gets that error, not "no board matches" as well.
	dropped []*BoardSpec
}

// BoardSpec is a board as the inventory describes it.
type BoardSpec struct {
	Name   string
	Labels map[string]string
	Vars   map[string]string
	// Resources names the shared resources the board is attached to.
	Resources []string
	// Drivers are the board's driver configurations, by driver name.
	Drivers map[string]*yaml.Node
	// Serve maps each capability the board has to the driver serving it.
	Serve map[drivers.Capability]string
	// configured holds the devices the loader decoded and validated, for
	// the board's first OpenBoard: each configuration is decoded once.
	configured map[string]drivers.Device
	// Health is the board's health check (nil: none).
	Health *HealthSpec
	// File and Range locate the board in its inventory.
	File  string
	Dir   string
	Range diag.Range
}

// Info is what plans can read of the board.
func (b *BoardSpec) Info() *BoardInfo {
	return &BoardInfo{Name: b.Name, Labels: b.Labels, Vars: b.Vars}
}

// Has reports whether the board serves capability c.
func (b *BoardSpec) Has(c drivers.Capability) bool { _, ok := b.Serve[c]; return ok }

// Capabilities lists what the board serves, in the fixed order.
func (b *BoardSpec) Capabilities() []drivers.Capability {
	var out []drivers.Capability
	for _, c := range drivers.AllCapabilities {
		if b.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Matches reports whether the board satisfies a selector.
func (b *BoardSpec) Matches(sel BoardSelector) bool {
	if sel.Name != "" && sel.Name != b.Name {
		return false
	}
	for k, v := range sel.Labels {
		if b.Labels[k] != v {
			return false
		}
	}
	return true
}

// Lookup finds a board by name.
func (inv *Inventory) Lookup(name string) *BoardSpec {
	for _, b := range inv.Boards {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// Select returns the boards matching sel, in inventory order.
func (inv *Inventory) Select(sel BoardSelector) []*BoardSpec {
	var out []*BoardSpec
	for _, b := range inv.Boards {
		if b.Matches(sel) {
			out = append(out, b)
		}
	}
	return out
}

// Names lists the boards' names.
func (inv *Inventory) Names() []string {
	var out []string
	for _, b := range inv.Boards {
		out = append(out, b.Name)
	}
	return out
}

// LoadBoards reads a Boards document into inv, checking every driver
// configuration without touching hardware.
func (l *Loader) LoadBoards(path string, inv *Inventory) {
	f := l.readFile(path, true)
	l.boardsFrom(f, inv)
}

// LoadBoardsBytes reads an inventory held in memory (the built-in one).
func (l *Loader) LoadBoardsBytes(name string, src []byte, inv *Inventory) {
	f := &fileDoc{path: name, abs: name}
	l.files[name] = f
	l.sources[name] = src
	l.parse(f, src, true)
	l.boardsFrom(f, inv)
}

func (l *Loader) boardsFrom(f *fileDoc, inv *Inventory) {
	if f.root == nil {
		return
	}
	if f.kind != "Boards" {
		if f.kind == "Plan" {
			_, kv := mapGet(f.root, "kind")
			l.report(diag.Errorf(rangeOf(f.path, kv), "kind", "expected a Boards inventory, got a Plan"))
		}
		return
	}
	l.resourcesFrom(f, inv)
	_, list := mapGet(f.root, "boards")
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	for i, bn := range list.Content {
		path := fmt.Sprintf("boards[%d]", i)
		if bn.Kind != yaml.MappingNode {
			continue
		}
		b := &BoardSpec{File: f.path, Dir: filepath.Dir(f.abs), Range: rangeOf(f.path, bn),
			Drivers: map[string]*yaml.Node{}, Serve: map[drivers.Capability]string{}, configured: map[string]drivers.Device{}}
		_, nn := mapGet(bn, "name")
		if nn != nil && nn.Kind == yaml.ScalarNode {
			b.Name = nn.Value
		}
		if _, ln := mapGet(bn, "labels"); ln != nil {
			_ = ln.Decode(&b.Labels)
		}
		if f.isBad(fmt.Sprintf("/boards/%d", i)) {
			inv.dropped = append(inv.dropped, b)
			continue
		}
		if _, vn := mapGet(bn, "vars"); vn != nil {
			_ = vn.Decode(&b.Vars)
		}
		_, hn := mapGet(bn, "health")
		b.Health = l.healthFrom(f, hn, path+".health")
		if prev := inv.Lookup(b.Name); prev != nil {
			l.report(diag.Errorf(rangeOf(f.path, nn), path+".name", "duplicate board name %q", b.Name).
				WithDetail("first defined at %s", prev.Range))
			continue
		}
		_, dn := mapGet(bn, "drivers")
		ok := l.boardResources(f, bn, b, inv, path)
		for j := 0; j+1 < len(dn.Content); j += 2 {
			name, cfg := dn.Content[j].Value, dn.Content[j+1]
			b.Drivers[name] = cfg
			dev, err := l.configure(name, cfg, f.path, path+".drivers."+name)
			if err != nil {
				ok = false
				continue
			}
			b.configured[name] = dev
		}
		if !ok {
			inv.dropped = append(inv.dropped, b)
			continue
		}
		l.assignCapabilities(f, bn, b, path)
		inv.Boards = append(inv.Boards, b)
	}
	l.healthDefaults(f, inv.Boards)
}

// configure creates a device of driver name and decodes cfg into it,
// reporting problems at cfg's position.
func (l *Loader) configure(name string, cfg *yaml.Node, file, path string) (drivers.Device, error) {
	info, ok := drivers.Lookup(name)
	if !ok {
		err := diag.Errorf(rangeOf(file, cfg), path, "unknown driver %q", name)
		if s := suggest(name, drivers.Names()); s != "" {
			err.WithDetail("did you mean %q?", s)
		}
		l.report(err)
		return nil, err
	}
	dev := info.New()
	if cfg.Kind == yaml.MappingNode || cfg.Kind == yaml.ScalarNode && cfg.ShortTag() != "!!null" {
		k, err := decodeStrict(cfg, dev)
		if k != nil {
			d := diag.Errorf(rangeOf(file, k), path+"."+k.Value, "%s: unknown key %q", name, k.Value)
			l.report(d)
			return nil, d
		}
		if err != nil {
			at, msg := decodeErrorAt(cfg, err)
			d := diag.Errorf(rangeOf(file, at), path, "%s: %s", name, msg)
			l.report(d)
			return nil, d
		}
	}
	if sd, ok := dev.(drivers.Defaulter); ok {
		sd.SetDefaults()
	}
	if v, ok := dev.(drivers.Validator); ok {
		if err := v.Validate(); err != nil {
			var fe *drivers.FieldError
			if !errors.As(err, &fe) {
				fe = drivers.ErrField("", "%v", err)
			}
			var first *diag.Diagnostic
			for _, e := range fe.Errors() {
				n, _ := pointerToNode(cfg, fieldPointer(e.Path))
				msg := e.Message
				if e.Path != "" {
					msg = e.Path + ": " + msg
				}
				d := diag.Errorf(rangeOf(file, n), joinSub(path, e.Path), "%s: %s", name, msg)
				if e.Detail != "" {
					d.WithDetail("%s", e.Detail)
				}
				if e.Level == drivers.LevelWarning {
					d.Severity = diag.Warning
				}
				l.report(d)
				if first == nil && d.Severity.IsError() {
					first = d
				}
			}
			if first != nil {
				return nil, first
			}
		}
	}
	return dev, nil
}

// valueAtLine returns the outermost value below n (in document order) that
// starts on line, or nil. n itself is the configuration block, which may
// start on that line too.
func valueAtLine(n *yaml.Node, line int) *yaml.Node {
	n = resolveAlias(n)
	if n == nil {
		return nil
	}
	step, start := 1, 0
	if n.Kind == yaml.MappingNode {
		step, start = 2, 1
	}
	for i := start; i < len(n.Content); i += step {
		if c := resolveAlias(n.Content[i]); c != nil && c.Line == line {
			return c
		}
		if v := valueAtLine(n.Content[i], line); v != nil {
			return v
		}
	}
	return nil
}

// fieldPointer turns a driver field path ("power.on[1]") into a JSON
// pointer ("/power/on/1") for pointerToNode.
func fieldPointer(path string) string {
	var b strings.Builder
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			tok := part
			if i := strings.IndexByte(part, '['); i > 0 {
				tok, part = part[:i], part[i:]
			} else if i == 0 {
				j := strings.IndexByte(part, ']')
				if j < 0 {
					j = len(part) - 1
				}
				tok, part = part[1:j], part[j+1:]
			} else {
				part = ""
			}
			b.WriteByte('/')
			b.WriteString(url.PathEscape(strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")))
		}
	}
	return b.String()
}

// assignCapabilities decides which driver serves each capability, from
// what each configured device says it serves (drivers.Device.Capabilities).
func (l *Loader) assignCapabilities(f *fileDoc, bn *yaml.Node, b *BoardSpec, path string) {
	names := slices.Sorted(maps.Keys(b.Drivers))
	for _, name := range names {
		if err := drivers.CheckCapabilities(b.configured[name]); err != nil {
			l.report(diag.Errorf(rangeOf(f.path, b.Drivers[name]), path+".drivers."+name,
				"driver %s: %v", name, err).WithDetail("a bug in the driver: fix its Capabilities method or implement the interface"))
			return
		}
	}
	for _, c := range drivers.AllCapabilities {
		if k, v := mapGet(bn, string(c)); v != nil {
			dev, onBoard := b.configured[v.Value]
			if !onBoard || !drivers.HasCapability(dev, c) {
				l.report(diag.Errorf(rangeOf(f.path, v), path+"."+k.Value,
					"%s: %q is not a driver of this board that provides %s", c, v.Value, c).
					WithDetail("drivers of this board: %s", strings.Join(names, ", ")))
				continue
			}
			b.Serve[c] = v.Value
			continue
		}
		var providers []string
		for _, name := range names {
			if drivers.HasCapability(b.configured[name], c) {
				providers = append(providers, name)
			}
		}
		switch len(providers) {
		case 0:
		case 1:
			b.Serve[c] = providers[0]
		default:
			l.report(diag.Errorf(b.Range, path, "drivers %s all provide %s", strings.Join(providers, " and "), c).
				WithDetail("choose one with `%s: <driver>` on the board", c))
		}
	}
}

// CheckBoard reports what stops plan p from running on the boards of inv:
// a selector that matches nothing, or steps needing capabilities that no
// matching board has.
//
// A non-zero override (from the command line) replaces the plan's selector.
func (l *Loader) CheckBoard(p *Plan, inv *Inventory, override BoardSelector) []*BoardSpec {
	if p.Multi() {
		// boards: roles or shared resources: multi.go
		var out []*BoardSpec
		for _, a := range l.CheckBoards(p, inv, override) {
			out = append(out, a.Boards[0])
		}
		return out
	}
	sel := p.Board
	if !override.IsZero() {
		sel = override
	}
	matches := inv.Select(sel)
	if len(matches) == 0 {
		for _, b := range inv.dropped {
			if b.Matches(sel) {
				// The board's own error is reported; this would only echo it.
				return nil
			}
		}
		r := p.BoardRange
		if !override.IsZero() {
			r = diag.Range{Filename: "--board/--selector"}
		}
		d := diag.Errorf(r, "board", "no board in the inventory matches %s", sel)
		if sel.Name != "" {
			if s := suggest(sel.Name, inv.Names()); s != "" {
				d.WithDetail("did you mean %q?", s)
			} else {
				d.WithDetail("boards: %s", strings.Join(inv.Names(), ", "))
			}
		}
		l.report(d)
		return nil
	}
	needs := Needs(p.Steps, p.Finally)
	var able []*BoardSpec
	for _, b := range matches {
		missing := false
		for _, c := range drivers.AllCapabilities {
			if _, need := needs[c]; need && !b.Has(c) {
				missing = true
			}
		}
		if !missing {
			able = append(able, b)
		}
	}
	if len(able) == 0 {
		b := matches[0]
		for _, c := range drivers.AllCapabilities {
			if s, need := needs[c]; need && !b.Has(c) {
				what := fmt.Sprintf("board %q has no %s driver", b.Name, c)
				if len(matches) > 1 {
					what = fmt.Sprintf("none of the %d boards matching %s has a %s driver", len(matches), sel, c)
				}
				l.report(diag.Errorf(s.Range, s.Path, "step %q needs %s, but %s", s.Title(), c, what).
					WithDetail("%s serves: %s", b.Name, capList(b.Capabilities())))
			}
		}
	}
	return able
}

func capList(cs []drivers.Capability) string {
	if len(cs) == 0 {
		return "nothing"
	}
	var s []string
	for _, c := range cs {
		s = append(s, string(c))
	}
	return strings.Join(s, ", ")
}

// Board is an opened board: its devices, ready for a run.
type Board struct {
	Spec    *BoardSpec
	devices map[string]drivers.Device
	order   []string
}

// OpenBoard opens every driver of b: the devices the loader configured
// (decoded, defaulted and validated once), or, when b is opened again, new
// ones from the same configuration. On failure the devices opened so far
// are closed.
func OpenBoard(ctx context.Context, b *BoardSpec, env drivers.Env) (*Board, error) {
	ob := &Board{Spec: b, devices: map[string]drivers.Device{}}
	names := slices.Sorted(maps.Keys(b.Drivers))
	for _, name := range names {
		dev := b.configured[name]
		delete(b.configured, name)
		if dev == nil {
			var err error
			if dev, err = NewLoader(Options{}).configure(name, b.Drivers[name], b.File, "drivers."+name); err != nil {
				ob.Close()
				return nil, err
			}
		}
		e := env
		e.BaseDir = b.Dir
		e.StateDir = filepath.Join(env.StateDir, name)
		if err := mkdirAll(e.StateDir); err != nil {
			ob.Close()
			return nil, &drivers.Error{Driver: name, Op: "open", Err: err}
		}
		if err := dev.Open(ctx, e); err != nil {
			ob.Close()
			var de *drivers.Error
			if !errors.As(err, &de) {
				err = &drivers.Error{Driver: name, Op: "open", Err: err}
			}
			return nil, err
		}
		ob.devices[name] = dev
		ob.order = append(ob.order, name)
	}
	return ob, nil
}

// Close closes every device, in reverse order, and joins their errors.
func (b *Board) Close() error {
	var all error
	for i := len(b.order) - 1; i >= 0; i-- {
		if err := b.devices[b.order[i]].Close(); err != nil {
			all = appendErr(all, fmt.Errorf("%s: %w", b.order[i], err))
		}
	}
	b.order = nil
	return all
}

func (b *Board) device(c drivers.Capability) (drivers.Device, error) {
	name, ok := b.Spec.Serve[c]
	if !ok {
		return nil, diag.Infraf("board %q has no %s driver", b.Spec.Name, c)
	}
	return b.devices[name], nil
}

// Power returns the board's power device.
func (b *Board) Power() (drivers.Power, error) {
	d, err := b.device(drivers.CapPower)
	if err != nil {
		return nil, err
	}
	return d.(drivers.Power), nil
}

// ConsoleDevice returns the board's console device.
func (b *Board) ConsoleDevice() (drivers.Console, error) {
	d, err := b.device(drivers.CapConsole)
	if err != nil {
		return nil, err
	}
	return d.(drivers.Console), nil
}

// Storage returns the board's storage device.
func (b *Board) Storage() (drivers.Storage, error) {
	d, err := b.device(drivers.CapStorage)
	if err != nil {
		return nil, err
	}
	return d.(drivers.Storage), nil
}

// Network returns the board's network device.
func (b *Board) Network() (drivers.Network, error) {
	d, err := b.device(drivers.CapNetwork)
	if err != nil {
		return nil, err
	}
	return d.(drivers.Network), nil
}

// DriverNames lists the board's drivers, sorted.
func (b *BoardSpec) DriverNames() []string {
	n := slices.Sorted(maps.Keys(b.Drivers))
	sort.Strings(n)
	return n
}
