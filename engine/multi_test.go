package engine_test

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
)

// multiInv has two pairs of sim boards, each pair on its own bus, and a
// CAN bus resource attached to the first pair.
const multiInv = `apiVersion: jsplan.dev/v1
kind: Boards
resources:
  - {name: can0, kind: canbus, capacity: 4}
  - {name: can1, kind: canbus}
boards:
  - {name: a1, labels: {kind: virtual, bus: one}, resources: [can0], drivers: {sim: {}}}
  - {name: b1, labels: {kind: peer, bus: two}, resources: [can1], drivers: {sim: {}}}
  - {name: a2, labels: {kind: virtual, bus: two}, resources: [can1], drivers: {sim: {}}}
  - {name: b2, labels: {kind: peer, bus: one}, resources: [can0], drivers: {sim: {}}}
`

const multiHead = head + `boards:
  dut: {labels: {kind: virtual}}
  peer: {labels: {kind: peer}}
`

// TestMultiDiagnostics checks the mistakes of plans on several boards are
// reported at file:line:col.
func TestMultiDiagnostics(t *testing.T) {
	cases := []struct {
		name, plan string
		inv        bool
		want       []string // "line:col summary-substring"
		detail     string
	}{
		{name: "on: an unknown role", plan: multiHead + "steps:\n  - log: hi\n    on: peeer\n",
			want: []string{`9:9 unknown board role "peeer"`}, detail: `did you mean "peer"?`},
		{name: "on: in a single-board plan", plan: head + "steps:\n  - log: hi\n    on: peer\n",
			want: []string{`6:9 unknown board role "peer"`}, detail: "declares no roles"},
		{name: "on: inside a group", plan: multiHead + "steps:\n  - group:\n      steps:\n        - {log: hi, on: dtu}\n",
			want: []string{`10:25 unknown board role "dtu"`}, detail: `did you mean "dut"?`},
		{name: "reference to an unknown role", plan: multiHead + "steps:\n  - log: ${{ boards.per.name }}\n",
			want: []string{`8:10 unknown board role "per"`}},
		{name: "reference to an unknown field", plan: multiHead + "steps:\n  - log: ${{ boards.peer.ip }}\n",
			want: []string{`8:10 use boards.peer.name`}},
		{name: "board: and boards: both", plan: multiHead + "board: {name: a1}\nsteps:\n  - log: hi\n",
			want: []string{`7:1 either board: (one board) or boards:`}},
		{name: "same: with one role", plan: head + "same: [bus]\nsteps:\n  - log: hi\n",
			want: []string{`4:1 same: needs a plan with two or more`}},
		{name: "resource request with name and kind", plan: head + "resources: [{name: can0, kind: canbus}]\nsteps:\n  - log: hi\n",
			want: []string{`4:13 `}},
		{name: "unknown key in a role", plan: head + "boards:\n  dut: {lables: {kind: x}}\nsteps:\n  - log: hi\n",
			want: []string{`5:9 unknown key "lables"`}},
		{name: "no board for a role", inv: true, plan: head + "boards:\n  dut: {labels: {kind: virtual}}\n  peer: {labels: {kind: nothing}}\nsteps:\n  - log: hi\n",
			want: []string{`6:3 role peer: no board in the inventory matches kind=nothing`}},
		{name: "unknown resource", inv: true, plan: multiHead + "resources: [can9]\nsteps:\n  - log: hi\n",
			want: []string{`7:13 unknown resource "can9"`}, detail: `did you mean`},
		{name: "no pair on one bus with a resource", inv: true, plan: multiHead + "same: [bus]\nresources: [{kind: lin}]\nsteps:\n  - log: hi\n",
			want: []string{`4:1 no set of distinct boards for the roles that share a value of bus with the resources asked for`}, detail: "dut: a1 (bus=one), a2 (bus=two)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"plan.yaml": tc.plan})
			l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
			p := l.LoadPlan(filepath.Join(dir, "plan.yaml"))
			if tc.inv && p != nil && !l.Diagnostics().HasErrors() {
				inv := &engine.Inventory{}
				l.LoadBoardsBytes("boards.yaml", []byte(multiInv), inv)
				l.CheckBoard(p, inv, engine.BoardSelector{})
			}
			ds := l.Diagnostics()
			if len(ds) != len(tc.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%v", len(ds), len(tc.want), ds)
			}
			for i, w := range tc.want {
				pos, sum, _ := strings.Cut(w, " ")
				at := filepath.Join(dir, "plan.yaml") + ":" + pos
				if got := ds[i].Subject.String(); got != at {
					t.Errorf("diagnostic %d at %s, want %s: %v", i, got, at, ds[i])
				}
				if !strings.Contains(ds[i].Summary, sum) {
					t.Errorf("diagnostic %d: %q does not contain %q", i, ds[i].Summary, sum)
				}
			}
			if tc.detail != "" && !strings.Contains(ds[0].Detail+ds[0].Summary, tc.detail) {
				t.Errorf("detail %q does not contain %q", ds[0].Detail, tc.detail)
			}
		})
	}
}

