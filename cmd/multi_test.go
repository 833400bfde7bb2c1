package cmd

// Plans on several boards, end to end on sim boards: a simulated bus
// shared by two boards, a failing branch that stops the other while every
// finally runs, two runs wanting the same boards in opposite orders, and
// five runs on a bus of capacity four.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/health"
)

// busInventory is n sim boards node-0 ... wired to one simulated bus: a
// host directory every board's shell sees at the same path (sim share:),
// declared as a resource of capacity cap.
func busInventory(bus string, n, capacity int) string {
	s := fmt.Sprintf("apiVersion: jsplan.dev/v1\nkind: Boards\nresources:\n  - {name: simbus, kind: canbus, capacity: %d}\nboards:\n", capacity)
	for i := range n {
		s += fmt.Sprintf("  - name: node-%d\n    labels: {kind: virtual, bus: b1}\n    resources: [simbus]\n    vars: {bus: %s}\n"+
			"    drivers:\n      sim: {hostname: node-%d, password: sim-password, boot-delay: 1ms, share: [%s]}\n", i, bus, i, bus)
	}
	return s
}

// busPlan has a sender and a receiver on the same bus: the sender writes a
// frame, the receiver waits for it and checks it; each branch's finally
// leaves a mark on the bus, as does each board's plan finally.
const busPlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: bus-pair
boards:
  sender:   {labels: {kind: virtual}}
  receiver: {labels: {kind: virtual}}
same: [bus]
resources: [{kind: canbus}]
params:
  frame: {default: "id=0x123"}
  expect: {default: "id=0x123 data=node-0"}
  sender-extra: {default: "true"}
timeout: 1m
steps:
  - parallel:
      - on: sender
        group:
          steps:
            - power: on
            - wait-for-login: {username: root, password: sim-password}
            - run: {env: {BUS: "${{ boards.sender.vars.bus }}", F: "${{ params.frame }} data=${{ boards.sender.name }}"}, command: 'printf "%s\n" "$F" > "$BUS/f.tmp" && mv "$BUS/f.tmp" "$BUS/frame"'}
            - name: sender extra
              timeout: 40s
              run: "${{ params.sender-extra }}"
          finally:
            - run: {env: {BUS: "${{ boards.sender.vars.bus }}"}, command: 'echo "$(hostname)" >> "$BUS/branch-finally"'}
      - on: receiver
        group:
          steps:
            - power: on
            - wait-for-login: {username: root, password: sim-password}
            - name: receive the frame
              run: {env: {BUS: "${{ boards.receiver.vars.bus }}"}, command: 'for i in $(seq 200); do [ -f "$BUS/frame" ] && break; sleep 0.05; done; cat "$BUS/frame"', expect-output: "${{ params.expect }}"}
          finally:
            - run: {env: {BUS: "${{ boards.receiver.vars.bus }}"}, command: 'echo "$(hostname)" >> "$BUS/branch-finally"'}
finally:
  - {on: sender, run: {env: {BUS: "${{ boards.sender.vars.bus }}"}, command: 'echo "$(hostname)" >> "$BUS/plan-finally"'}}
  - {on: receiver, run: {env: {BUS: "${{ boards.receiver.vars.bus }}"}, command: 'echo "$(hostname)" >> "$BUS/plan-finally"'}}
  - {on: sender, power: off}
  - {on: receiver, power: off}
