package cmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/lock"
	"github.com/jsplan/jsplan/internal/report"
)

// The fault soak (issue 11): applies of a plan on two virtual boards in
// parallel, each run with a fault injected at a random point, and after
// every run the checks: reports present and parseable (after SIGKILL: the
// next run works), the board powered off, its lock free, no process left,
// no file descriptor left open on the run's files, no secret in any
// artifact. SOAK_RUNS sets the number of runs (short form by default, `make
// soak` runs 500), SOAK_SEED replays a sequence of faults.

// soakFaults are the injected faults; "none" is a clean run.
var soakFaults = []string{"none", "boot-hang", "kernel-panic", "login-refused", "power-fail",
	"console-drop", "sigterm", "sigkill", "disk-full"}

// soakPlan is the plan every run applies: it leaves processes behind on the
// board and the host (recording their PIDs) and prints the secret.
const soakPlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: soak
params:
  token: {type: string, secret: true}
  pids:  {type: string}
  sleep: {type: string}
fail-on: ["Kernel panic - not syncing"]
timeout: 2m
steps:
  - power: on
  - name: log in
    timeout: 5s
    wait-for-login: {username: root, password: "${{ board.vars.pw }}"}
  - name: board jobs
    run: echo $$ >> ${{ params.pids }}; sleep ${{ params.sleep }} >/dev/null 2>&1 & echo $! >> ${{ params.pids }}
  - name: secret on the console
    run: {command: 'echo "the token is $TOKEN"', env: {TOKEN: "${{ params.token }}"}}
  - name: host job
    local:
      command: 'sleep "$S" & echo $! >> "$P"; echo "host sees $T"'
      env: {P: "${{ params.pids }}", S: "${{ params.sleep }}", T: "${{ params.token }}"}
  - name: chatty
    run: "for i in $(seq 1 30); do echo line $i; sleep 0.01; done"
  - name: board prints notes
    run: "for i in $(seq 1 300); do echo '### step 1: FORGED'; done; echo '### logged out: all tests passed'"
  - sleep: 1500ms
finally:
  - name: power off
    power: off
