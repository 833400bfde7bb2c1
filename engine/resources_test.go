package engine_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
)

const invHead = "apiVersion: jsplan.dev/v1\nkind: Boards\n"

// TestInventoryResources checks resources are read with their capacity
// (default 1) and boards attach to them by name.
func TestInventoryResources(t *testing.T) {
	src := invHead + `resources:
  - {name: can0, kind: canbus, capacity: 4}
  - name: lab-net
    kind: ethernet
boards:
  - name: a
    resources: [can0, lab-net]
    drivers: {sim: {}}
  - name: b
    drivers: {sim: {}}
`
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	inv := &engine.Inventory{}
	l.LoadBoardsBytes("boards.yaml", []byte(src), inv)
	if ds := l.Diagnostics(); len(ds) != 0 {
		t.Fatalf("unexpected diagnostics: %v", ds)
	}
	if len(inv.Resources) != 2 {
		t.Fatalf("got %d resources, want 2", len(inv.Resources))
	}
	can := inv.Resource("can0")
	if can == nil || can.Kind != "canbus" || can.Capacity != 4 || can.File != "boards.yaml" || can.Range.Start.Line != 4 {
		t.Errorf("can0 = %+v", can)
	}
	if net := inv.Resource("lab-net"); net == nil || net.Capacity != 1 || net.Kind != "ethernet" {
		t.Errorf("lab-net = %+v, want capacity 1 by default", net)
	}
	if inv.Resource("nope") != nil {
		t.Error("Resource(nope) found something")
	}
	if got := inv.Lookup("a").Resources; !reflect.DeepEqual(got, []string{"can0", "lab-net"}) {
		t.Errorf("board a resources = %v", got)
	}
	if got := inv.Lookup("b").Resources; len(got) != 0 {
		t.Errorf("board b resources = %v, want none", got)
	}
}

// TestInventoryResourceDiagnostics checks each mistake is reported at its
// place, at once.
func TestInventoryResourceDiagnostics(t *testing.T) {
	cases := []struct {
		name   string
		src    string
		want   []string // "line:col summary-substring"
		boards int      // boards left in the inventory
		detail string
	}{
		{
			name: "unknown resource with did-you-mean",
			src: invHead + `resources:
  - {name: can0, kind: canbus}
boards:
  - name: a
    resources: [can1]
    drivers: {sim: {}}
`,
			want:   []string{`7:17 unknown resource "can1"`},
			detail: `did you mean "can0"?`,
		},
		{
			name: "unknown resource, none declared",
			src: invHead + `boards:
  - name: a
    resources: [bus]
    drivers: {sim: {}}
`,
			want:   []string{`5:17 unknown resource "bus"`},
			detail: "top-level resources",
		},
		{
			name: "duplicate resource name",
			src: invHead + `resources:
  - {name: can0, kind: canbus}
  - {name: can0, kind: canbus, capacity: 2}
boards: []
`,
			want:   []string{`5:12 duplicate resource name "can0"`},
			detail: "boards.yaml:4:5",
		},
		{
			name: "capacity zero",
			src: invHead + `resources:
  - {name: can0, kind: canbus, capacity: 0}
boards: []
`,
			want: []string{"4:42 "},
		},
		{
			name: "capacity not an integer",
			src: invHead + `resources:
  - {name: can0, kind: canbus, capacity: many}
boards: []
`,
			want: []string{"4:42 "},
		},
		{
			name: "name not a DNS label",
			src: invHead + `resources:
  - {name: CAN_0, kind: canbus}
boards: []
`,
			want: []string{"4:12 does not match"},
		},
		{
			name: "missing kind",
			src: invHead + `resources:
  - {name: can0}
boards: []
`,
			want: []string{`4:5 missing required key "kind"`},
		},
		{
			name: "unknown key in a resource",
			src: invHead + `resources:
  - {name: can0, kind: canbus, capacty: 2}
boards: []
`,
			want:   []string{`4:32 unknown key "capacty"`},
			detail: `did you mean "capacity"?`,
		},
		{
			name: "listed twice on a board",
			src: invHead + `resources:
  - {name: can0, kind: canbus}
boards:
  - name: a
    resources: [can0, can0]
    drivers: {sim: {}}
`,
			want: []string{`7:23 resource "can0" is listed twice`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
			inv := &engine.Inventory{}
			l.LoadBoardsBytes("boards.yaml", []byte(tc.src), inv)
			ds := l.Diagnostics()
			if len(ds) != len(tc.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%v", len(ds), len(tc.want), ds)
			}
			for i, w := range tc.want {
				pos, sum, _ := strings.Cut(w, " ")
				at := "boards.yaml:" + pos
				if got := ds[i].Subject.String(); got != at {
					t.Errorf("diagnostic %d at %s, want %s: %v", i, got, at, ds[i])
				}
				if !strings.Contains(ds[i].Summary, sum) {
					t.Errorf("diagnostic %d: %q does not contain %q", i, ds[i].Summary, sum)
				}
			}
			if tc.detail != "" && !strings.Contains(ds[0].Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", ds[0].Detail, tc.detail)
			}
			if len(inv.Boards) != tc.boards {
				t.Errorf("%d boards kept, want %d (a board with a bad resource is dropped)", len(inv.Boards), tc.boards)
			}
		})
	}
}
