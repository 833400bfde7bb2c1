package cmd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 22, item 16: a parameter cannot choose the code that runs on the
// host. A used plan or a playbook named through references must be a file
// inside the plan's directory; from elsewhere it is refused (exit 2) by
// render and apply (and validate, given the values), before anything runs.
func TestParamCannotChooseHostCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := t.TempDir()
	evilMark := filepath.Join(outside, "EVIL-RAN")
	evil := filepath.Join(outside, "evil.yaml")
	if err := os.WriteFile(evil, []byte("apiVersion: jsplan.dev/v1\nkind: Plan\nname: evil\nsteps:\n  - local: {command: 'touch \"$M\"', env: {M: "+evilMark+"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	libMark := filepath.Join(outside, "LIB-RAN")
	lib := e.write("plans/lib.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: lib\nsteps:\n  - local: {command: 'touch \"$M\"', env: {M: "+libMark+"}}\n")
	pf := e.write("plans/p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nparams:\n  p: {type: path, required: true}\nsteps:\n  - use: {plan: \"${{ params.p }}\"}\n")
	// Through a symlink inside the plan's directory: still outside.
	link := filepath.Join(filepath.Dir(pf), "link.yaml")
	if err := os.Symlink(evil, link); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{evil, link} {
		for _, cmd := range [][]string{{"render", pf, "--set", "p=" + bad},
			e.applyArgs(pf, e.art, "--set", "p="+bad)} {
			r := e.run(cmd...)
			if r.code != 2 || !strings.Contains(r.stderr, "a parameter cannot choose the code that runs on the host") {
				t.Errorf("%s with p=%s: want exit 2 and why, got %s", cmd[0], bad, r)
			}
		}
	}
	if _, err := os.Stat(evilMark); err == nil {
		t.Fatalf("the plan a parameter named ran")
	}
	// A plan inside the plan's directory may be chosen.
	if r := e.run(e.applyArgs(pf, e.art, "--set", "p="+lib)...); r.code != 0 {
		t.Fatalf("apply with p=%s: %s", lib, r)
	}
	if _, err := os.Stat(libMark); err != nil {
		t.Errorf("the library plan did not run")
	}

	// The shipped checks-over-ssh.yaml: its playbook parameter is such a
	// value.
	shipped, err := filepath.Abs("../plans/lib/checks-over-ssh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	evilBook := filepath.Join(outside, "evil.yml")
	os.WriteFile(evilBook, []byte("- hosts: localhost\n  tasks: [{command: touch "+evilMark+"}]\n"), 0o644)
	e.write("plans/site.yml", "- hosts: all\n  tasks: []\n")
	pb := e.write("plans/pb.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: pb\nparams:\n  book: {type: path, required: true}\nsteps:\n  - use: {plan: "+shipped+", with: {playbook: \"${{ params.book }}\"}}\n")
	r := e.run("render", pb, "--set", "book="+evilBook)
	if r.code != 2 || !strings.Contains(r.stderr, "a parameter cannot choose the code that runs on the host") {
		t.Errorf("render with book=%s: want exit 2, got %s", evilBook, r)
	}
	// (sim-1 has no network for ansible: that is the only complaint)
	if r := e.run("render", pb, "--set", "book="+filepath.Join(filepath.Dir(pb), "site.yml")); strings.Contains(r.stderr, "cannot choose") || !strings.Contains(r.stderr, "no network driver") {
		t.Errorf("render with a playbook in the plan's directory: %s", r)
	}
	// Written in the plan, a path may lead anywhere: the author chose it.
	pw := e.write("plans/pw.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: pw\nsteps:\n  - use: {plan: "+evil+"}\n")
	if r := e.run("validate", pw); r.code != 0 {
		t.Errorf("validate of a plan naming a used plan itself: %s", r)
	}
}

// Issue 22, item 13: jsplan lock exits 3 when the board is busy past
// --lock-wait or the lock is unsafe, as apply and power do.
func TestLockBusyOrUnsafeExits3(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.start(e.lockArgs("sim-1", "sh", "-c", "echo ready; exec sleep 60")...)
	p.waitLine("ready", func(l string) bool { return l == "ready" })
	r := e.run("lock", "sim-1", "--boards", e.boards, "--lock-dir", e.locks, "--lock-wait", "300ms", "--", "true")
	if r.code != 3 || !strings.Contains(r.stderr, "busy") {
		t.Errorf("lock of a busy board: want exit 3, got %s", r)
	}
	syscall.Kill(p.pid(), syscall.SIGTERM)
	p.wait()
	unsafe := filepath.Join(e.dir, "unsafe-locks")
	os.Mkdir(unsafe, 0o700)
	os.Chmod(unsafe, 0o777) // writable by all, no sticky bit
	r = e.run("lock", "sim-1", "--boards", e.boards, "--lock-dir", unsafe, "--", "true")
	if r.code != 3 || !strings.Contains(r.stderr, "sticky") {
		t.Errorf("lock in an unsafe directory: want exit 3, got %s", r)
	}
}

// Issue 22, item 12: the lock's descriptor is not inherited by what a run
// starts (a local step, and what it leaves behind), so nothing but jsplan
// holds the board.
func TestLockNotInheritedByChildren(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := filepath.Join(e.dir, "fds")
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nsteps:\n"+
		"  - local: {command: 'ls -l /proc/self/fd/ > \"$OUT\" 2>&1', env: {OUT: "+out+"}}\n")
	if r := e.run(e.applyArgs(pf, e.art)...); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), ".lock") || !strings.Contains(string(b), "fds") {
		t.Errorf("a local step's process holds the lock's descriptor:\n%s", b)
	}
	// Inside jsplan lock, which passes its descriptor to the command on
	// purpose: apply holds it, what apply runs does not.
	os.Remove(out)
	r := e.run(e.lockArgs("sim-1", append([]string{jsplanBin}, e.applyArgs(pf, filepath.Join(e.dir, "art2"), "--lock-wait", "1s")...)...)...)
	if r.code != 0 {
		t.Fatalf("apply inside jsplan lock: %s", r)
	}
	if b, err := os.ReadFile(out); err != nil || strings.Contains(string(b), ".lock") {
		t.Errorf("inside jsplan lock, a local step's process holds the lock's descriptor (%v):\n%s", err, b)
	}
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// readPids waits for the file of PIDs a step writes and reads them.
func readPids(t *testing.T, path string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		f := strings.Fields(string(b))
		if len(f) >= n {
			var out []int
			for _, s := range f[:n] {
				p, err := strconv.Atoi(s)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, p)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d pids in %s: %q", n, path, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func requireDead(t *testing.T, what string, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(p) {
			syscall.Kill(p, syscall.SIGKILL)
			t.Errorf("%s: process %d outlived the run", what, p)
		}
	}
}