`

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	l := strings.Fields(string(b))
	return sortStrings(l)
}

// TestApplyTwoBoardsShareASimulatedBus runs the pair on two sim boards: the
// frame crosses the bus, every step says its board, each board has its
// console log, and render and validate --boards show the choice.
func TestApplyTwoBoardsShareASimulatedBus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bus := filepath.Join(e.dir, "bus")
	if err := os.Mkdir(bus, 0o777); err != nil {
		t.Fatal(err)
	}
	inv := e.write("bus.yaml", busInventory(bus, 2, 4))
	planFile := e.write("pair.yaml", busPlan)

	v := e.run("validate", "--boards", inv, planFile)
	if v.code != 0 {
		t.Fatalf("validate --boards: %s", v)
	}
	r := e.run("render", "--boards", inv, planFile)
	if r.code != 0 || !strings.Contains(r.stdout, "sender:\n    name: node-0") || !strings.Contains(r.stdout, "receiver:\n    name: node-1") ||
		!strings.Contains(r.stdout, "resources:\n  - simbus") || !strings.Contains(r.stdout, "on: receiver") {
		t.Fatalf("render does not show the boards, the resource and on:\n%s", r)
	}

	a := e.run(e.applyArgs(planFile, e.art, "--boards", inv)...)
	if a.code != 0 {
		t.Fatalf("apply: %s", a)
	}
	if !strings.Contains(a.stdout, "[node-1] receive the frame") {
		t.Errorf("the console view does not say which board a step runs on:\n%s", a.stdout)
	}
	res := readReport(t, e.art)
	if len(res.Boards) != 2 || res.Boards[0] != (engine.RoleResult{Role: "sender", Board: "node-0"}) ||
		res.Boards[1] != (engine.RoleResult{Role: "receiver", Board: "node-1"}) || strings.Join(res.Resources, ",") != "simbus" {
		t.Errorf("report.json boards %+v resources %v", res.Boards, res.Resources)
	}
	for _, s := range flatten(res.Steps) {
		want := "node-0"
		if strings.HasPrefix(s.Index, "1.2") {
			want = "node-1"
		}
		if s.Board != want {
			t.Errorf("step %s %q ran on %q, want %q", s.Index, s.Name, s.Board, want)
		}
	}
	for i, board := range []string{"node-0", "node-1"} {
		clog, err := os.ReadFile(filepath.Join(e.art, "console-"+board+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(clog), board+" login:") || strings.Contains(string(clog), fmt.Sprintf("node-%d login:", 1-i)) {
			t.Errorf("console-%s.log is not that board's console:\n%s", board, clog)
		}
	}
	if _, err := os.Stat(filepath.Join(e.art, "console.log")); err == nil {
		t.Error("a run on two boards wrote a single console.log")
	}
	ju := readJUnit(t, e.art)
	if got := ju.Suites[0].Property("board.receiver"); got != "node-1" {
		t.Errorf("junit.xml board.receiver = %q", got)
	}
	xml, _ := os.ReadFile(filepath.Join(e.art, "junit.xml"))
	if !strings.Contains(string(xml), `<property name="board" value="node-1">`) {
		t.Errorf("junit.xml does not name the board of each step")
	}
	html, _ := os.ReadFile(filepath.Join(e.art, "report.html"))
	if n := strings.Count(string(html), `class="tlrow lane"`); n != 2 {
		t.Errorf("report.html has %d board lanes, want 2", n)
	}
	if got := lines(t, filepath.Join(bus, "plan-finally")); strings.Join(got, ",") != "node-0,node-1" {
		t.Errorf("plan finally ran on %v", got)
	}
	// both boards are free again
	if l := e.run("boards", "resources", "--boards", inv, "--lock-dir", e.locks, "-o", "json"); !strings.Contains(l.stdout, `"held": 0`) {
		t.Errorf("the bus is still held after the run:\n%s", l)
	}
}

// TestApplyMultiFailureStopsTheOtherBranchAndRunsEveryFinally makes the
// receiver fail while the sender is busy for long: the sender's branch is
// stopped, and both branches' and both boards' finally steps run.
func TestApplyMultiFailureStopsTheOtherBranchAndRunsEveryFinally(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bus := filepath.Join(e.dir, "bus")
	if err := os.Mkdir(bus, 0o777); err != nil {
		t.Fatal(err)
	}
	inv := e.write("bus.yaml", busInventory(bus, 2, 4))
	planFile := e.write("pair.yaml", busPlan)
	a := e.run(e.applyArgs(planFile, e.art, "--boards", inv, "--set", "expect=id=0x999", "--set", "sender-extra=sleep 30")...)
	if a.code != 1 {
		t.Fatalf("want exit 1 (a step failed), got %s", a)
	}
	res := readReport(t, e.art)
	byName := map[string]*engine.StepResult{}
	for _, s := range flatten(res.Steps) {
		byName[s.Name] = s
	}
	if s := byName["receive the frame"]; s == nil || s.Status != result.Failed {
		t.Fatalf("the receiver's check did not fail: %+v", s)
	}
	if s := byName["sender extra"]; s == nil || s.Status != result.Failed || !strings.Contains(s.Error, "stopped: parallel branch 1.2 failed") {
		t.Fatalf("the sender's long step was not stopped for the failing branch: %+v", s)
	} else if s.Seconds >= 30 {
		t.Errorf("the sender's step ran its whole 30 s (%.1fs)", s.Seconds)
	}
	if got := lines(t, filepath.Join(bus, "branch-finally")); strings.Join(got, ",") != "node-0,node-1" {
		t.Errorf("the branches' finally ran on %v, want both boards", got)
	}
	if got := lines(t, filepath.Join(bus, "plan-finally")); strings.Join(got, ",") != "node-0,node-1" {
		t.Errorf("the plan's finally ran on %v, want both boards", got)
	}
	for _, f := range res.Finally {
		if f.Status != result.Passed {
			t.Errorf("finally %s %s: %s %s", f.Index, f.Name, f.Status, f.Error)
		}
	}
}

// TestApplyMultiInterruptedRunsEveryFinally sends SIGTERM while both
// boards are busy: the run stops, every finally (both branches', both
// boards' plan finally) runs, the report says interrupted, exit 143.
func TestApplyMultiInterruptedRunsEveryFinally(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bus := filepath.Join(e.dir, "bus")
	if err := os.Mkdir(bus, 0o777); err != nil {
		t.Fatal(err)
	}
	inv := e.write("bus.yaml", busInventory(bus, 2, 4))
	planFile := e.write("pair.yaml", busPlan)
	p := e.start(e.applyArgs(planFile, e.art, "--boards", inv, "--set", "sender-extra=sleep 30")...)
	p.waitLine("the sender's long step", func(l string) bool { return strings.Contains(l, "RUN ") && strings.Contains(l, "sender extra") })
	p.waitLine("the receiver's check", func(l string) bool { return strings.HasPrefix(l, "PASS") && strings.Contains(l, "receive the frame") })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 143 {
		t.Fatalf("want exit 143 after SIGTERM, got %d\n%s%s", code, p.stdout(), p.stderrText())
	}
	rep := readReport(t, e.art)
	if rep.Status != result.Interrupted {
		t.Errorf("report status %q, want interrupted", rep.Status)
	}
	if got := lines(t, filepath.Join(bus, "branch-finally")); strings.Join(got, ",") != "node-0,node-1" {
		t.Errorf("the branches' finally ran on %v, want both boards", got)
	}
	if got := lines(t, filepath.Join(bus, "plan-finally")); strings.Join(got, ",") != "node-0,node-1" {
		t.Errorf("the plan's finally ran on %v, want both boards", got)
	}
	if l := e.run("boards", "resources", "--boards", inv, "--lock-dir", e.locks, "-o", "json"); !strings.Contains(l.stdout, `"held": 0`) {
		t.Errorf("the bus is still held after the interrupted run:\n%s", l)
	}
}

// TestApplyMultiSkipsBadBoards marks a board bad: the plan on two boards
// runs on a set without it, and records its run in both boards' health.
func TestApplyMultiSkipsBadBoards(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bus := filepath.Join(e.dir, "bus")
	if err := os.Mkdir(bus, 0o777); err != nil {
		t.Fatal(err)
	}
	inv := e.write("bus.yaml", busInventory(bus, 3, 4))
	planFile := e.write("pair.yaml", busPlan)
	store, err := health.Open(e.locks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Set("node-0", health.Bad, "test"); err != nil {
		t.Fatal(err)
	}
	a := e.run(e.applyArgs(planFile, e.art, "--boards", inv, "--set", "expect=id=0x123 data=node-1")...)
	if a.code != 0 || !strings.Contains(a.stdout, "skipping board node-0: bad") {
		t.Fatalf("want a run that skips the bad node-0: %s", a)
	}
	res := readReport(t, e.art)
	if len(res.Boards) != 2 || res.Boards[0].Board != "node-1" || res.Boards[1].Board != "node-2" {
		t.Errorf("ran on %+v, want node-1 and node-2", res.Boards)
	}
	for _, b := range []string{"node-1", "node-2"} {
		if rec, err := store.Get(b); err != nil || len(rec.History) == 0 || rec.History[len(rec.History)-1].Kind != "run" {
			t.Errorf("board %s: no run recorded in its health (%v): %+v", b, err, rec)
		}
	}
}

// oppositePlan holds boards first and second (by name) until release
// exists.
func oppositePlan(name, first, second, release string) string {
	return fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Plan
name: %s
boards:
  x: {name: %s}
  y: {name: %s}
steps:
  - {on: x, log: "holding %s and %s"}
  - local: {command: 'i=0; while [ ! -e "$R" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done', env: {R: %s}}
  - {on: y, log: done}
`, name, first, second, first, second, release)
}

