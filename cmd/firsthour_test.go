package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/internal/lock"
)

// A sha256 that is not 64 hex digits is a plan error (exit 2) found before
// the run, whether written in the plan or passed to a parameter.
func TestApplyMalformedSHA256IsAPlanError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.write("demo.img", "an image\n")
	smoke, err := filepath.Abs("../plans/examples/virtual-smoke.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := e.run(e.applyArgs(smoke, e.art, "--set", "image="+img, "--set", "sha256=abc123")...)
	if r.code != 2 || !strings.Contains(r.stderr, `sha256 "abc123" is not 64 hex digits`) {
		t.Errorf("apply with --set sha256=abc123: %s", r)
	}
	if _, err := os.Stat(filepath.Join(e.art, "console.log")); err == nil {
		t.Errorf("the run started (console.log written) before the plan error")
	}
	plan := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: p\n"+
		"params:\n  sum: {type: string, default: not-a-checksum}\nsteps:\n  - flash: {image: demo.img, sha256: \"${{ params.sum }}\"}\n")
	if r := e.run("validate", plan); r.code != 2 || !strings.Contains(r.stderr, `sha256 "not-a-checksum" is not 64 hex digits`) {
		t.Errorf("validate, a bad default: %s", r)
	}
	// a good one, and an empty one (no check), still run
	if r := e.run("validate", "--boards", e.boards, smoke); r.code != 0 {
		t.Errorf("validate virtual-smoke: %s", r)
	}
}

// boards list --check has a health column and exits 1 when a board is
// unhealthy (its console cannot be opened); it checks boards in parallel.
// With -o json it exits 0 and each row carries its verdict.
func TestBoardsListCheckHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var inv strings.Builder
	inv.WriteString("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n")
	for _, n := range []string{"sim-1", "sim-2", "sim-3", "sim-4"} {
		inv.WriteString("  - name: " + n + "\n    drivers:\n      sim: {password: sim-password, boot-delay: 5ms}\n")
	}
	inv.WriteString("  - name: unplugged\n    drivers:\n      serial: {port: " + filepath.Join(e.dir, "no-such-tty") + "}\n")
	boards := e.write("farm.yaml", inv.String())
	start := time.Now()
	r := e.run("boards", "list", "--check", "--boards", boards, "--lock-dir", e.locks, "--state-dir", e.state)
	took := time.Since(start)
	if r.code != 1 || !strings.Contains(r.stderr, "1 board unhealthy") {
		t.Errorf("an unplugged board: want exit 1 and a message: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 6 || !strings.Contains(lines[0], "HEALTH") {
		t.Fatalf("want a header with HEALTH and 5 rows: %s", r)
	}
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "sim-") && !strings.Contains(l, "ok (open, power off, console silent"):
			t.Errorf("a healthy sim board: %q", l)
		case strings.HasPrefix(l, "unplugged") && !strings.Contains(l, "UNHEALTHY: ") && !strings.Contains(l, "cannot open"):
			t.Errorf("the unplugged board: %q", l)
		}
	}
	// each sim check waits 3 s for a silent console: in parallel, not 12 s
	if took > 9*time.Second {
		t.Errorf("checking 5 boards took %s: not in parallel", took)
	}
	r = e.run("boards", "list", "--check", "--boards", boards, "--lock-dir", e.locks, "--state-dir", e.state, "-o", "json")
	var rows []struct {
		Name    string
		Healthy *bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || r.code != 0 || len(rows) != 5 {
		t.Fatalf("json (exit 0 for the DRA driver): %v %s", err, r)
	}
	for _, row := range rows {
		if row.Healthy == nil || *row.Healthy != (row.Name != "unplugged") {
			t.Errorf("json: %s healthy=%v", row.Name, row.Healthy)
		}
	}
}