// escapeScript starts two sleeps that leave the command's process group:
// one in a group of its own (setpgid), one in a session of its own.
const escapeScript = `python3 -c "import os; os.setpgid(0, 0); os.execvp('sleep', ['sleep', '300'])" & echo $! >> "$PIDS"; ` +
	`setsid sleep 301 & sleep 0.2; pgrep -n -f "sleep 301" >> "$PIDS"`

// Issue 22, item 11: a child that moves to its own process group or
// session does not outlive the step, nor jsplan killed by SIGKILL.
func TestChildrenThatLeaveTheirGroupAreContained(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pids := filepath.Join(e.dir, "pids")
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nsteps:\n"+
		"  - local: {command: '"+strings.ReplaceAll(escapeScript, "'", "''")+"', env: {PIDS: "+pids+"}}\n"+
		"  - local: {command: 'sleep 0.5'}\n")
	if r := e.run(e.applyArgs(pf, e.art)...); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	requireDead(t, "after a local step", readPids(t, pids, 2))

	// jsplan killed by SIGKILL while the escaped children run.
	pids2 := filepath.Join(e.dir, "pids2")
	pf2 := e.write("p2.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p2\nsteps:\n"+
		"  - local: {command: '"+strings.ReplaceAll(escapeScript, "'", "''")+"; sleep 300', env: {PIDS: "+pids2+"}}\n")
	p := e.start(e.applyArgs(pf2, filepath.Join(e.dir, "art2"))...)
	got := readPids(t, pids2, 2)
	syscall.Kill(p.pid(), syscall.SIGKILL)
	p.wait()
	requireDead(t, "after SIGKILL of jsplan", got)

	// jsplan lock: what the command leaves running (holding the lock's
	// descriptor) ends with it, and the board is free.
	pids3 := filepath.Join(e.dir, "pids3")
	r := e.run(e.lockArgs("sim-1", "env", "PIDS="+pids3, "sh", "-c", escapeScript)...)
	if r.code != 0 {
		t.Fatalf("lock: %s", r)
	}
	requireDead(t, "after jsplan lock", readPids(t, pids3, 2))
	e.requireFree("sim-1")
}

