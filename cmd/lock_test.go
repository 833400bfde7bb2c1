package cmd

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

func (e *testEnv) lockArgs(board string, cmd ...string) []string {
	return append([]string{"lock", board, "--boards", e.boards, "--lock-dir", e.locks, "--"}, cmd...)
}

// TestLockCommand: the command runs with the board locked and JSPLAN_BOARD
// set, its exit status is jsplan's, and jsplan commands inside it use the
// board at once (they inherit the lock) while others wait.
func TestLockCommand(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("boards.yaml", plugBoards)

	r := e.run(e.lockArgs("sim-1", "sh", "-c", `echo "board=$JSPLAN_BOARD"; exit 7`)...)
	if r.code != 7 || r.stdout != "board=sim-1\n" {
		t.Errorf("lock sim-1 -- sh -c 'exit 7': %v", r)
	}
	e.requireFree("sim-1")

	// jsplan inside: power and a console session (end of input) take the
	// inherited lock instead of waiting for it.
	script := jsplanBin + ` power plug-1 on --boards "$B" --lock-dir "$L" --lock-wait 1s && ` +
		jsplanBin + ` power "$JSPLAN_BOARD" status --boards "$B" --lock-dir "$L" --lock-wait 1s`
	r = e.run(e.lockArgs("plug-1", "env", "B="+e.boards, "L="+e.locks, "sh", "-c", script)...)
	if r.code != 0 || r.stdout != "plug-1: on done (power on)\non\n" {
		t.Errorf("jsplan power under jsplan lock: %v", r)
	}
	e.requireFree("plug-1")
	r = e.run(e.lockArgs("plug-1", jsplanBin, "boards", "list", "--boards", e.boards, "--lock-dir", e.locks)...)
	if r.code != 0 || !strings.Contains(r.stdout, `busy: plan "jsplan lock: `) {
		t.Errorf("boards list under jsplan lock does not show the board busy: %v", r)
	}

	// Held by lock: others wait and are told who holds the board.
	p := e.start(e.lockArgs("sim-1", "sh", "-c", "echo ready; exec sleep 60")...)
	p.waitLine("ready", func(l string) bool { return l == "ready" })
	r = e.run(e.powerArgs("sim-1", "status", "--lock-wait", "300ms")...)
	if r.code != 3 || !strings.Contains(r.stderr, `held by plan "jsplan lock: sh"`) {
		t.Errorf("power while jsplan lock holds the board: %v", r)
	}
	// SIGTERM goes to the command; jsplan exits with its status.
	start := time.Now()
	if err := syscall.Kill(p.pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 128+int(syscall.SIGTERM) {
		t.Errorf("jsplan lock after SIGTERM: exit %d, want 143\n%s", code, p.stderrText())
	}
	if time.Since(start) > 30*time.Second {
		t.Error("SIGTERM did not reach the command") // it sleeps 60 s
	}
	e.requireFree("sim-1")
}

// TestLockUsage: help, usage errors and a command that cannot run.
func TestLockUsage(t *testing.T) {
	e := newEnv(t)
	if r := e.run("lock", "--help"); r.code != 0 || !strings.Contains(r.stdout, "BOARD -- COMMAND") {
		t.Errorf("lock --help: %v", r)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"lock"}, 2, "lock needs a board and a command"},
		{e.lockArgs("sim-1"), 2, "lock needs a command to run after the board"},
		{e.lockArgs("nope", "true"), 2, `no board "nope" in the inventory`},
		{e.lockArgs("sim-1", "/nonexistent/cmd"), 127, "/nonexistent/cmd"},
		{e.lockArgs("sim-1", "jsplan-no-such-command"), 127, "executable file not found"},
	} {
		if r := e.run(tc.args...); r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: want exit %d saying %q; got %v", tc.args, tc.code, tc.want, r)
		}
	}
	e.requireFree("sim-1")
}
