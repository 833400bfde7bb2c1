package cmd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/lock"
)

// Issue 11, item 9: a lock file planted as a symlink to another file is
// refused (exit 3, a clear message) and the file is not truncated.
func TestApplyRefusesSymlinkedLockFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	victim := e.write("victim", "root-owned content\n")
	if err := os.MkdirAll(e.locks, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, lock.Path(e.locks, "sim-1")); err != nil {
		t.Fatal(err)
	}
	pf := e.write("p.yaml", plan("p", "", powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 3 || !strings.Contains(r.stderr, "symlink") {
		t.Fatalf("want exit 3 naming the symlink, got %s", r)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root-owned content\n" {
		t.Fatalf("the symlink's target was changed: %q", b)
	}
}

// Issue 11, item 11: symlinks already in the artifacts directory are
// replaced, never followed: console.log, plan.rendered.yaml, report.json
// and junit.xml do not overwrite files outside it.
func TestApplyArtifactsSymlinksNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := t.TempDir()
	names := []string{"console.log", "plan.rendered.yaml", "report.json", "junit.xml"}
	os.MkdirAll(e.art, 0o755)
	for _, n := range names {
		v := filepath.Join(outside, n)
		os.WriteFile(v, []byte("precious"), 0o644)
		if err := os.Symlink(v, filepath.Join(e.art, n)); err != nil {
			t.Fatal(err)
		}
	}
	pf := e.write("p.yaml", plan("p", "  - run: echo hello\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	for _, n := range names {
		if b, _ := os.ReadFile(filepath.Join(outside, n)); string(b) != "precious" {
			t.Errorf("%s outside the artifacts was overwritten: %.60q", n, b)
		}
		fi, err := os.Lstat(filepath.Join(e.art, n))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			t.Errorf("%s in the artifacts: %v %v", n, fi, err)
		}
	}
	readReport(t, e.art)
}

// readPIDFile waits for a PID file a command writes and returns the process.
func readPIDFile(t *testing.T, p *proc, file string) procInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(file)
		if pid, err2 := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && err2 == nil && strings.HasSuffix(string(b), "\n") {
			f, comm, ok := statFields(pid)
			if !ok || len(f) < 20 {
				t.Fatalf("process %d of %s is already gone", pid, file)
			}
			return procInfo{pid: pid, start: f[19], comm: comm}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never written\nstdout:\n%s\nstderr:\n%s", file, p.stdout(), p.stderrText())
	return procInfo{}
}

// waitGone waits (bounded) until none of ps is alive and reports those that
// still are.
func waitGone(ps []procInfo) []procInfo {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []procInfo
		for _, p := range ps {
			if p.alive() {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 11, item 12: after SIGKILL of jsplan, no process it started
// survives: not a `local` command nor its background child, not the sim
// board's shell nor its background job. Each records its own PID.
func TestApplySIGKILLLeavesNoProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pids := t.TempDir()
	pf := e.write("p.yaml", plan("killed",
		"  - name: board job\n    run: sleep 1000 >/dev/null 2>&1 & echo $! > "+pids+"/board.pid\n"+
			"  - name: host job\n    local:\n      command: 'sleep 1002 & echo $! > \"$D/local-bg.pid\"; echo $$ > \"$D/local.pid\"; exec sleep 1001'\n"+
			"      env: {D: "+pids+"}\n",
		powerOff))
	// the board writes its job's PID where the test reads it
	boards := e.write("share.yaml", strings.Replace(testBoards, "boot-delay: 5ms", "boot-delay: 5ms, share: ["+pids+"]", 1))
	p := e.start(e.applyArgs(pf, e.art, "--boards", boards)...)
	p.waitRun("host job")
	var ps []procInfo
	for _, f := range []string{"board.pid", "local-bg.pid", "local.pid"} {
		ps = append(ps, readPIDFile(t, p, filepath.Join(pids, f)))
	}
	all := append(descendants(p.pid()), ps...)
	killLater(t, all)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait()
	if left := waitGone(all); len(left) > 0 {
		t.Fatalf("processes outlived a SIGKILLed jsplan: %+v", left)
	}
	// The board is free and usable at once.
	pf2 := e.write("p2.yaml", plan("after", "  - run: echo ok\n", powerOff))
	if r := e.run(e.applyArgs(pf2, t.TempDir())...); r.code != 0 {
		t.Fatalf("the next run: %s", r)
	}
}

// Issue 11, item 13: a `local` command that leaves a background child
// holding its output ends when the command ends; the child is killed.
func TestApplyLocalBackgroundChildDoesNotHang(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pids := t.TempDir()
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: bg\nsteps:\n"+
		"  - name: leaves a child\n    timeout: 60s\n    local:\n      command: 'sleep 1000 & echo $! > \"$D/bg.pid\"; echo started'\n"+
		"      env: {D: "+pids+"}\n"+
		"  - log: after\n")
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	b, _ := os.ReadFile(filepath.Join(pids, "bg.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if f, _, ok := statFields(pid); ok && f[0] != "Z" {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the background child %d outlived its step", pid)
	}
}

// Issue 11, item 18: a console expect longer than the 4 KiB rescan overlap,
// arriving in pieces, is found; fail-on the same.
func TestApplyLongConsoleMatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	job := `(sleep 0.3; echo START; for i in $(seq 1 50); do printf '%0100d\n' $i; sleep 0.01; done; echo END) &`
	pf := e.write("p.yaml", plan("long",
		"  - run: \""+job+"\"\n"+
			"  - name: long match\n    timeout: 30s\n    console: {expect: '(?s)START.*END'}\n", powerOff))
	if r := e.run(e.applyArgs(pf, e.art)...); r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	pf = e.write("f.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: f\nfail-on: ['(?s)START.*END']\nsteps:\n"+
		"  - power: on\n  - wait-for-login: {username: root, password: sim-password}\n"+
		"  - run: \""+job+"\"\n  - name: waits\n    sleep: 60s\nfinally:\n"+powerOff)
	r := e.run(e.applyArgs(pf, t.TempDir())...)
	if r.code != 1 || !strings.Contains(r.stdout, "fail-on") {
		t.Fatalf("want exit 1 by fail-on, got %s", r)
	}
}