// readmeEnv is a clean environment for commands typed as README shows
// them: a home of its own (so the default state directory is the test's),
// the test's lock directory, and the Go caches of this machine.
func readmeEnv(t *testing.T, home, locks string) []string {
	t.Helper()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "JSPLAN_LOCK_DIR=" + locks, "NO_COLOR=1", "LANG=C.UTF-8"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOTOOLCHAIN", "GOPROXY"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatal(err)
		}
		if v := strings.TrimSpace(string(out)); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// `make demo` and the commands README shows after it share one state: the
// board the demo flashed is the board `jsplan apply` (and power, console)
// find next, with no --state-dir or --lock-dir typed.
func TestDemoSharesStateWithTheNextCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make demo")
	}
	t.Parallel()
	tmp := t.TempDir()
	home, locks, out := filepath.Join(tmp, "home"), filepath.Join(tmp, "locks"), filepath.Join(tmp, "out")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := readmeEnv(t, home, locks)
	bin := filepath.Join(tmp, "bin", "jsplan")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	demo := exec.CommandContext(ctx, "make", "-s", "demo", "OUT="+out, "BIN="+bin)
	demo.Dir, demo.Env = "..", env
	b, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, b)
	}
	m := regexp.MustCompile(`image id (demo-\d+)`).FindSubmatch(b)
	if m == nil || !strings.Contains(string(b), "jsplan power sim-1 status") {
		t.Fatalf("make demo printed no image id or no next step:\n%s", b)
	}
	// the two-board example ran on the virtual pair, one console log per board
	if strings.Count(string(b), "Passed:") != 2 || !strings.Contains(string(b), "[sim-peer] peer receives") {
		t.Errorf("make demo did not run the two-board example:\n%s", b)
	}
	for _, f := range []string{"console-sim-ecu.log", "console-sim-peer.log", "report.html"} {
		if _, err := os.Stat(filepath.Join(out, "artifacts-two-boards", f)); err != nil {
			t.Errorf("two-board demo: %v", err)
		}
	}
	id := string(m[1])
	plan := filepath.Join(tmp, "booted.yaml")
	if err := os.WriteFile(plan, []byte("apiVersion: jsplan.dev/v1\nkind: Plan\nname: booted\nboard: {name: sim-1}\nsteps:\n"+
		"  - power: on\n  - wait-for-login: {username: root, password: demo-password}\n"+
		"  - run: {command: \"cat ${{ board.vars.image-id-file }}\", expect-output: "+id+"}\nfinally:\n  - power: off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"power", "sim-1", "status"},
		{"boards", "list"},
		{"apply", plan, "--artifacts", filepath.Join(tmp, "artifacts")},
	} {
		cmd := exec.CommandContext(ctx, jsplanBin, args...)
		cmd.Dir, cmd.Env = tmp, env
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("jsplan %s after make demo: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
}

// apply --console shows what the board prints among the step lines, masked
// and without escape sequences; --output json carries it as console events.
func TestApplyShowsTheConsole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("shown", "  - run: printf 'tick-%s \\033[1mbold\\033[0m\\n' $((6*7)); echo sim-password\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art, "--console")...)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.stdout, "| tick-42 bold\n") || !strings.Contains(r.stdout, "| Jsplan Sim Linux") {
		t.Errorf("--console does not show the board's lines: %s", r)
	}
	if strings.Contains(r.stdout, "sim-password") || strings.Contains(r.stdout, "\x1b") {
		t.Errorf("a secret or an escape sequence reached the terminal: %s", r)
	}
	// without --console (and not on a terminal): the steps only
	r = e.run(e.applyArgs(pf, e.art)...)
	if r.code != 0 || strings.Contains(r.stdout, "tick-42") {
		t.Errorf("the console shown without --console off a terminal: %s", r)
	}
	r = e.run(e.applyArgs(pf, e.art, "--output", "json")...)
	var seen, masked bool
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev struct{ Event, Index, Message string }
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if ev.Event == "console" && strings.HasPrefix(ev.Message, "tick-42 ") {
			seen = true
			if ev.Index != "3" {
				t.Errorf("the console event of step 3 names step %q", ev.Index)
			}
		}
		if ev.Event == "console" && ev.Message == "***" {
			masked = true
		}
	}
	if !seen || !masked || strings.Contains(r.stdout, "sim-password") {
		t.Errorf("--output json: console events seen=%v, secret masked=%v: %s", seen, masked, r)
	}
}

