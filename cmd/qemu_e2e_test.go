package cmd

// End-to-end: one shared plan from plans/ runs unchanged on the simulated
// board and on a real QEMU machine that boots the image the plan flashed,
// logs in on its serial console, runs commands, is checked by an ansible
// playbook over SSH (127.0.0.1 only), gives back files and is powered off.
// The jsplan under test is this test binary re-run as the CLI (see init),
// in its own process: real signals, real exit status.

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// e2eMainEnv makes the test binary run as the jsplan CLI.
const e2eMainEnv = "JSPLAN_E2E_RUN_MAIN"

func init() {
	if os.Getenv(e2eMainEnv) == "1" {
		os.Exit(run(append([]string{"jsplan"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
}

const (
	e2ePassword = "demo-password"
	e2ePlan     = "../plans/examples/one-plan-many-boards.yaml"
	// e2eRunTimeout bounds one jsplan run; a TCG boot on a loaded 2-core
	// machine takes 5 to 30 s, the playbook 10 to 60 s.
	e2eRunTimeout = 8 * time.Minute
)

// e2e is what every run shares: the built image, its SSH key and the
// inventory with the two boards.
type e2e struct {
	dir     string
	image   string
	imageID string
	boards  string
	key     string
	plan    string
}

// e2eNeedTool fails (under CI) or skips when a host tool is missing.
func e2eNeedTool(t testing.TB, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (Debian package %s; make deps installs it)", tool, pkg)
		}
		t.Skipf("%s is not installed (Debian package %s)", tool, pkg)
	}
}

// e2eMustTool fails when a host tool is missing.
func e2eMustTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s is not installed (Debian package %s; make deps installs it)", tool, pkg)
	}
}

// setupE2E builds the image (busybox, dropbear, Python) with a fresh SSH key
// and writes the inventory.
func setupE2E(t *testing.T) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU end to end: skipped under -short")
	}
	e2eNeedTool(t, "qemu-system-x86_64", "qemu-system-x86")
	e2eMustTool(t, "ssh-keygen", "openssh-client")
	e2eMustTool(t, "ssh", "openssh-client")
	e2eMustTool(t, "ansible-playbook", "ansible-core")
	e := &e2e{dir: t.TempDir()}
	var err error
	if e.plan, err = filepath.Abs(e2ePlan); err != nil {
		t.Fatal(err)
	}
	e.key = filepath.Join(e.dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jsplan-e2e", "-f", e.key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}

	e.image, e.imageID = e2eBuildImage(t, filepath.Join(e.dir, "image"), "IMAGE_AUTHORIZED_KEYS="+e.key+".pub", "--python")

	e.boards = filepath.Join(e.dir, "boards.yaml")
	inv := fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    vars: {image-id-file: etc/image-id, network: console}
    drivers:
      sim: {password: %s}
  - name: qemu-1
    labels: {kind: virtual}
    vars: {image-id-file: /etc/image-id, network: ssh}
    drivers:
      qemu:
        network: {ssh-port: %d, user: root, key-file: %s}
`, e2ePassword, e2eFreePort(t), e.key)
	if err := os.WriteFile(e.boards, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// e2eBuildImage builds a test image with plans/images/build-image.sh into
// dir (extra is environment settings and options) and returns its path and
// id. The root password is e2ePassword.
func e2eBuildImage(tb testing.TB, dir string, extra ...string) (image, id string) {
	tb.Helper()
	want := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	args := []string{dir, "--id", want}
	env := append(os.Environ(), "IMAGE_PASSWORD="+e2ePassword, "IMAGE_COMPRESS=")
	for _, x := range extra {
		if strings.HasPrefix(x, "-") {
			args = append(args, x)
		} else {
			env = append(env, x)
		}
	}
	cmd := exec.Command("../plans/images/build-image.sh", args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		tb.Fatalf("build-image.sh: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "IMAGE="); ok {
			image = v
		}
		if v, ok := strings.CutPrefix(line, "IMAGE_ID="); ok {
			id = v
		}
	}
	if image == "" || id != want {
		tb.Fatalf("build-image.sh printed IMAGE=%q IMAGE_ID=%q (want id %s):\n%s", image, id, want, stdout.String())
	}
	tb.Logf("built %s (id %s) in %v", image, id, time.Since(start).Round(100*time.Millisecond))
	return image, id
}

// e2eFreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func e2eFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// e2eRun is one jsplan apply run.
type e2eRun struct {
	board     string
	artifacts string
	state     string
	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has ended
	err       error         // from Wait, read after done
	stdout    *e2eBuffer
	stderr    *e2eBuffer
	code      int
	wall      time.Duration
}

// e2eBuffer is a bytes.Buffer that a test reads while the run writes.
type e2eBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func newE2EBuffer() *e2eBuffer { return &e2eBuffer{} }

func (l *e2eBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *e2eBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start starts `jsplan apply PLAN` on board with its own artifacts, state
// and lock directories. The QEMU it may start is killed (by PID) when the
// test ends, should jsplan have left it behind.
func (e *e2e) start(t *testing.T, plan, board string, sets ...string) *e2eRun {
	t.Helper()
	tmp := t.TempDir()
	r := &e2eRun{board: board, artifacts: filepath.Join(tmp, "artifacts"), state: filepath.Join(tmp, "state"),
		stdout: newE2EBuffer(), stderr: newE2EBuffer()}
	// Relative artifacts and state dirs, as a CI job gives them: QEMU runs
	// in a directory of its own and ansible in the playbook's.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	relArtifacts, err1 := filepath.Rel(wd, r.artifacts)
	relState, err2 := filepath.Rel(wd, r.state)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	args := []string{"apply", plan, "--boards", e.boards, "--board", board,
		"--set", "image=" + e.image, "--set", "image-id=" + e.imageID,
		"--artifacts", relArtifacts, "--state-dir", relState, "--lock-dir", filepath.Join(tmp, "locks")}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	r.cmd = exec.Command(os.Args[0], args...)
	r.cmd.Env = append(os.Environ(), e2eMainEnv+"=1")
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			clog, _ := os.ReadFile(filepath.Join(r.artifacts, "console.log"))
			t.Logf("jsplan apply on %s: %s\nconsole.log:\n%s", board, r.output(), clog)
		}
		if !r.ended() {
			r.cmd.Process.Kill()
			<-r.done
		}
		for _, pid := range r.qemuPIDs() {
			t.Errorf("qemu pid %d of board %s still runs at the end of the test: killing it", pid, board)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return r
}

// wait waits for the run to end (killing it after e2eRunTimeout).
func (r *e2eRun) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(e2eRunTimeout):
		r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("jsplan apply on %s did not end within %v\nstdout:\n%s\nstderr:\n%s", r.board, e2eRunTimeout, r.stdout, r.stderr)
	}
	r.code = 0
	if r.err != nil {
		ee, ok := r.err.(*exec.ExitError)
		if !ok {
			t.Fatal(r.err)
		}
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("jsplan died of signal %v\nstdout:\n%s\nstderr:\n%s", ws.Signal(), r.stdout, r.stderr)
		}
	}
}

// ended reports whether the process has ended.
func (r *e2eRun) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// apply runs jsplan apply to the end.
func (e *e2e) apply(t *testing.T, plan, board string, sets ...string) *e2eRun {
	t.Helper()
	start := time.Now()
	r := e.start(t, plan, board, sets...)
	r.wait(t)
	r.wall = time.Since(start)
	return r
}

func (r *e2eRun) output() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func (r *e2eRun) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.artifacts, name))
	if err != nil {
		t.Fatalf("artifact %s: %v\n%s", name, err, r.output())
	}
	return string(b)
}

var e2ePoweredOnRE = regexp.MustCompile(`qemu: powered on \(pid (\d+),`)

// qemuPIDs returns the live processes whose command line names this run's
// disk (a path in the test's temp dir): its QEMU, and nothing else.
func (r *e2eRun) qemuPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && r.runsDisk(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// runsDisk reports whether pid is alive (not a zombie) and its command
// line names this run's disk.
func (r *e2eRun) runsDisk(pid int) bool {
	disk := filepath.Join(r.state, r.board, "qemu", "disk.img")
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("file="+disk+",")) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	st := string(b)
	i := strings.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || st[i+2] != 'Z'
}

// checkNoQEMU fails if a QEMU of the run is still alive, and checks that
// one was started when wantStarted.
func (r *e2eRun) checkNoQEMU(t *testing.T, wantStarted bool) {
	t.Helper()
	if pids := r.qemuPIDs(); len(pids) > 0 {
		t.Errorf("qemu still runs after jsplan ended: pids %v", pids)
	}
	if wantStarted && !e2ePoweredOnRE.MatchString(r.stdout.String()) {
		t.Errorf("no qemu was powered on\n%s", r.output())
	}
}

// junit is the part of junit.xml the tests read.
type e2eJUnit struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
	Suites   []struct {
		Props []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []e2eJUnitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type e2eJUnitCase struct {
	Name      string    `xml:"name,attr"`
	Classname string    `xml:"classname,attr"`
	Failure   *struct{} `xml:"failure"`
	Error     *struct{} `xml:"error"`
	Skipped   *struct{} `xml:"skipped"`
}

func (c e2eJUnitCase) status() string {
	switch {
	case c.Failure != nil:
		return "failed"
	case c.Error != nil:
		return "error"
	case c.Skipped != nil:
		return "skipped"
	}
	return "passed"
}

func (r *e2eRun) junit(t *testing.T) []e2eJUnitCase {
	t.Helper()
	var j e2eJUnit
	if err := xml.Unmarshal([]byte(r.read(t, "junit.xml")), &j); err != nil {
		t.Fatalf("junit.xml: %v", err)
	}
	if len(j.Suites) != 1 {
		t.Fatalf("junit.xml has %d test suites, want 1", len(j.Suites))
	}
	cases := j.Suites[0].Cases
	if j.Tests != len(cases) {
		t.Errorf("junit.xml: tests=%d, but %d test cases", j.Tests, len(cases))
	}
	return cases
}

// e2eReport is the part of report.json the tests read.
type e2eReport struct {
	Plan     string     `json:"plan"`
	Board    string     `json:"board"`
	Status   string     `json:"status"`
	Error    string     `json:"error"`
	ExitCode int        `json:"exit_code"`
	Steps    []*e2eStep `json:"steps"`
	Finally  []*e2eStep `json:"finally"`
}

type e2eStep struct {
	Index   string     `json:"index"`
	Name    string     `json:"name"`
	Type    string     `json:"type"`
	Status  string     `json:"status"`
	Error   string     `json:"error"`
	Seconds float64    `json:"duration_seconds"`
	Steps   []*e2eStep `json:"steps"`
}

func (r *e2eRun) report(t *testing.T) *e2eReport {
	t.Helper()
	var rep e2eReport
	if err := json.Unmarshal([]byte(r.read(t, "report.json")), &rep); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	return &rep
}

// step finds a step by name anywhere in the report.
func (rep *e2eReport) step(name string) *e2eStep {
	var find func([]*e2eStep) *e2eStep
	find = func(ss []*e2eStep) *e2eStep {
		for _, s := range ss {
			if s.Name == name {
				return s
			}
			if f := find(s.Steps); f != nil {
				return f
			}
		}
		return nil
	}
	if s := find(rep.Steps); s != nil {
		return s
	}
	return find(rep.Finally)
}

// e2eConsoleLine is one line of console.log: its time since the run started.
type e2eConsoleLine struct {
	at   time.Duration
	text string
}

var e2eConsoleLineRE = regexp.MustCompile(`^\[\s*([0-9]+\.[0-9]+)\] ?(.*)$`)

func (r *e2eRun) console(t *testing.T) []e2eConsoleLine {
	t.Helper()
	var lines []e2eConsoleLine
	for _, l := range strings.Split(r.read(t, "console.log"), "\n") {
		m := e2eConsoleLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s, _ := strconv.ParseFloat(m[1], 64)
		lines = append(lines, e2eConsoleLine{at: time.Duration(s * float64(time.Second)), text: strings.TrimRight(m[2], "\r")})
	}
	return lines
}

// e2eFirstAt returns the time of the first console line containing s.
func e2eFirstAt(lines []e2eConsoleLine, s string) (time.Duration, bool) {
	for _, l := range lines {
		if strings.Contains(l.text, s) {
			return l.at, true
		}
	}
	return 0, false
}

// TestQEMUOnePlanManyBoards runs plans/examples/one-plan-many-boards.yaml
// unchanged on sim-1 and on qemu-1, then the failures a real board shows:
// a fail-on pattern in the boot log, a wrong password, and SIGTERM while
// the board boots.
func TestQEMUOnePlanManyBoards(t *testing.T) {
	e := setupE2E(t)

	// The steps both boards run; only the checks differ (console or ssh).
	common := []string{"flash image", "power cycle", "log in", "kernel and uptime",
		"booted image is the flashed one", "a failing command is seen as failing",
		"save kernel log", "collect kernel log", "collect files", "power off"}

	t.Run("sim-1", func(t *testing.T) {
		r := e.apply(t, e.plan, "sim-1")
		if r.code != 0 {
			t.Fatalf("apply on sim-1 failed\n%s", r.output())
		}
		e.checkPassed(t, r, append(common, "checks over console", "no network", "image id over the console"))
		if got := strings.TrimSpace(r.read(t, "files/etc/image-id")); got != e.imageID {
			t.Errorf("collected etc/image-id = %q, want %q", got, e.imageID)
		}
	})

	t.Run("qemu-1", func(t *testing.T) {
		r := e.apply(t, e.plan, "qemu-1")
		if r.code != 0 {
			t.Fatalf("apply on qemu-1 failed\n%s", r.output())
		}
		r.checkNoQEMU(t, true)
		e.checkPassed(t, r, append(common, "checks over ssh", "ansible playbook"))

		// The machine booted the flashed disk: SYSLINUX from the disk, then
		// the image's own banner and login prompt on the serial console.
		con := r.console(t)
		for _, s := range []string{"SYSLINUX", "jsplan test image " + e.imageID, "qemu login:", "root@qemu:~# "} {
			if _, ok := e2eFirstAt(con, s); !ok {
				t.Errorf("console.log has no %q", s)
			}
		}
		if got := strings.TrimSpace(r.read(t, "files/etc/image-id")); got != e.imageID {
			t.Errorf("collected /etc/image-id = %q, want %q", got, e.imageID)
		}
		if dmesg := r.read(t, "logs/tmp/jsplan-dmesg.log"); !strings.Contains(dmesg, "Linux version") {
			t.Errorf("collected dmesg has no kernel banner:\n%.500s", dmesg)
		}
		alog := r.read(t, "ansible-check-image.yaml.log")
		if !regexp.MustCompile(`qemu-1\s+: ok=2 .*failed=0`).MatchString(alog) {
			t.Errorf("ansible log does not show the two tasks passing on qemu-1:\n%s", alog)
		}
		if strings.Contains(r.read(t, "console.log"), e2ePassword) || strings.Contains(r.stdout.String(), e2ePassword) {
			t.Error("the password shows in console.log or the output")
		}
		e.logTimes(t, r)
	})

	t.Run("fail-on", func(t *testing.T) {
		// A fake panic: the plan-level fail-on of a plan that uses the
		// shared one matches a line the real boot prints.
		plan := filepath.Join(t.TempDir(), "fail-on.yaml")
		body := fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Plan
name: fail-on-boot
params:
  image: {type: path, required: true}
  image-id: {type: string, default: ""}
fail-on: ["jsplan test image"]
steps:
  - use:
      plan: %s
      with: {image: "${{ params.image }}", image-id: "${{ params.image-id }}", boot-timeout: 10m}
`, e.plan)
		if err := os.WriteFile(plan, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		r := e.apply(t, plan, "qemu-1")
		if r.code != 1 {
			t.Fatalf("apply with a fail-on pattern in the boot: want exit 1\n%s", r.output())
		}
		r.checkNoQEMU(t, true)
		rep := r.report(t)
		if rep.Status != "failed" || !strings.Contains(rep.Error, "jsplan test image") {
			t.Errorf("report: status %q, error %q; want failed, naming the pattern", rep.Status, rep.Error)
		}
		login := rep.step("log in")
		if login == nil || login.Status != "failed" || strings.Contains(login.Error, "timed out") {
			t.Fatalf("log in step = %+v, want failed by the pattern, not by its timeout", login)
		}
		if off := rep.step("power off"); off == nil || off.Status != "passed" {
			t.Errorf("power off (finally) = %+v, want passed", off)
		}
		// The run ends at the pattern, long before the 10m the login step
		// was given (a boot takes seconds).
		if login.Seconds > 5*60 {
			t.Errorf("log in step took %.0fs: the fail-on pattern did not end it", login.Seconds)
		}
		// The console log goes on while finally powers off; the run itself
		// stops at the pattern and never logs in.
		if strings.Contains(r.stdout.String(), "login prompt seen") {
			t.Error("the run went on to log in after the fail-on pattern")
		}
	})

	t.Run("wrong-password", func(t *testing.T) {
		const wrong = "not-the-password"
		r := e.apply(t, e.plan, "qemu-1", "password="+wrong)
		if r.code != 1 {
			t.Fatalf("apply with a wrong password: want exit 1\n%s", r.output())
		}
		r.checkNoQEMU(t, true)
		rep := r.report(t)
		login := rep.step("log in")
		if login == nil || login.Status != "failed" || !strings.Contains(login.Error, "refused") || !strings.Contains(login.Error, "Login incorrect") {
			t.Fatalf("log in step = %+v, want failed: refused, Login incorrect", login)
		}
		if !strings.Contains(r.stdout.String(), "Login incorrect") {
			t.Errorf("the output does not say why the login failed\n%s", r.output())
		}
		if off := rep.step("power off"); off == nil || off.Status != "passed" {
			t.Errorf("power off (finally) = %+v, want passed", off)
		}
		for _, name := range []string{"console.log", "report.json", "junit.xml", "plan.rendered.yaml"} {
			if strings.Contains(r.read(t, name), wrong) {
				t.Errorf("%s shows the password", name)
			}
		}
		if strings.Contains(r.stdout.String()+r.stderr.String(), wrong) {
			t.Error("the output shows the password")
		}
	})

	t.Run("sigterm", func(t *testing.T) {
		r := e.start(t, e.plan, "qemu-1")
		start := time.Now()
		// SIGTERM once the login step runs: QEMU is up and booting.
		loginRE := regexp.MustCompile(`(?m)^RUN\s+\S+\s+log in$`)
		for !loginRE.MatchString(r.stdout.String()) {
			if r.ended() || time.Since(start) > e2eRunTimeout {
				t.Fatalf("the login step never started\n%s", r.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
		pids := r.qemuPIDs()
		if len(pids) != 1 {
			t.Fatalf("qemu pids while booting: %v, want one\n%s", pids, r.output())
		}
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		r.wait(t)
		if r.code != 143 {
			t.Fatalf("after SIGTERM: want exit 143\n%s", r.output())
		}
		r.checkNoQEMU(t, true)
		rep := r.report(t)
		if rep.Status != "interrupted" || rep.ExitCode != 143 {
			t.Errorf("report: status %q, exit %d; want interrupted, 143", rep.Status, rep.ExitCode)
		}
		if off := rep.step("power off"); off == nil || off.Status != "passed" {
			t.Errorf("power off (finally) = %+v, want passed\n%s", off, r.output())
		}
		cases := r.junit(t)
		if len(cases) == 0 {
			t.Error("junit.xml has no test cases")
		}
		if !strings.Contains(r.stdout.String(), "qemu: powered off") {
			t.Errorf("the output does not show the power off\n%s", r.output())
		}
	})
}

// checkPassed checks the reports of a passed run: every junit test case
// passed, and the named steps are among them.
func (e *e2e) checkPassed(t *testing.T, r *e2eRun, want []string) {
	t.Helper()
	rep := r.report(t)
	if rep.Status != "passed" || rep.Board != r.board || rep.Plan != "one-plan-many-boards" {
		t.Errorf("report.json: plan %q board %q status %q; want one-plan-many-boards on %s, passed", rep.Plan, rep.Board, rep.Status, r.board)
	}
	cases := r.junit(t)
	names := map[string]bool{}
	for _, c := range cases {
		if st := c.status(); st != "passed" {
			t.Errorf("junit test case %q: %s", c.Name, st)
		}
		// "1.2 flash image" -> "flash image"; "finally f.1 power off" -> "power off"
		n := strings.TrimPrefix(c.Name, "finally ")
		if _, rest, ok := strings.Cut(n, " "); ok {
			n = rest
		}
		names[n] = true
	}
	for _, w := range want {
		if !names[w] {
			t.Errorf("junit.xml has no test case %q (has %v)", w, names)
		}
	}
}

// logTimes reports where the time of a qemu-1 run went: QEMU's own boot
// (power on to the login prompt, from console.log), the playbook, and the
// rest, which is jsplan's overhead plus the commands in the guest.
func (e *e2e) logTimes(t *testing.T, r *e2eRun) {
	t.Helper()
	con := r.console(t)
	on, ok1 := e2eFirstAt(con, "### step 1.3.1: power cycle")
	prompt, ok2 := e2eFirstAt(con, "qemu login:")
	rep := r.report(t)
	ans := rep.step("ansible playbook")
	if !ok1 || !ok2 || ans == nil {
		t.Logf("cannot split the run's time: power on %v, prompt %v, ansible %v", ok1, ok2, ans != nil)
		return
	}
	boot := prompt - on
	playbook := time.Duration(ans.Seconds * float64(time.Second))
	rest := r.wall - boot - playbook
	t.Logf("qemu-1: wall %v = boot to login prompt %v + ansible playbook %v + the rest %v (%.0f%% of the wall time)",
		r.wall.Round(10*time.Millisecond), boot.Round(10*time.Millisecond), playbook.Round(10*time.Millisecond),
		rest.Round(10*time.Millisecond), 100*rest.Seconds()/r.wall.Seconds())
	var b strings.Builder
	var walk func([]*e2eStep)
	walk = func(ss []*e2eStep) {
		for _, s := range ss {
			if len(s.Steps) == 0 {
				fmt.Fprintf(&b, "  %-5s %-40s %6.2fs\n", s.Index, s.Name, s.Seconds)
			}
			walk(s.Steps)
		}
	}
	walk(rep.Steps)
	walk(rep.Finally)
	t.Logf("qemu-1 steps:\n%s", b.String())
}