// Issue 22, item 7: a secret that reaches a used plan through `with:` and
// fails its type check is not shown, in validate, render or apply.
func TestSecretThroughWithNotShown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write("lib.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: lib\nparams:\n  n: {type: integer, required: true}\nsteps:\n  - log: hello\n")
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nparams:\n  pw: {type: string, secret: true, default: Sup3rS3cretVal}\n"+
		"steps:\n  - use: {plan: lib.yaml, with: {n: \"${{ params.pw }}\"}}\n  - use: {plan: lib.yaml, with: {n: \"x-${{ params.pw }}\"}}\n")
	for _, args := range [][]string{{"validate", pf}, {"render", pf}, e.applyArgs(pf, e.art)} {
		r := e.run(args...)
		if r.code != 2 || !strings.Contains(r.stderr, "is not an integer") {
			t.Errorf("%s: want exit 2 and the type error, got %s", args[0], r)
		}
		if strings.Contains(r.stdout+r.stderr, "Sup3rS3cret") {
			t.Errorf("%s shows the secret:\n%s", args[0], r)
		}
	}
}

// Issue 22, item 8: a secret of white space is refused (exit 2): masking
// it would rewrite every line's spaces.
func TestWhitespaceSecretRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nparams:\n  pw: {type: string, secret: true}\nsteps:\n  - log: hello\n")
	for _, v := range []string{"    ", "\t\t\t\t\t", "  x  "} {
		r := e.run("render", pf, "--set", "pw="+v)
		if r.code != 2 || !strings.Contains(r.stderr, "shorter than 4 characters") {
			t.Errorf("pw=%q: want exit 2, got %s", v, r)
		}
	}
}

// Issue 22, item 9: a secret in collect's paths is refused when the plan
// is validated: typed on the board's shell, it could not be masked.
func TestSecretInCollectPathsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nparams:\n  pw: {type: string, secret: true, default: Sup3rS3cretVal}\n"+
		"steps:\n  - collect: {paths: [\"/tmp/${{ params.pw }}.log\"]}\n  - collect: \"/tmp/${{ params.pw }}\"\n")
	r := e.run("validate", pf)
	if r.code != 2 || strings.Count(r.stderr, "params.pw is a secret") != 2 || !strings.Contains(r.stderr, "do not name files after secrets") {
		t.Errorf("validate: want exit 2 and two errors, got %s", r)
	}
	if strings.Contains(r.stdout+r.stderr, "Sup3rS3cret") {
		t.Errorf("validate shows the secret:\n%s", r)
	}
}

// Issue 22, item 14: what any local user can write in a lock file's
// holder record, and what a local command prints, reaches the terminal
// with its control characters escaped.
func TestNoEscapesReachTheTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.start(e.lockArgs("sim-1", "sh", "-c", "echo ready; exec sleep 60")...)
	p.waitLine("ready", func(l string) bool { return l == "ready" })
	hostile := `{"board":"sim-1","plan":"x\u001b]52;c;ZXZpbA==\u0007","pid":1,"host":"h\u001b[2J\u001b]0;owned\u0007","user":"u\u009b6n","since":"2026-01-01T00:00:00Z"}` + "\n"
	if err := os.WriteFile(filepath.Join(e.locks, "sim-1.lock"), []byte(hostile), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		e.powerArgs("sim-1", "status", "--lock-wait", "300ms"),
		{"lock", "sim-1", "--boards", e.boards, "--lock-dir", e.locks, "--lock-wait", "300ms", "--", "true"},
		e.applyArgs(e.write("p.yaml", plan("p", "", "")), e.art, "--lock-wait", "300ms"),
		{"boards", "list", "--boards", e.boards, "--lock-dir", e.locks},
	} {
		r := e.run(args...)
		if !strings.Contains(r.stdout+r.stderr, `\x1b`) {
			t.Errorf("%s: the holder is not shown escaped: %s", args[0], r)
		}
		if strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07\u009b") {
			t.Errorf("%s: an escape reaches the terminal: %q", args[0], r.stdout+r.stderr)
		}
	}
	syscall.Kill(p.pid(), syscall.SIGTERM)
	p.wait()

	pf := e.write("local.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: l\nsteps:\n"+
		`  - local: {command: 'printf "\033]52;c;ZXZpbA==\007\033[2J\033[6nvisible\ttext\n"'}`+"\n")
	r := e.run(e.applyArgs(pf, filepath.Join(e.dir, "art-local"))...)
	if r.code != 0 || !strings.Contains(r.stdout, "visible\ttext") || strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07") {
		t.Errorf("local output on apply's terminal: %q", r.stdout+r.stderr)
	}
}

