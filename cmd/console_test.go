package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/internal/lock"
)

// consoleWait bounds what a simulated board takes to answer on a loaded
// machine.
const consoleWait = 60 * time.Second

// consoleArgs is `console BOARD` with the test's inventory and directories.
func (e *testEnv) consoleArgs(board string, extra ...string) []string {
	return append([]string{"console", board, "--boards", e.boards, "--lock-dir", e.locks, "--state-dir", e.state,
		"--log-dir", filepath.Join(e.dir, "sessions")}, extra...)
}

// requireFree fails unless nobody holds the board's lock.
func (e *testEnv) requireFree(board string) {
	e.t.Helper()
	l, h, err := lock.TryAcquire(e.locks, board, lock.Holder{Plan: "test"})
	if err != nil || l == nil {
		e.t.Fatalf("board %s is still locked (holder %v, err %v)", board, h, err)
	}
	l.Release()
}

// sessionLogs lists the session logs written so far.
func (e *testEnv) sessionLogs() []string {
	logs, _ := filepath.Glob(filepath.Join(e.dir, "sessions", "console-*.log"))
	return logs
}

// TestConsoleSim is a person at the simulated board: attach, see the boot
// (--power-on), log in, run a command, interrupt one with Ctrl-C (which
// goes to the board), use the menu (help, power cycle and the boot again,
// status), detach; the terminal is raw while attached and as before after,
// the lock is released, and the session log has it all.
func TestConsoleSim(t *testing.T) {
	e := newEnv(t)
	p := e.startTerm(e.consoleArgs("sim-1", "--power-on")...)
	p.expect("attached to the console of sim-1", consoleWait)
	p.requireRaw()
	if h := lockHolder(t, e.locks, "sim-1"); h.Plan != "jsplan console" || h.User == "" {
		t.Errorf("lock holder = %+v, want jsplan console with a user", h)
	}
	p.expect("Linux version 6.1.0-jsplan-sim", consoleWait)
	p.expect("sim login: ", consoleWait)
	p.send("root\r")
	p.expect("Password: ", consoleWait)
	p.send("sim-password\r")
	p.expect("root@sim:~# ", consoleWait)
	p.send("echo out-$((6*7))\r")
	p.expect("out-42", consoleWait)
	p.expect("root@sim:~# ", consoleWait)

	// Ctrl-C reaches the board's shell; jsplan stays attached.
	p.send("echo slept-$((2+3)); sleep 120; echo w$((0))ke\r")
	p.expect("slept-5", consoleWait)
	time.Sleep(200 * time.Millisecond) // let sleep start
	p.send("\x03")
	p.expect("root@sim:~# ", consoleWait)
	p.send("echo still-$((1+1))\r")
	p.expect("still-2", consoleWait)
	if p.count("w0ke") > 0 {
		t.Error("Ctrl-C did not interrupt the board's sleep")
	}

	// A ~ inside a line and ~~ at the start are the board's.
	p.send("echo a~.b\r")
	p.expect("a~.b\r\n", consoleWait)
	p.send("~~ -x\r")
	p.expect("~ -x", consoleWait) // the shell echoes what it was sent: one ~

	p.send("\r~?")
	p.expect("escape sequences", consoleWait)
	p.expect("~c  power cycle", consoleWait)
	p.send("\r~c")
	p.expect("sim-1: power cycle: done", consoleWait)
	p.expect("Linux version 6.1.0-jsplan-sim", consoleWait)
	p.expect("sim login: ", consoleWait)
	p.send("\r~s")
	p.expect("sim-1: power state: on", consoleWait)
	p.requireRaw()

	p.send("\r~.")
	p.expect("detached from sim-1", consoleWait)
	if code := p.wait(consoleWait); code != 0 {
		t.Fatalf("exit status %d after detaching, want 0\n%s", code, p.tail())
	}
	p.requireSane()
	e.requireFree("sim-1")

	logs := e.sessionLogs()
	if len(logs) != 1 || !regexp.MustCompile(`/console-sim-1-\d{8}-\d{6}\.log$`).MatchString(logs[0]) {
		t.Fatalf("session logs %v, want one console-sim-1-DATE-TIME.log", logs)
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !strings.HasPrefix(log, "# jsplan console log v2: console session of ") {
		t.Errorf("session log header:\n%s", log)
	}
	for _, want := range []string{"] out-42\n", "]### power cycle (console menu)\n", "]### session ended: detached from sim-1\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("session log lacks %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "Linux version"); n != 2 {
		t.Errorf("session log has %d boots, want 2:\n%s", n, log)
	}
	if strings.Contains(log, "sim-password") {
		t.Error("the session log holds the board's password")
	}
	// Every line is timestamped as in console.log.
	for _, l := range strings.Split(strings.TrimSuffix(log, "\n"), "\n")[1:] {
		if !regexp.MustCompile(`^\[ *\d+\.\d{3}\]( |###)`).MatchString(l) {
			t.Errorf("session log line without a timestamp: %q", l)
		}
	}
}

// TestConsoleSecondWaits: a second console on the same board waits for the
// lock and says who holds it; it attaches once the first detaches. One
// that cannot wait long enough gives up with exit status 3.
func TestConsoleSecondWaits(t *testing.T) {
	e := newEnv(t)
	first := e.startTerm(e.consoleArgs("sim-1")...)
	first.expect("attached to the console of sim-1", consoleWait)

	second := e.startTerm(e.consoleArgs("sim-1", "--lock-wait", "5m")...)
	second.expect(`board sim-1 is busy, held by plan "jsplan console" (user `, consoleWait)
	second.expect("waiting (up to 5m0s)", consoleWait)

	// Ctrl-C while waiting (the terminal is not raw yet): a signal.
	third := e.startTerm(e.consoleArgs("sim-1", "--lock-wait", "5m")...)
	third.expect("is busy, held by", consoleWait)
	third.send("\x03")
	if code := third.wait(consoleWait); code != 130 {
		t.Errorf("Ctrl-C while waiting for the lock: exit %d, want 130\n%s", code, third.tail())
	}
	third.requireSane()

	r := e.run(e.consoleArgs("sim-1", "--lock-wait", "300ms")...)
	if r.code != 3 || !strings.Contains(r.stderr, `board "sim-1" is busy: held by plan "jsplan console"`) {
		t.Errorf("a console that cannot wait: %v", r)
	}

	first.send("\r~.")
	if code := first.wait(consoleWait); code != 0 {
		t.Fatalf("first console: exit %d", code)
	}
	second.expect("attached to the console of sim-1", consoleWait)
	second.requireRaw()
	second.send("\r~.")
	if code := second.wait(consoleWait); code != 0 {
		t.Fatalf("second console: exit %d\n%s", code, second.tail())
	}
	second.requireSane()
	e.requireFree("sim-1")
}

// TestConsoleSignals: SIGTERM, SIGHUP and SIGINT (sent by kill: in raw mode
// the terminal's Ctrl-C is a byte for the board) end the session with
// 128+signal, the terminal restored and the board released.
func TestConsoleSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			e := newEnv(t)
			p := e.startTerm(e.consoleArgs("sim-1", "--power-on")...)
			p.expect("sim login: ", consoleWait)
			p.requireRaw()
			p.signal(sig)
			p.expect(sig.String()+": detached from sim-1", consoleWait)
			if code := p.wait(consoleWait); code != 128+int(sig) {
				t.Errorf("exit status %d, want %d\n%s", code, 128+int(sig), p.tail())
			}
			p.requireSane()
			e.requireFree("sim-1")
		})
	}
}