// jsplan console --watch BOARD follows the console of a run that holds the
// board, from another process, without its lock, and ends with the run.
func TestConsoleWatchFollowsARun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.run("console", "--watch", "sim-1", "--boards", e.boards, "--lock-dir", e.locks); r.code != 2 || !strings.Contains(r.stderr, "nothing holds sim-1's console") {
		t.Errorf("--watch with no run: %s", r)
	}
	pf := e.write("p.yaml", plan("watched",
		"  - name: ticks\n    run: for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 0.5; done; echo sim-password\n", powerOff))
	run := e.start(e.applyArgs(pf, e.art)...)
	run.waitRun("ticks")
	w := e.start("console", "--watch", "sim-1", "--boards", e.boards, "--lock-dir", e.locks)
	w.waitLine("a tick from the watched run", func(l string) bool { return strings.Contains(l, "tick-") })
	if code := run.wait(); code != 0 {
		t.Fatalf("the watched run: exit %d\n%s", code, run.stdout())
	}
	if code := w.wait(); code != 0 || !strings.Contains(w.stderrText(), "no longer holds sim-1") {
		t.Errorf("the watcher: exit %d\n%s\n%s", code, w.stdout(), w.stderrText())
	}
	out := w.stdout()
	if !strings.Contains(out, "tick-8") || strings.Contains(out, "sim-password") {
		t.Errorf("the watcher did not follow to the end, or showed a secret:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(e.locks, "sim-1.lock.console")); err == nil {
		t.Errorf("the run left its console link behind")
	}
}

// A bare jsplan is a usage error (exit 2, the usage on stderr); --help and
// --version are not.
func TestBareJsplanIsAUsageError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.run(); r.code != 2 || !strings.Contains(r.stderr, "USAGE") || !strings.Contains(r.stderr, "jsplan needs a command") || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("bare jsplan: %s", r)
	}
	for _, args := range [][]string{{"--help"}, {"--version"}} {
		if r := e.run(args...); r.code != 0 {
			t.Errorf("jsplan %s: %s", args[0], r)
		}
	}
}

// An interrupted run names the signal as people know it: "interrupted by
// SIGINT", not "interrupted by interrupt".
func TestInterruptedRunNamesTheSignal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("stopped", "  - name: long\n    run: sleep 30\n", powerOff))
	p := e.start(e.applyArgs(pf, e.art)...)
	p.waitRun("long")
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(); code != 130 {
		t.Fatalf("exit %d, want 130\n%s", code, p.stdout())
	}
	rep := readReport(t, e.art)
	all := p.stdout() + p.stderrText() + rep.Error
	for _, s := range rep.Steps {
		all += s.Error
	}
	if strings.Contains(all, "by interrupt") || !strings.Contains(all, "interrupted by SIGINT") {
		t.Errorf("the interruption's wording:\n%s", all)
	}
}

// boards drivers -o json lists the drivers; boards discover -o json prints
// an empty list, not null, when nothing is attached.
func TestBoardsDriversAndDiscoverJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.run("boards", "drivers", "-o", "json")
	var ds []struct {
		Name     string
		Provides []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &ds); err != nil || r.code != 0 || len(ds) < 6 {
		t.Fatalf("boards drivers -o json: %v %s", err, r)
	}
	for _, d := range ds {
		// with its default configuration: network needs an ssh: endpoint
		if d.Name == "sim" && strings.Join(d.Provides, ",") != "power,console,storage" {
			t.Errorf("sim provides %q", d.Provides)
		}
	}
	r = e.run("boards", "discover", "-o", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) == "null" || !strings.HasPrefix(strings.TrimSpace(r.stdout), "[") {
		t.Errorf("boards discover -o json: %s", r)
	}
}