// TestCheckBoardsAssignments checks the ways a plan can run: distinct
// boards, a shared label value, resources by kind attached to every board.
func TestCheckBoardsAssignments(t *testing.T) {
	cases := []struct {
		extra string
		want  []string
	}{
		{"", []string{"dut=a1, peer=b1", "dut=a1, peer=b2", "dut=a2, peer=b1", "dut=a2, peer=b2"}},
		{"same: [bus]\n", []string{"dut=a1, peer=b2", "dut=a2, peer=b1"}},
		{"same: [bus]\nresources: [{kind: canbus}]\n", []string{"dut=a1, peer=b2, resource can0", "dut=a2, peer=b1, resource can1"}},
		{"resources: [can1]\n", []string{"dut=a1, peer=b1, resource can1", "dut=a1, peer=b2, resource can1", "dut=a2, peer=b1, resource can1", "dut=a2, peer=b2, resource can1"}},
	}
	for i, tc := range cases {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"plan.yaml": multiHead + tc.extra + "steps:\n  - {log: hi, on: peer}\n"})
			l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
			p := l.LoadPlan(filepath.Join(dir, "plan.yaml"))
			inv := &engine.Inventory{}
			l.LoadBoardsBytes("boards.yaml", []byte(multiInv), inv)
			as := l.CheckBoards(p, inv, engine.BoardSelector{})
			if ds := l.Diagnostics(); len(ds) > 0 {
				t.Fatal(ds)
			}
			var got []string
			for _, a := range as {
				got = append(got, a.String())
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("assignments\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestMultiReferencesResolve checks ${{ boards.ROLE.* }} resolve for a run
// and stay pending for validate.
func TestMultiReferencesResolve(t *testing.T) {
	dir := writeFiles(t, map[string]string{"plan.yaml": multiHead + "steps:\n  - log: '${{ boards.peer.name }} ${{ boards.dut.labels.bus }} ${{ boards.peer.vars.ip }} ${{ board.name }}'\n"})
	l := engine.NewLoader(engine.Options{Mode: engine.ModeRun, Board: &engine.BoardInfo{Name: "a1"},
		Roles: map[string]*engine.BoardInfo{
			"dut":  {Name: "a1", Labels: map[string]string{"bus": "one"}},
			"peer": {Name: "b2", Vars: map[string]string{"ip": "10.0.0.2"}},
		}})
	p := l.LoadPlan(filepath.Join(dir, "plan.yaml"))
	if ds := l.Diagnostics(); len(ds) > 0 {
		t.Fatal(ds)
	}
	out := string(engine.YAML(engine.Render(p, nil)))
	if !strings.Contains(out, "message: b2 one 10.0.0.2 a1") {
		t.Errorf("references not resolved:\n%s", out)
	}
	if !strings.Contains(out, "boards:\n  dut:\n") {
		t.Errorf("render lacks the roles:\n%s", out)
	}
}

// TestCheckBoardsAssignedBoard checks --board (a claim's assignment) picks
// the first role's board, which must still carry the role's labels.
func TestCheckBoardsAssignedBoard(t *testing.T) {
	dir := writeFiles(t, map[string]string{"plan.yaml": multiHead + "steps:\n  - {log: hi, on: peer}\n"})
	for _, tc := range []struct {
		board string
		want  string
	}{
		{"a2", "dut=a2, peer=b1; dut=a2, peer=b2"},
		{"b1", "role dut: no board in the inventory matches b1"},
	} {
		l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
		p := l.LoadPlan(filepath.Join(dir, "plan.yaml"))
		inv := &engine.Inventory{}
		l.LoadBoardsBytes("boards.yaml", []byte(multiInv), inv)
		var got []string
		for _, a := range l.CheckBoards(p, inv, engine.BoardSelector{Name: tc.board}) {
			got = append(got, a.String())
		}
		for _, d := range l.Diagnostics() {
			got = append(got, d.Summary)
		}
		if strings.Join(got, "; ") != tc.want {
			t.Errorf("--board %s: got %q, want %q", tc.board, strings.Join(got, "; "), tc.want)
		}
	}
}