// TestConsoleBoardGone: the console line dies under the session (a USB
// serial adapter unplugged): jsplan says so, exits 3 and restores the
// terminal.
func TestConsoleBoardGone(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("gone.yaml", `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    drivers:
      sim: {password: sim-password, boot-delay: 5ms, faults: {console-drop-after: 1s}}
`)
	p := e.startTerm(e.consoleArgs("sim-1", "--power-on")...)
	p.expect("attached to the console of sim-1", consoleWait)
	p.expect("the console of sim-1 ", consoleWait)
	if code := p.wait(consoleWait); code != 3 {
		t.Errorf("exit status %d when the console died, want 3\n%s", code, p.tail())
	}
	p.requireSane()
	e.requireFree("sim-1")
}

// TestConsoleEndOfInput: without a terminal (input from a file), the end
// of the input ends the session.
func TestConsoleEndOfInput(t *testing.T) {
	e := newEnv(t)
	r := e.run(e.consoleArgs("sim-1")...) // stdin is /dev/null
	if r.code != 0 || !strings.Contains(r.stderr, "end of input: detached from sim-1") {
		t.Fatalf("console with empty input: %v", r)
	}
	e.requireFree("sim-1")
}

// TestConsoleUsage: help, and the mistakes that are usage errors.
func TestConsoleUsage(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("plug.yaml", `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    drivers:
      sim: {password: sim-password}
  - name: plug-1
    drivers:
      command: {on: "true", off: "true"}
`)
	r := e.run("console", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "~.  detach") || !strings.Contains(r.stdout, "--power-on") {
		t.Errorf("console --help: %v", r)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{e.consoleArgs("nope"), `no board "nope" in the inventory (boards: plug-1, sim-1)`},
		{e.consoleArgs("plug-1"), "board plug-1 has no console driver (it serves: power)"},
		{e.consoleArgs("sim-1", "--escape", "ab"), "--escape"},
		{e.consoleArgs("sim-1", "--escape", "."), "--escape"},
		{[]string{"console"}, "console needs exactly one board"},
	} {
		r := e.run(tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: want exit 2 saying %q; got %v", tc.args, tc.want, r)
		}
	}
	if logs := e.sessionLogs(); len(logs) != 0 {
		t.Errorf("usage errors wrote session logs %v", logs)
	}
}