// flash -q prints nothing; --verify says that it verified.
func TestFlashQuietAndVerified(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.write("img.raw", strings.Repeat("image data\n", 5000))
	if r := e.run("flash", "-q", img, filepath.Join(e.dir, "t1")); r.code != 0 || strings.TrimSpace(r.stdout) != "" || r.stderr != "" {
		t.Errorf("flash -q printed something: %s", r)
	}
	if r := e.run("flash", "--verify", img, filepath.Join(e.dir, "t2")); r.code != 0 || !strings.Contains(r.stdout, "verified") {
		t.Errorf("flash --verify does not say it verified: %s", r)
	}
}

// On a terminal (here forced with CLICOLOR_FORCE=1) outcomes are in colour;
// NO_COLOR turns it off (the other tests run with it).
func TestApplyColoursOutcomes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: c\nsteps:\n  - log: fine\n  - local: exit 3\n")
	cmd := exec.Command(jsplanBin, e.applyArgs(pf, e.art)...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "CLICOLOR_FORCE=1", "NO_COLOR=")
	out, _ := cmd.Output()
	if !strings.Contains(string(out), "\x1b[32mPASS \x1b[0m") || !strings.Contains(string(out), "\x1b[31;1mFAIL \x1b[0m") {
		t.Errorf("no colours:\n%q", out)
	}
	if r := e.run(e.applyArgs(pf, e.art)...); strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("colours with NO_COLOR:\n%q", r.stdout)
	}
}

// An ansible step against a board that does not answer SSH (an image
// without an SSH server) fails as infrastructure (exit 3) with a hint on
// what to check, not a bare UNREACHABLE.
func TestAnsibleUnreachableGivesAHint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ansible-playbook")
	}
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Skip("ansible-playbook is not installed (Debian package ansible-core)")
	}
	t.Parallel()
	e := newEnv(t)
	key := e.write("keys/id_ed25519", "not a key\n")
	boards := e.write("noss.yaml", fmt.Sprintf("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n  - name: sim-1\n    drivers:\n"+
		"      sim: {password: sim-password, boot-delay: 5ms, ssh: {port: %d, key-file: %s}}\n", e2eFreePort(t), key))
	e.write("site.yml", "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: a\nsteps:\n  - {ansible: {playbook: site.yml}, timeout: 2m}\n")
	r := e.run(e.applyArgs(pf, e.art, "--boards", boards)...)
	if r.code != 3 || !strings.Contains(r.stdout, "hint: nothing answered SSH as root on 127.0.0.1:") ||
		!strings.Contains(r.stdout, "build-image.sh OUT --ssh") {
		t.Errorf("want exit 3 and a hint: %s", r)
	}
}

// A run waiting for a busy board says so while it waits, with who holds
// the board and how to watch it.
func TestApplyWaitingForABoardSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	holder := e.start("lock", "sim-1", "--boards", e.boards, "--lock-dir", e.locks, "--", "sleep", "3")
	deadline := time.Now().Add(10 * time.Second)
	for lock.ReadHolder(e.locks, "sim-1") == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	pf := e.write("p.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: w\nsteps:\n  - log: got it\n")
	cmd := exec.Command(jsplanBin, e.applyArgs(pf, e.art)...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "JSPLAN_LOCK_PROGRESS=500ms")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if n := strings.Count(string(out), "still waiting ("); n < 2 || !strings.Contains(string(out), "for sim-1, held by ") ||
		!strings.Contains(string(out), "jsplan console sim-1 --watch") {
		t.Errorf("%d progress lines while waiting for the board:\n%s", n, out)
	}
	holder.wait()
}

// Where the virtual board cannot have a root of its own (no user
// namespaces; forced here with JSPLAN_SIM_NO_SANDBOX), the run says so and
// plans that use the board's relative paths still pass.
func TestSimWithoutNamespaceSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("fallback", "  - run: {command: cat etc/image-id, expect-output: none}\n", powerOff))
	cmd := exec.Command(jsplanBin, e.applyArgs(pf, e.art)...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "JSPLAN_SIM_NO_SANDBOX=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "the shell runs in the host's file system (absolute paths are the host's)") {
		t.Errorf("%v\n%s", err, out)
	}
}