// TestApplyOppositeOrdersBothFinish starts a run wanting {node-0, node-1}
// and one wanting {node-1, node-0} at the same moment: one takes both, the
// other waits holding neither, then runs; both finish.
func TestApplyOppositeOrdersBothFinish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bus := filepath.Join(e.dir, "bus")
	_ = os.Mkdir(bus, 0o777)
	inv := e.write("bus.yaml", busInventory(bus, 2, 1))
	release := filepath.Join(e.dir, "release")
	p1 := e.write("ab.yaml", oppositePlan("ab", "node-0", "node-1", release))
	p2 := e.write("ba.yaml", oppositePlan("ba", "node-1", "node-0", release))
	a := e.start(e.applyArgs(p1, filepath.Join(e.dir, "art-ab"), "--boards", inv)...)
	b := e.start(e.applyArgs(p2, filepath.Join(e.dir, "art-ba"), "--boards", inv)...)
	// one of them holds both boards: the other must be waiting for them
	first, waiting := a, b
	select {
	case <-waitFor(a, "holding node-0 and node-1"):
	case <-waitFor(b, "holding node-1 and node-0"):
		first, waiting = b, a
	case <-time.After(60 * time.Second):
		t.Fatalf("neither run started:\n%s\n%s", a.stdout(), b.stdout())
	}
	waiting.waitLine("the waiting run saying it waits", func(l string) bool { return strings.Contains(l, "is busy, held by") })
	if strings.Contains(waiting.stdout(), "holding") {
		t.Fatalf("both runs hold the boards at once:\n%s", waiting.stdout())
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := first.wait(); c != 0 {
		t.Fatalf("first run: exit %d\n%s%s", c, first.stdout(), first.stderrText())
	}
	if c := waiting.wait(); c != 0 {
		t.Fatalf("second run: exit %d\n%s%s", c, waiting.stdout(), waiting.stderrText())
	}
}