// TestConsoleEscapeControlChar: with --escape '^]' the escape is Ctrl-],
// recognised in the middle of a line, and a ~ at the start of a line is
// plain text.
func TestConsoleEscapeControlChar(t *testing.T) {
	e := newEnv(t)
	p := e.startTerm(e.consoleArgs("sim-1", "--power-on", "--escape", "^]")...)
	p.expect("^]. detaches", consoleWait)
	p.expect("sim login: ", consoleWait)
	p.send("~.")                // typed at the login prompt: text for the board
	p.expect("~.", consoleWait) // echoed by the board
	p.send("x\x1d\x1d")         // Ctrl-] twice sends one
	p.send("\x1d.")             // detach, mid-line
	p.expect("detached from sim-1", consoleWait)
	if code := p.wait(consoleWait); code != 0 {
		t.Fatalf("exit status %d\n%s", code, p.tail())
	}
	p.requireSane()
}

// TestEscaper checks the escape parser byte by byte.
func TestEscaper(t *testing.T) {
	for _, tc := range []struct {
		esc   string
		in    []string // separate reads
		board string
		cmds  string
	}{
		{"~", []string{"~."}, "", "."},                          // at the start of the session
		{"~", []string{"ls\r~."}, "ls\r", "."},                  // after Enter
		{"~", []string{"ls\n~?~.x"}, "ls\n", "?."},              // menu, then detach drops the rest
		{"~", []string{"a~.b"}, "a~.b", ""},                     // mid-line: text
		{"~", []string{"~~.\r"}, "~.\r", ""},                    // ~~ sends one ~
		{"~", []string{"~/bin\r"}, "~/bin\r", ""},               // not a command: passed with the ~
		{"~", []string{"\r~", "c", "x\r~", "."}, "\rx\r", "c."}, // split across reads
		{"~", []string{"~c~s"}, "", "cs"},                       // commands leave the line start
		{"~", []string{"\x03~."}, "\x03~.", ""},                 // Ctrl-C is not Enter
		{"^]", []string{"ab\x1d.c"}, "ab", "."},                 // control character: anywhere
		{"^]", []string{"\x1d\x1d~."}, "\x1d~.", ""},            // twice sends it
		{"none", []string{"~.\r~.\x1d."}, "~.\r~.\x1d.", ""},    // no escape
		{"~", []string{"\r~\r"}, "\r~\r", ""},                   // ~ then Enter
	} {
		e, err := parseEscape(tc.esc)
		if err != nil {
			t.Fatal(err)
		}
		var board bytes.Buffer
		var cmds []byte
		for _, in := range tc.in {
			e.feed([]byte(in), func(p []byte) { board.Write(p) }, func(c byte) bool {
				cmds = append(cmds, c)
				return c != '.'
			})
		}
		if board.String() != tc.board || string(cmds) != tc.cmds {
			t.Errorf("escape %q, typed %q: board got %q, commands %q; want %q, %q", tc.esc, tc.in, board.String(), cmds, tc.board, tc.cmds)
		}
	}
	for _, bad := range []string{"", "ab", "^a", ".", "\r", "é"} {
		if _, err := parseEscape(bad); err == nil {
			t.Errorf("parseEscape(%q) accepted", bad)
		}
	}
}

// TestConsoleUnderLock: a console run inside `jsplan lock` (a person's
// shell holding the board) takes the inherited lock at once; the board is
// free once both have ended.
func TestConsoleUnderLock(t *testing.T) {
	e := newEnv(t)
	args := append([]string{"lock", "sim-1", "--boards", e.boards, "--lock-dir", e.locks, "--lock-wait", "1s", "--", jsplanBin},
		e.consoleArgs("sim-1", "--lock-wait", "1s", "--power-on")...)
	p := e.startTerm(args...)
	p.expect("attached to the console of sim-1", consoleWait)
	p.expect("sim login: ", consoleWait)
	if h := lockHolder(t, e.locks, "sim-1"); h.Plan != "jsplan lock: "+jsplanBin {
		t.Errorf("lock holder %+v, want jsplan lock", h)
	}
	p.send("\r~.")
	if code := p.wait(consoleWait); code != 0 {
		t.Fatalf("exit status %d\n%s", code, p.tail())
	}
	if p.count("is busy") != 0 {
		t.Errorf("the console waited for its own jsplan lock:\n%s", p.tail())
	}
	p.requireSane()
	e.requireFree("sim-1")
}