// Issue 22, item 14: jsplan console leaves out what acts beyond the
// screen (clipboard, title, queries the terminal answers), however the
// board's output is cut into reads, and passes colours and cursor moves.
func TestConsoleEscapeFilter(t *testing.T) {
	in := "a\x1b[1;31mred\x1b[0m\x1b]52;c;ZXZpbA==\x07b\x1b]0;title\x1b\\c\x1b[6n\x1b[c\x1b[>q\x1b[2J\x1b[H" +
		"\x1bP$qm\x1b\\d\x1b[18t\x1b[?2$pe\x1b7f\x1b[1 qg\x1b[12\x1b[6nh"
	want := "a\x1b[1;31mred\x1b[0mbc\x1b[2J\x1b[Hde\x1b7fgh"
	for _, size := range []int{1, 2, 3, 7, len(in)} {
		var b strings.Builder
		f := &escFilter{w: &b}
		for i := 0; i < len(in); i += size {
			f.Write([]byte(in[i:min(i+size, len(in))]))
		}
		if b.String() != want {
			t.Errorf("reads of %d bytes: %q, want %q", size, b.String(), want)
		}
	}
}

// Issue 22, item 18: a local output line over 1 MiB is logged (in pieces)
// and what follows it too.
func TestLocalLongLineLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nsteps:\n"+
		"  - local: {command: 'head -c 1500000 /dev/zero | tr \"\\0\" x; echo END-OF-LONG; echo AFTER-LONG-LINE'}\n")
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 0 || !strings.Contains(r.stdout, "AFTER-LONG-LINE") || !strings.Contains(r.stdout, "xxxEND-OF-LONG") {
		t.Fatalf("apply: exit %d, stdout has the line after: %v, the long line's end: %v", r.code,
			strings.Contains(r.stdout, "AFTER-LONG-LINE"), strings.Contains(r.stdout, "xxxEND-OF-LONG"))
	}
	if n := strings.Count(r.stdout, "x"); n < 1500000 {
		t.Errorf("%d of the long line's 1500000 bytes logged", n)
	}
	if rep := readReport(t, e.art); !strings.Contains(rep.Steps[0].Output, "AFTER-LONG-LINE") {
		t.Errorf("the step's output lacks the line after the long one: %q", rep.Steps[0].Output)
	}
}

// Issue 22, item 15: a run command that replaces the login shell (exec sh)
// is refused when the plan is validated, instead of waiting out the step's
// timeout; exec with redirections only is fine.
func TestRunExecRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("p", "  - run: exec sh\n  - run: {command: \"cd /tmp\\nexec bash -l\"}\n  - run: exec >/dev/null 2>&1\n", ""))
	start := time.Now()
	r := e.run(e.applyArgs(pf, e.art, "--lock-wait", "1s")...)
	if r.code != 2 || strings.Count(r.stderr, "replaces the board's login shell") != 2 || time.Since(start) > 20*time.Second {
		t.Errorf("apply: want exit 2 and two errors at once, got %s after %s", r, time.Since(start))
	}
	if r := e.run("validate", pf); r.code != 2 || !strings.Contains(r.stdout+r.stderr, "p.yaml:9:10:") {
		t.Errorf("validate: %s", r)
	}
}

// Issue 22, item 16: a path chosen through plan.dir is the plan's own
// choice, even outside its directory.
func TestPlanDirMayChooseHostCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write("shared/lib.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: lib\nsteps:\n  - log: from the shared library\n")
	pf := e.write("plans/p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\nsteps:\n  - use: {plan: \"${{ plan.dir }}/../shared/lib.yaml\"}\n")
	if r := e.run("render", pf); r.code != 0 {
		t.Errorf("render: %s", r)
	}
}
