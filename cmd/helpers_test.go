package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/lock"
	"github.com/jsplan/jsplan/internal/report"

	// The in-process tests run the stock set, as cmd/jsplan does.
	_ "github.com/jsplan/jsplan/drivers/all"
	_ "github.com/jsplan/jsplan/steps"
)

// jsplanBin is the binary under test, built once by TestMain.
var jsplanBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jsplan-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	jsplanBin = filepath.Join(dir, "jsplan")
	gocmd, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "the tests build jsplan and need go in PATH:", err)
		os.Exit(1)
	}
	build := exec.Command(gocmd, "build", "-o", jsplanBin, "./jsplan")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building jsplan: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runLimit bounds every jsplan process a test starts.
const runLimit = 90 * time.Second

// testEnv is one test's private directories: plans, artifacts, locks and
// driver state all live under t.TempDir().
type testEnv struct {
	t                 *testing.T
	dir               string
	art, locks, state string
	boards            string // the default inventory file
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	d := t.TempDir()
	e := &testEnv{t: t, dir: d, art: filepath.Join(d, "artifacts"), locks: filepath.Join(d, "locks"),
		state: filepath.Join(d, "state")}
	e.boards = e.write("boards.yaml", testBoards)
	return e
}

// testBoards is the inventory tests use unless they bring their own: the
// virtual board with a known password, booting fast.
const testBoards = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    drivers:
      sim: {password: sim-password, boot-delay: 5ms}
`

// write puts content in a file of the test directory and returns its path.
func (e *testEnv) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// applyArgs is `apply PLAN` with the test's directories and extra flags;
// the test's inventory unless extra names one.
func (e *testEnv) applyArgs(plan, artifacts string, extra ...string) []string {
	args := []string{"apply", plan, "--artifacts", artifacts, "--lock-dir", e.locks, "--state-dir", e.state}
	if !slices.Contains(extra, "--boards") {
		args = append(args, "--boards", e.boards)
	}
	return append(args, extra...)
}

// proc is a running jsplan process whose stdout is watched line by line.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	change chan struct{} // closed and replaced when a line arrives or stdout ends
	eof    bool
	stderr bytes.Buffer
	done   chan struct{}
	code   int
	cancel context.CancelFunc
}

// start runs jsplan with args; the process is killed (by PID) when the test
// ends if it is still running.
func (e *testEnv) start(args ...string) *proc {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	cmd := exec.CommandContext(ctx, jsplanBin, args...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	p := &proc{t: e.t, cmd: cmd, change: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.change)
			p.change = make(chan struct{})
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
		p.mu.Lock()
		p.eof = true
		close(p.change)
		p.change = make(chan struct{})
		p.mu.Unlock()
		err := cmd.Wait()
		p.code = exitCode(err)
		cancel()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// waitLine waits until a stdout line satisfies match and returns it. It
// fails the test when stdout ends first.
func (p *proc) waitLine(what string, match func(string) bool) string {
	p.t.Helper()
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if match(p.lines[seen]) {
				l := p.lines[seen]
				p.mu.Unlock()
				return l
			}
		}
		eof, ch := p.eof, p.change
		p.mu.Unlock()
		if eof {
			p.t.Fatalf("jsplan ended before printing %s\nstdout:\n%s\nstderr:\n%s", what, p.stdout(), p.stderrText())
		}
		<-ch
	}
}

// waitRun waits for the "RUN" line of the step titled title.
func (p *proc) waitRun(title string) {
	p.t.Helper()
	p.waitLine("RUN "+title, func(l string) bool {
		return strings.HasPrefix(l, "RUN ") && strings.HasSuffix(l, " "+title)
	})
}

func (p *proc) stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n") + "\n"
}

func (p *proc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait() int {
	p.t.Helper()
	<-p.done
	return p.code
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// cliRun is a finished jsplan run.
type cliRun struct {
	code           int
	stdout, stderr string
}

// run runs jsplan to completion.
func (e *testEnv) run(args ...string) cliRun {
	e.t.Helper()
	p := e.start(args...)
	code := p.wait()
	return cliRun{code: code, stdout: p.stdout(), stderr: p.stderrText()}
}

func (r cliRun) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// readReport reads report.json from an artifacts directory.
func readReport(t *testing.T, art string) *engine.Result {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(art, "report.json"))
	if err != nil {
		t.Fatalf("report.json: %v", err)
	}
	var r engine.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report.json does not parse: %v\n%s", err, b)
	}
	return &r
}

func readJUnit(t *testing.T, art string) *report.JUnitSuites {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(art, "junit.xml"))
	if err != nil {
		t.Fatalf("junit.xml: %v", err)
	}
	var j report.JUnitSuites
	if err := xml.Unmarshal(b, &j); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, b)
	}
	// The plan's suite first; then one per suite of test cases a step
	// reported (results:).
	if len(j.Suites) < 1 {
		t.Fatalf("junit.xml has no test suite")
	}
	return &j
}

// flatten lists step results depth first, as the reports number them.
func flatten(rs []*engine.StepResult) []*engine.StepResult {
	var out []*engine.StepResult
	for _, r := range rs {
		out = append(out, r)
		out = append(out, flatten(r.Children)...)
	}
	return out
}

// procInfo identifies a process across PID reuse.
type procInfo struct {
	pid   int
	start string // starttime field of /proc/PID/stat
	comm  string
}

// statFields returns the fields of /proc/PID/stat after the command name,
// and the command name.
func statFields(pid int) (fields []string, comm string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, "", false
	}
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return nil, "", false
	}
	return strings.Fields(string(b[j+1:])), string(b[i+1 : j]), true
}

// descendants lists the live processes below pid (children, grandchildren).
func descendants(pid int) []procInfo {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	info := map[int]procInfo{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, comm, ok := statFields(p)
		if !ok || len(f) < 20 || f[0] == "Z" {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
		info[p] = procInfo{pid: p, start: f[19], comm: comm}
	}
	var out []procInfo
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, info[p])
				break
			}
		}
	}
	return out
}

// alive reports whether the process is still there (same start time, not
// a zombie).
func (pi procInfo) alive() bool {
	f, _, ok := statFields(pi.pid)
	return ok && len(f) >= 20 && f[19] == pi.start && f[0] != "Z"
}

// killLater kills the listed processes when the test ends (they were
// started by a jsplan this test started).
func killLater(t *testing.T, ps []procInfo) {
	t.Cleanup(func() {
		for _, p := range ps {
			if p.alive() {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
}

// lockHolder reads the holder recorded in a board's lock file.
func lockHolder(t *testing.T, dir, board string) lock.Holder {
	t.Helper()
	b, err := os.ReadFile(lock.Path(dir, board))
	if err != nil {
		t.Fatal(err)
	}
	var h lock.Holder
	_ = json.Unmarshal(b, &h)
	return h
}

// grepTree reports every file under dir whose content contains s.
func grepTree(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(s)) {
				hits = append(hits, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