// Issue 11, item 20: console.log is capped (--console-log-max): the middle
// of a chatty run is cut, with a marker, and the end of the run kept.
func TestApplyConsoleLogCapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("chatty",
		"  - run: \"seq 1 200000\"\n  - run: echo LAST-LINE\n", powerOff))
	if r := e.run(e.applyArgs(pf, e.art, "--console-log-max", "100000")...); r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	b, err := os.ReadFile(filepath.Join(e.art, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if len(b) > 100000 || !strings.HasPrefix(s, "# jsplan console log") || !strings.Contains(s, "bytes cut here") ||
		!strings.Contains(s, "LAST-LINE") || !strings.Contains(s, "### step f.1") {
		t.Fatalf("console.log (%d bytes) not capped as documented:\n%.400s", len(b), s)
	}
}

// Issue 11, item 17: `exit` in a run command ends the login shell: the step
// fails at once saying so (not after its timeout), later run steps fail
// without typing into the login prompt, and wait-for-login recovers.
func TestApplyRunEndsLoginShell(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("exit",
		"  - name: ends the shell\n    timeout: 5m\n    continue-on-error: true\n    run: exit\n"+
			"  - name: after\n    timeout: 5m\n    continue-on-error: true\n    run: echo typed-after\n"+
			"  - wait-for-login: {username: root, password: sim-password}\n"+
			"  - run: {command: 'echo back-$((40+2))', expect-output: back-42}\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 0 {
		t.Fatalf("want exit 0 (failures ignored), got %s", r)
	}
	rep := readReport(t, e.art)
	if s := rep.Steps[2]; s.Status != result.Failed || !strings.Contains(s.Error, "login prompt") || s.Seconds > 60 {
		t.Errorf("the step that ran exit: %s %.1fs %q", s.Status, s.Seconds, s.Error)
	}
	if s := rep.Steps[3]; s.Status != result.Failed || !strings.Contains(s.Error, "shell is gone") {
		t.Errorf("the next run step: %s %q", s.Status, s.Error)
	}
	clog, _ := os.ReadFile(filepath.Join(e.art, "console.log"))
	if strings.Contains(string(clog), "typed-after") {
		t.Errorf("a command was typed into the login prompt:\n%s", clog)
	}
}

// Issue 11, item 20: the Ctrl-C probe that stops a timed-out command fits
// in the step's timeout (it used to add up to 5 s).
func TestApplyRunTimeoutNotOverrun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("overrun",
		"  - name: ignores ctrl-c\n    timeout: 4s\n    run: sh -c \"trap '' INT; sleep 30\"\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 1 {
		t.Fatalf("want exit 1, got %s", r)
	}
	s := readReport(t, e.art).Steps[2]
	if !strings.Contains(s.Error, "timed out after 4s") || s.Seconds > 4.9 {
		t.Fatalf("step: %.2fs %q", s.Seconds, s.Error)
	}
}
