package drivers

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/schema"
)

// InventorySnippet renders devices found by the drivers' Discover hooks as
// a Boards inventory (YAML), one board per device, each named after its
// driver and ID and commented with the device's description. It is a
// starting point: a person merges the entries that belong to one physical
// board (a harness and its console adapter) and adds labels and vars.
// The output is sorted by driver and ID, so it is stable across runs.
func InventorySnippet(found []Found) []byte {
	fs := append([]Found(nil), found...)
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Driver != fs[j].Driver {
			return fs[i].Driver < fs[j].Driver
		}
		return fs[i].ID < fs[j].ID
	})

	boards := &yaml.Node{Kind: yaml.SequenceNode}
	used := map[string]bool{}
	for _, f := range fs {
		name := uniqueName(boardName(f), used)
		cfg := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range slices.Sorted(maps.Keys(f.Config)) {
			v := &yaml.Node{}
			if err := v.Encode(f.Config[k]); err != nil {
				v = scalar(fmt.Sprint(f.Config[k]))
			}
			cfg.Content = append(cfg.Content, scalar(k), v)
		}
		if len(cfg.Content) == 0 {
			cfg.Style = yaml.FlowStyle
		}
		board := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			scalar("name"), scalar(name),
			scalar("drivers"), {Kind: yaml.MappingNode, Content: []*yaml.Node{scalar(f.Driver), cfg}},
		}}
		if d := oneLine(f.Description); d != "" {
			board.HeadComment = d
		}
		boards.Content = append(boards.Content, board)
	}
	if len(boards.Content) == 0 {
		boards.Style = yaml.FlowStyle
	}
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		scalar("apiVersion"), scalar(schema.APIVersion),
		scalar("kind"), scalar("Boards"),
		scalar("boards"), boards,
	}}
	if len(fs) == 0 {
		doc.HeadComment = "No devices found on this host."
	} else {
		doc.HeadComment = "Devices found on this host, one board each. Merge the drivers of one\nphysical board into one entry, rename it, and add labels and vars."
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
		// Only plain strings and nodes go in: an error is a bug.
		panic("drivers: InventorySnippet: " + err.Error())
	}
	enc.Close()
	return buf.Bytes()
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// boardName makes a lower-case name of letters, digits and dashes from a
// device's driver and ID, at most 63 characters.
func boardName(f Found) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(f.Driver + "-" + f.ID) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	if name == "" {
		name = "board"
	}
	return name
}

func uniqueName(name string, used map[string]bool) string {
	n := name
	for i := 2; used[n]; i++ {
		suffix := fmt.Sprintf("-%d", i)
		base := name
		if len(base)+len(suffix) > 63 {
			base = base[:63-len(suffix)]
		}
		n = base + suffix
	}
	used[n] = true
	return n
}