// waitFor is closed when p prints a line containing s.
func waitFor(p *proc, s string) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for {
			p.mu.Lock()
			found := strings.Contains(strings.Join(p.lines, "\n"), s)
			eof, change := p.eof, p.change
			p.mu.Unlock()
			if found {
				close(ch)
				return
			}
			if eof {
				return
			}
			<-change
		}
	}()
	return ch
}

// TestApplyCapacityFourOfFive starts five runs, each on its own board and
// each asking for a share of a bus of capacity 4: four hold it together,
// the fifth waits (holding nothing, its board free) until one ends.
func TestApplyCapacityFourOfFive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bus := filepath.Join(e.dir, "bus")
	_ = os.Mkdir(bus, 0o777)
	inv := e.write("bus.yaml", busInventory(bus, 5, 4))
	var procs []*proc
	for i := range 5 {
		release := filepath.Join(e.dir, fmt.Sprintf("release-%d", i))
		p := e.write(fmt.Sprintf("p%d.yaml", i), fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Plan
name: user-%d
board: {name: node-%d}
resources: [simbus]
steps:
  - log: on the bus
  - local: {command: 'i=0; while [ ! -e "$R" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done', env: {R: %s}}
`, i, i, release))
		procs = append(procs, e.start(e.applyArgs(p, filepath.Join(e.dir, fmt.Sprintf("art-%d", i)), "--boards", inv)...))
	}
	onBus := map[int]bool{}
	deadline := time.After(60 * time.Second)
	for len(onBus) < 4 {
		select {
		case <-deadline:
			t.Fatalf("%d runs got on the bus, want 4", len(onBus))
		case <-time.After(50 * time.Millisecond):
		}
		for i, p := range procs {
			if strings.Contains(p.stdout(), "on the bus") {
				onBus[i] = true
			}
		}
	}
	fifth := -1
	for i := range procs {
		if !onBus[i] {
			fifth = i
		}
	}
	procs[fifth].waitLine("the fifth run waiting", func(l string) bool { return strings.Contains(l, "resource simbus is busy") })
	if strings.Contains(procs[fifth].stdout(), "on the bus") {
		t.Fatal("a fifth run got on a bus of capacity 4")
	}
	l := e.run("boards", "resources", "--boards", inv, "--lock-dir", e.locks, "-o", "json")
	var rows []resourceRow
	if err := json.Unmarshal([]byte(l.stdout), &rows); err != nil || len(rows) != 1 || rows[0].Held != 4 || rows[0].Capacity != 4 {
		t.Fatalf("boards resources: %v\n%s", err, l)
	}
	list := e.run("boards", "list", "--boards", inv, "--lock-dir", e.locks)
	if !strings.Contains(list.stdout, "simbus") || !strings.Contains(list.stdout, "4/4") || !strings.Contains(list.stdout, `plan "user-`) {
		t.Errorf("boards list does not show the bus and its holders:\n%s", list)
	}
	// The waiting run holds its board only for the instant of an attempt:
	// three looks in a row never all see it busy.
	busy := 0
	for range 3 {
		l := e.run("boards", "list", "--boards", inv, "--lock-dir", e.locks)
		if strings.Contains(lineOf(l.stdout, fmt.Sprintf("node-%d ", fifth)), "busy") {
			busy++
		}
		time.Sleep(150 * time.Millisecond)
	}
	if busy == 3 {
		t.Errorf("the waiting run holds its board:\n%s", list.stdout)
	}
	// one run ends: the fifth gets its share
	var done int
	for i := range onBus {
		done = i
		break
	}
	_ = os.WriteFile(filepath.Join(e.dir, fmt.Sprintf("release-%d", done)), nil, 0o644)
	if c := procs[done].wait(); c != 0 {
		t.Fatalf("run %d: exit %d\n%s", done, c, procs[done].stdout())
	}
	procs[fifth].waitLine("the fifth run on the bus", func(l string) bool { return strings.Contains(l, "on the bus") })
	for i := range procs {
		_ = os.WriteFile(filepath.Join(e.dir, fmt.Sprintf("release-%d", i)), nil, 0o644)
	}
	for i, p := range procs {
		if c := p.wait(); c != 0 {
			t.Errorf("run %d: exit %d\n%s%s", i, c, p.stdout(), p.stderrText())
		}
	}
}

