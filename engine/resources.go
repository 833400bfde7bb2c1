package engine

// Shared resources of an inventory: a CAN bus, a network segment, a
// harness that several boards are wired to and several runs may use at
// once, up to the resource's capacity.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
)

// ResourceSpec is a shared resource as the inventory declares it
// (top-level `resources:` of a Boards document).
type ResourceSpec struct {
	// Name is unique in the inventory and DNS-label-like (can0, lab-net).
	Name string
	// Kind says what it is (canbus, ethernet, ...); free text.
	Kind string
	// Capacity is how many runs may hold the resource at once (>= 1,
	// default 1).
	Capacity int
	// File and Range locate the declaration in its inventory.
	File  string
	Range diag.Range
}

// ResourceNamePattern is what a resource name must match: a DNS label
// (lower-case letters, digits and dashes, at most 63), so it can name a
// Kubernetes device as it is.
const ResourceNamePattern = `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`

var resourceNameRE = regexp.MustCompile(ResourceNamePattern)

// Resource finds a declared resource by name, or nil.
func (inv *Inventory) Resource(name string) *ResourceSpec {
	for _, r := range inv.Resources {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// ResourceNames lists the declared resources' names, in inventory order.
func (inv *Inventory) ResourceNames() []string {
	var out []string
	for _, r := range inv.Resources {
		out = append(out, r.Name)
	}
	return out
}

// resourcesFrom reads the top-level `resources:` of a Boards document.
// Names are unique across every document of the inventory.
func (l *Loader) resourcesFrom(f *fileDoc, inv *Inventory) {
	_, list := mapGet(f.root, "resources")
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	for i, rn := range list.Content {
		path := fmt.Sprintf("resources[%d]", i)
		if rn.Kind != yaml.MappingNode || f.isBad(fmt.Sprintf("/resources/%d", i)) {
			continue
		}
		r := &ResourceSpec{Capacity: 1, File: f.path, Range: rangeOf(f.path, rn)}
		_, nn := mapGet(rn, "name")
		if nn == nil || nn.Kind != yaml.ScalarNode {
			continue
		}
		r.Name = nn.Value
		if !resourceNameRE.MatchString(r.Name) {
			// The schema says so too; this covers inventories built in memory.
			l.report(diag.Errorf(rangeOf(f.path, nn), path+".name",
				"resource name %q is not a DNS label", r.Name).
				WithDetail("use lower-case letters, digits and dashes, e.g. can0 or lab-net"))
			continue
		}
		if _, kn := mapGet(rn, "kind"); kn != nil && kn.Kind == yaml.ScalarNode {
			r.Kind = kn.Value
		}
		if _, cn := mapGet(rn, "capacity"); cn != nil {
			n, err := strconv.Atoi(cn.Value)
			if cn.Kind != yaml.ScalarNode || err != nil || n < 1 {
				l.report(diag.Errorf(rangeOf(f.path, cn), path+".capacity",
					"capacity must be an integer of at least 1, got %q", cn.Value))
				continue
			}
			r.Capacity = n
		}
		if prev := inv.Resource(r.Name); prev != nil {
			l.report(diag.Errorf(rangeOf(f.path, nn), path+".name", "duplicate resource name %q", r.Name).
				WithDetail("first defined at %s", prev.Range))
			continue
		}
		inv.Resources = append(inv.Resources, r)
	}
}

// boardResources reads a board's `resources: [name, ...]`; every name must
// be declared (in this document or one loaded before). It reports whether
// all were.
func (l *Loader) boardResources(f *fileDoc, bn *yaml.Node, b *BoardSpec, inv *Inventory, path string) bool {
	_, list := mapGet(bn, "resources")
	if list == nil || list.Kind != yaml.SequenceNode {
		return true
	}
	ok := true
	seen := map[string]bool{}
	for i, n := range list.Content {
		if n.Kind != yaml.ScalarNode {
			continue
		}
		at := fmt.Sprintf("%s.resources[%d]", path, i)
		switch {
		case seen[n.Value]:
			l.report(diag.Errorf(rangeOf(f.path, n), at, "resource %q is listed twice", n.Value))
			ok = false
		case inv.Resource(n.Value) == nil:
			d := diag.Errorf(rangeOf(f.path, n), at, "unknown resource %q", n.Value)
			if s := suggest(n.Value, inv.ResourceNames()); s != "" {
				d.WithDetail("did you mean %q?", s)
			} else if names := inv.ResourceNames(); len(names) > 0 {
				d.WithDetail("resources: %s", strings.Join(names, ", "))
			} else {
				d.WithDetail("declare it under the inventory's top-level resources:")
			}
			l.report(d)
			ok = false
		default:
			b.Resources = append(b.Resources, n.Value)
		}
		seen[n.Value] = true
	}
	return ok
}