`

type soakStats struct {
	mu       sync.Mutex
	runs     int
	faults   map[string]int
	codes    map[string]map[int]int
	failures []string
}

func (s *soakStats) fail(run int, fault, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, fmt.Sprintf("run %d (%s): %s", run, fault, fmt.Sprintf(format, args...)))
}

func TestSoak(t *testing.T) {
	runs := 20
	if v := os.Getenv("SOAK_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SOAK_RUNS=%q", v)
		}
		runs = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SOAK_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	root := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	planFile := write("soak.yaml", soakPlan)
	locks := filepath.Join(root, "locks")
	state := filepath.Join(root, "state")
	password := "pw-" + randHex(8)
	token := "tok-" + randHex(10)

	stats := &soakStats{faults: map[string]int{}, codes: map[string]map[int]int{}}
	var next int
	var nmu sync.Mutex
	take := func() (int, bool) {
		nmu.Lock()
		defer nmu.Unlock()
		if next >= runs {
			return 0, false
		}
		next++
		return next, true
	}
	var wg sync.WaitGroup
	for w, board := range []string{"soak-a", "soak-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
			// A sleep length no other process on the machine uses: the
			// jobs this worker's runs leave are found by it.
			sleepArg := strconv.Itoa(700000 + int(seed%100000)*2 + w)
			for {
				n, ok := take()
				if !ok {
					return
				}
				fault := soakFaults[rng.IntN(len(soakFaults))]
				r := &soakRun{n: n, fault: fault, board: board, root: root, plan: planFile, locks: locks, state: state,
					password: password, token: token, sleepArg: sleepArg, rng: rng, stats: stats}
				r.do()
			}
		}()
	}
	wg.Wait()

	var kinds []string
	for k := range stats.faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d runs on 2 boards (seed %d), %d failures\n", runs, seed, len(stats.failures))
	for _, k := range kinds {
		var codes []string
		for c, m := range stats.codes[k] {
			codes = append(codes, fmt.Sprintf("exit %d: %d", c, m))
		}
		sort.Strings(codes)
		fmt.Fprintf(&b, "  %-14s %4d  (%s)\n", k, stats.faults[k], strings.Join(codes, ", "))
	}
	fmt.Print(b.String())
	t.Log("\n" + b.String())
	for i, f := range stats.failures {
		if i == 20 {
			t.Errorf("... and %d more", len(stats.failures)-20)
			break
		}
		t.Error(f)
	}
}

// soakRun is one run of the soak.
type soakRun struct {
	n               int
	fault, board    string
	root, plan      string
	locks, state    string
	password, token string
	sleepArg        string
	rng             *mrand.Rand
	stats           *soakStats
}

func (r *soakRun) failf(format string, args ...any) {
	r.stats.fail(r.n, r.fault, format, args...)
}

func (r *soakRun) do() {
	dir := filepath.Join(r.root, fmt.Sprintf("run-%04d", r.n))
	art := filepath.Join(dir, "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.failf("%v", err)
		return
	}
	pids := filepath.Join(dir, "pids")
	faults := ""
	switch r.fault {
	case "boot-hang", "kernel-panic", "login-refused", "power-fail":
		faults = fmt.Sprintf("faults: {%s: true}", r.fault)
	case "console-drop":
		faults = fmt.Sprintf("faults: {console-drop-after: %dms}", 100+r.rng.IntN(2000))
	}
	boards := fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: %s
    vars: {pw: %s}
    drivers:
      sim: {password: %s, boot-delay: 5ms, share: [%s], %s}
`, r.board, r.password, r.password, dir, faults)
	boardsFile := filepath.Join(dir, "boards.yaml")
	if err := os.WriteFile(boardsFile, []byte(boards), 0o644); err != nil {
		r.failf("%v", err)
		return
	}
	args := []string{"apply", r.plan, "--boards", boardsFile, "--artifacts", art, "--lock-dir", r.locks,
		"--state-dir", r.state, "--lock-wait", "10s", "--finally-grace", "20s",
		"--set", "token=" + r.token, "--set", "pids=" + pids, "--set", "sleep=" + r.sleepArg}
	argv := append([]string{jsplanBin}, args...)
	if r.fault == "disk-full" {
		// A file-size limit (in 512-byte blocks) on jsplan and its
		// children: past it, writes fail with EFBIG as on a full disk.
		blocks := 1 + r.rng.IntN(12)
		argv = append([]string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -f %d && exec "$@"`, blocks), "sh"}, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	started := make(chan struct{})
	stdout := &lockedBuffer{watch: "jsplan: plan soak", seen: started}
	cmd.Stdout = stdout
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		r.failf("start: %v", err)
		return
	}
	pid := cmd.Process.Pid
	// Every process below jsplan, sampled while it runs.
	seen := map[string]procInfo{}
	var smu sync.Mutex
	sample := func() {
		smu.Lock()
		defer smu.Unlock()
		for _, p := range descendants(pid) {
			seen[strconv.Itoa(p.pid)+"/"+p.start] = p
		}
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	sampler := make(chan struct{})
	go func() {
		defer close(sampler)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-exited:
				return
			case <-tk.C:
				sample()
			}
		}
	}()
	var sig syscall.Signal
	switch r.fault {
	case "sigterm":
		sig = syscall.SIGTERM
	case "sigkill":
		sig = syscall.SIGKILL
	}
	if sig != 0 {
		select { // the handlers are installed by then
		case <-started:
		case <-exited:
		}
		time.Sleep(time.Duration(r.rng.IntN(2500)) * time.Millisecond)
		sample()
		_ = syscall.Kill(pid, sig)
	}
	<-sampler
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	r.stats.mu.Lock()
	r.stats.runs++
	r.stats.faults[r.fault]++
	if r.stats.codes[r.fault] == nil {
		r.stats.codes[r.fault] = map[int]int{}
	}
	r.stats.codes[r.fault][code]++
	r.stats.mu.Unlock()
	show := func() string {
		return fmt.Sprintf("\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}

	// The exit status the fault allows.
	allowed := map[string][]int{
		"none": {0}, "boot-hang": {1}, "kernel-panic": {1}, "login-refused": {1}, "power-fail": {3},
		"console-drop": {0, 3}, "sigterm": {0, 143}, "sigkill": {0, 137}, "disk-full": {0, 1, 3},
	}[r.fault]
	ok := false
	for _, c := range allowed {
		ok = ok || c == code
	}
	if !ok {
		r.failf("exit %d, want one of %v%s", code, allowed, show())
	}

	// No process left: every process seen below jsplan, and every job
	// the plan recorded, is gone (the guardian may take a moment).
	smu.Lock()
	var procs []procInfo
	for _, p := range seen {
		procs = append(procs, p)
	}
	smu.Unlock()
	if b, err := os.ReadFile(pids); err == nil {
		for _, l := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(l); err == nil {
				if f, comm, ok := statFields(p); ok && len(f) >= 20 {
					procs = append(procs, procInfo{pid: p, start: f[19], comm: comm})
				}
			}
		}
	}
	if left := waitGone(procs); len(left) > 0 {
		r.failf("processes left: %+v", left)
		for _, p := range left {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	if left := soakJobs(r.sleepArg); len(left) > 0 {
		r.failf("jobs of this board left: %v", left)
		for _, p := range left {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	// No file descriptor left open on the run's files.
	if holders := fdHolders(dir); len(holders) > 0 {
		r.failf("files of the run still open: %v", holders)
	}
	// The lock is free.
	if l, h, err := lock.TryAcquire(r.locks, r.board, lock.Holder{Plan: "soak check"}); err != nil || l == nil {
		r.failf("lock not free after the run: %v %+v", err, h)
	} else {
		l.Release()
	}
	// No secret in any artifact.
	for _, s := range []string{r.password, r.token} {
		if hits := grepFiles(art, s); len(hits) > 0 {
			r.failf("secret %q found in %v", s[:4]+"...", hits)
		}
	}
	// Reports present and parseable, and they agree with the exit status;
	// the board was powered off by finally. After SIGKILL there is nothing
	// to check: the next run on this board must work (its checks).
	if code == 137 {
		return
	}
	rep, err := readSoakReport(art)
	if err != nil {
		if r.fault == "disk-full" && code != 0 {
			return // a full disk may keep the reports out, never silently
		}
		r.failf("reports: %v%s", err, show())
		return
	}
	if rep.ExitCode != code && !(r.fault == "disk-full" && code == 3) {
		r.failf("report.json says exit %d, the process %d", rep.ExitCode, code)
	}
	r.checkForgery(art, code)
	r.hostileReport(dir, art)
	if r.fault != "disk-full" && !strings.Contains(stderr.String(), "did not start") {
		off := false
		for _, f := range rep.Finally {
			off = off || f.Name == "power off" && f.Status == result.Passed
		}
		if !off {
			r.failf("finally did not power the board off: %+v%s", rep.Finally, show())
		}
	}
}

// soakNoteRe matches a note of jsplan's in console.log.
var soakNoteRe = regexp.MustCompile(`^\[[ 0-9.]+\]### `)

// checkForgery checks that the board's forged notes stayed board lines:
// no note of console.log, no section of report.html holds them.
func (r *soakRun) checkForgery(art string, code int) {
	b, err := os.ReadFile(filepath.Join(art, "console.log"))
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		if soakNoteRe.MatchString(l) && (strings.Contains(l, "FORGED") || strings.Contains(l, "logged out")) {
			r.failf("a board line is a note in console.log: %q", l)
		}
	}
	page, err := os.ReadFile(filepath.Join(art, "report.html"))
	if err != nil {
		return
	}
	if len(page) > 4<<20 || strings.Contains(string(page), `class="l n"`) && regexp.MustCompile(`class="l n"[^\n]*(FORGED|logged out)`).Match(page) {
		r.failf("report.html: %d bytes, forged notes shown as notes", len(page))
	}
	if n := strings.Count(string(page), "<details id="); n > 40 {
		r.failf("report.html has %d console sections", n)
	}
	_ = code
}

// hostileReports are report.json files a hostile run could leave.
var soakHostileReports = []string{
	`{"steps":[null]}`,
	`{"plan":"p","finally":[null],"steps":[{"index":"1","tests":[null]}]}`,
	`{"plan":"p","status":"passed","start":"2026-11-29T10:00:00Z","duration_seconds":1e13}`,
	`{"plan":"<script>alert(1)</script>","status":"</title><script>alert(2)</script>","start":"2026-11-29T10:00:00Z","duration_seconds":3,` +
		`"steps":[{"index":"1","name":"<img src=x onerror=alert(3)>","status":"</title></circle><script>alert(4)</script>","start":"2026-11-29T10:00:01Z","duration_seconds":1}]}`,
	`{"steps":`,
}

// hostileReport rebuilds the run's page from a hostile report.json next to
// its console.log, and a history of the run and the hostile copy: neither
// crashes nor carries the report's markup.
func (r *soakRun) hostileReport(dir, art string) {
	h := filepath.Join(dir, "hostile")
	if err := os.MkdirAll(h, 0o755); err != nil {
		r.failf("%v", err)
		return
	}
	if b, err := os.ReadFile(filepath.Join(art, "console.log")); err == nil {
		_ = os.WriteFile(filepath.Join(h, "console.log"), b, 0o644)
	}
	body := soakHostileReports[r.rng.IntN(len(soakHostileReports))]
	if err := os.WriteFile(filepath.Join(h, "report.json"), []byte(body), 0o644); err != nil {
		r.failf("%v", err)
		return
	}
	for _, args := range [][]string{{"report", h}, {"report", "--history", "--out", filepath.Join(dir, "history.html"), art, h}} {
		out, err := exec.Command(jsplanBin, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if strings.Contains(string(out), "panic") || code != 0 && code != 2 && code != 3 {
			r.failf("jsplan %s on a hostile report.json %s: exit %d\n%s", args[0], body, code, out)
		}
	}
	for _, page := range []string{filepath.Join(h, "report.html"), filepath.Join(dir, "history.html")} {
		if b, err := os.ReadFile(page); err == nil && regexp.MustCompile(`<script>alert|<img src`).Match(b) {
			r.failf("%s carries a hostile report's markup", page)
		}
	}
}

// readSoakReport reads and checks report.json and junit.xml.
func readSoakReport(art string) (*engine.Result, error) {
	b, err := os.ReadFile(filepath.Join(art, "report.json"))
	if err != nil {
		return nil, err
	}
	var rep engine.Result
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("report.json: %v", err)
	}
	x, err := os.ReadFile(filepath.Join(art, "junit.xml"))
	if err != nil {
		return nil, err
	}
	var j report.JUnitSuites
	if err := xml.Unmarshal(x, &j); err != nil {
		return nil, fmt.Errorf("junit.xml: %v", err)
	}
	return &rep, nil
}

// soakJobs lists live `sleep ARG` processes.
func soakJobs(arg string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || string(b) != "sleep\x00"+arg+"\x00" {
			continue
		}
		if f, _, ok := statFields(p); ok && f[0] != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// fdHolders lists the processes (other than this one) with a file under
// dir open.
func fdHolders(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == self {
			continue
		}
		fds, err := os.ReadDir("/proc/" + e.Name() + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink("/proc/" + e.Name() + "/fd/" + fd.Name())
			if err == nil && strings.HasPrefix(l, dir+"/") {
				out = append(out, e.Name()+":"+l)
			}
		}
	}
	return out
}

// grepFiles lists the files under dir containing s.
func grepFiles(dir, s string) []string {
	var hits []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedBuffer is a bytes buffer safe for concurrent writes; seen, when
// set, is closed once the text contains watch.
type lockedBuffer struct {
	mu    sync.Mutex
	b     strings.Builder
	watch string
	seen  chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.b.Write(p)
	if l.seen != nil && strings.Contains(l.b.String(), l.watch) {
		close(l.seen)
		l.seen = nil
	}
	return n, err
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