func lineOf(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestReadmeSeveralBoardsExample checks README's worked example is the
// example plan's text, so what README shows is what make demo runs.
func TestReadmeSeveralBoardsExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := os.ReadFile("../plans/examples/two-boards.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "## Several boards\n")
	if !ok {
		t.Fatal("README has no section Several boards")
	}
	_, block, _ := strings.Cut(sec, "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	if !strings.HasPrefix(block, "boards:\n") || !strings.HasSuffix(string(plan), block) {
		t.Errorf("README's example is not plans/examples/two-boards.yaml from boards: on:\n%s", block)
	}
}

// TestApplyRolesPinned: a claim's assignment per role ($JSPLAN_BOARD_<ROLE>,
// as the DRA driver sets one per request) or --role puts each role on its
// board, against the default order; a pinned board must carry its role's
// labels, and --role for a role the plan does not have is refused.
func TestApplyRolesPinned(t *testing.T) {
	e := newEnv(t)
	bus := filepath.Join(e.dir, "bus")
	if err := os.Mkdir(bus, 0o777); err != nil {
		t.Fatal(err)
	}
	inv := e.write("bus.yaml", busInventory(bus, 2, 4))
	planFile := e.write("pair.yaml", busPlan)
	t.Setenv("JSPLAN_BOARD_SENDER", "node-1")
	t.Setenv("JSPLAN_BOARD_RECEIVER", "node-0")
	a := e.run(e.applyArgs(planFile, e.art, "--boards", inv, "--set", "expect=id=0x123 data=node-1")...)
	if a.code != 0 {
		t.Fatalf("apply with roles from the environment: %s", a)
	}
	res := readReport(t, e.art)
	if len(res.Boards) != 2 || res.Boards[0] != (engine.RoleResult{Role: "sender", Board: "node-1"}) ||
		res.Boards[1] != (engine.RoleResult{Role: "receiver", Board: "node-0"}) {
		t.Fatalf("report.json boards %+v, want sender=node-1 receiver=node-0", res.Boards)
	}

	// --role wins over the environment (a fresh bus: the first run's
	// frame is still on the other).
	bus2 := filepath.Join(e.dir, "bus2")
	if err := os.Mkdir(bus2, 0o777); err != nil {
		t.Fatal(err)
	}
	inv2 := e.write("bus2.yaml", busInventory(bus2, 2, 4))
	art2 := filepath.Join(e.dir, "art2")
	a = e.run(e.applyArgs(planFile, art2, "--boards", inv2, "--role", "sender=node-0", "--role", "receiver=node-1")...)
	if a.code != 0 {
		t.Fatalf("apply --role: %s", a)
	}
	if res := readReport(t, art2); res.Boards[0].Board != "node-0" || res.Boards[1].Board != "node-1" {
		t.Fatalf("--role: boards %+v", res.Boards)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "sender=node-9"}, `no board in the inventory matches`},
		{[]string{"--role", "talker=node-0"}, `role "talker" is not the plan's: it has roles sender, receiver`},
		{[]string{"--role", "sender"}, `expected ROLE=BOARD`},
	} {
		r := e.run(append([]string{"render", planFile, "--boards", inv}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("render %v: want exit 2 with %q, got %s", tc.args, tc.want, r)
		}
	}
}
