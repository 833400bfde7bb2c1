package cmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// plan returns a Plan document for the built-in virtual board: it powers
// the board on and logs in, then runs steps, then finally.
func plan(name, steps, finally string) string {
	s := "apiVersion: jsplan.dev/v1\nkind: Plan\nname: " + name + "\n"
	s += "steps:\n  - name: power on\n    power: on\n  - name: log in\n    wait-for-login: {username: root, password: sim-password}\n"
	s += steps
	if finally != "" {
		s += "finally:\n" + finally
	}
	return s
}

const powerOff = "  - name: power off\n    power: off\n"

func TestApplyDemoPlan(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.write("demo.img", strings.Repeat("\x00filler", 1000)+"\nJSPLAN_IMAGE_ID=demo-1234\n")
	planFile, err := filepath.Abs("../plans/examples/virtual-smoke.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The built-in inventory, as in the README.
	r := e.run("apply", planFile, "--set", "image="+img, "--set", "image-id=demo-1234",
		"--artifacts", e.art, "--lock-dir", e.locks, "--state-dir", e.state)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	if !strings.Contains(r.stdout, "Passed: ") {
		t.Errorf("no summary line in the output:\n%s", r.stdout)
	}

	// console.log: a header, then every line timestamped.
	clog, err := os.ReadFile(filepath.Join(e.art, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(clog), "\n"), "\n")
	if len(lines) < 10 || !strings.HasPrefix(lines[0], "# jsplan console log") {
		t.Fatalf("console.log too short or without header:\n%s", clog)
	}
	stamp := regexp.MustCompile(`^\[ *\d+\.\d{3}\]( |### )`) // a board line, or a note of jsplan's
	for i, l := range lines[1:] {
		if !stamp.MatchString(l) {
			t.Errorf("console.log line %d has no timestamp: %q", i+2, l)
		}
	}
	for _, want := range []string{"Linux version", "sim login:", "sim: booting image demo-1234", "demo-1234"} {
		if !strings.Contains(string(clog), want) {
			t.Errorf("console.log lacks %q", want)
		}
	}

	// report.json lists every step of the plan (used plans inlined), passed.
	rep := readReport(t, e.art)
	if rep.Status != result.Passed || rep.ExitCode != 0 || rep.Board != "sim-1" || rep.Plan != "virtual-smoke" {
		t.Errorf("report: status %q exit %d board %q plan %q", rep.Status, rep.ExitCode, rep.Board, rep.Plan)
	}
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate, Values: map[string]engine.Value{
		"image": {Text: img}, "image-id": {Text: "demo-1234"}}})
	p := l.LoadPlan(planFile)
	if p == nil || l.Diagnostics().HasErrors() {
		t.Fatalf("loading the plan: %v", l.Diagnostics())
	}
	var want []string
	engine.WalkSteps(p.Steps, func(s *engine.Step) { want = append(want, s.Title()) })
	engine.WalkSteps(p.Finally, func(s *engine.Step) { want = append(want, s.Title()) })
	got := flatten(append(append([]*engine.StepResult{}, rep.Steps...), rep.Finally...))
	if len(got) != len(want) {
		t.Fatalf("report lists %d steps, the plan has %d", len(got), len(want))
	}
	for i, s := range got {
		if s.Name != want[i] || s.Status != result.Passed {
			t.Errorf("report step %s: %q %s, want %q passed", s.Index, s.Name, s.Status, want[i])
		}
	}

	// junit.xml: one testcase per step, nothing failed; then the self-test's
	// KTAP cases (3 pass, a skip and an allowed failure) in two suites.
	j := readJUnit(t, e.art)
	s := j.Suites[0]
	if len(s.Cases) != len(want) || s.Tests != len(want) || j.Tests != len(want)+5 {
		t.Errorf("junit: %d testcases, tests=%d/%d; want %d (+5)", len(s.Cases), s.Tests, j.Tests, len(want))
	}
	if len(j.Suites) != 3 || j.Suites[1].Name != "virtual-smoke / 3 board self-test / basics" || j.Suites[1].Tests != 3 ||
		j.Suites[2].Name != "virtual-smoke / 3 board self-test / devices" || j.Suites[2].Skipped != 2 || j.Skipped != 2 {
		t.Errorf("junit test case suites: %+v", j.Suites[1:])
	}
	if s.Failures != 0 || s.Errors != 0 || j.Failures != 0 || j.Errors != 0 || s.Skipped != 0 {
		t.Errorf("junit: failures=%d errors=%d skipped=%d, want none", s.Failures, s.Errors, s.Skipped)
	}
	for _, c := range s.Cases {
		if c.Failure != nil || c.Error != nil || c.Skipped != nil {
			t.Errorf("junit testcase %q is not a pass", c.Name)
		}
	}
	if s.Property("status") != "passed" || s.Property("board") != "sim-1" {
		t.Errorf("junit properties: %+v", s.Props)
	}

	// plan.rendered.yaml: the resolved plan, secrets masked.
	rendered, err := os.ReadFile(filepath.Join(e.art, "plan.rendered.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(rendered, &doc); err != nil {
		t.Fatalf("plan.rendered.yaml does not parse: %v", err)
	}
	if doc["kind"] != "Plan" || doc["name"] != "virtual-smoke" {
		t.Errorf("plan.rendered.yaml: kind %v name %v", doc["kind"], doc["name"])
	}
	if strings.Contains(string(rendered), "${{") || strings.Contains(string(rendered), "demo-password") {
		t.Errorf("plan.rendered.yaml holds a reference or the password:\n%s", rendered)
	}

	// collected files
	dmesg, err := os.ReadFile(filepath.Join(e.art, "logs", "tmp", "jsplan-dmesg.log"))
	if err != nil {
		t.Errorf("collected kernel log: %v", err)
	} else if len(dmesg) == 0 {
		t.Errorf("collected kernel log is empty")
	}
	id, err := os.ReadFile(filepath.Join(e.art, "files", "etc", "image-id"))
	if err != nil || strings.TrimSpace(string(id)) != "demo-1234" {
		t.Errorf("collected image-id: %q, %v", id, err)
	}
}

func TestApplyFailingStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("fail.yaml", plan("failing",
		"  - name: bad command\n    run: echo about to fail; sh -c 'exit 4'\n  - name: never\n    log: not reached\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 1 {
		t.Fatalf("want exit 1, got %s", r)
	}
	if !strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "status 4") {
		t.Errorf("output does not show the failure:\n%s", r.stdout)
	}
	rep := readReport(t, e.art)
	if rep.Status != result.Failed || rep.ExitCode != 1 || rep.Class != "failure" {
		t.Errorf("report: status %q exit %d class %q", rep.Status, rep.ExitCode, rep.Class)
	}
	if len(rep.Steps) != 4 || rep.Steps[2].Status != result.Failed || rep.Steps[3].Status != result.Skipped {
		t.Errorf("report steps: %+v", rep.Steps)
	} else if !strings.Contains(rep.Steps[2].Error, "exited with status 4") || !strings.Contains(rep.Steps[2].Output, "about to fail") {
		t.Errorf("failed step: error %q output %q", rep.Steps[2].Error, rep.Steps[2].Output)
	}
	if len(rep.Finally) != 1 || rep.Finally[0].Status != result.Passed {
		t.Errorf("finally power off did not pass: %+v", rep.Finally)
	}
	j := readJUnit(t, e.art)
	s := j.Suites[0]
	if s.Failures != 1 || j.Failures != 1 || s.Skipped != 1 {
		t.Errorf("junit: failures %d/%d skipped %d, want 1/1 1", s.Failures, j.Failures, s.Skipped)
	}
	var failed []string
	for _, c := range s.Cases {
		if c.Failure != nil {
			failed = append(failed, c.Name)
			if !strings.Contains(c.Failure.Message, "status 4") {
				t.Errorf("junit failure message %q", c.Failure.Message)
			}
		}
	}
	if len(failed) != 1 || !strings.Contains(failed[0], "bad command") {
		t.Errorf("junit <failure> on %v, want the bad command", failed)
	}
	page := readPage(t, e.art, "failed")
	if !strings.Contains(page, `<a class="tlrow st-failed failure" href="#con-3"`) || !strings.Contains(page, `<details id="con-3" class="sec st-failed failure" open`) {
		t.Errorf("report.html does not mark the failing step 3 and open its console")
	}
}

func TestApplySIGTERM(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("sleep.yaml", plan("sleeper",
		"  - name: background job\n    run: sleep 300 >/dev/null 2>&1 &\n  - name: long sleep\n    sleep: 30s\n  - name: never\n    log: not reached\n",
		powerOff))
	p := e.start(e.applyArgs(pf, e.art)...)
	p.waitRun("long sleep")
	kids := descendants(p.pid())
	killLater(t, kids)
	var shells int
	for _, k := range kids {
		if k.comm == "sh" || k.comm == "sleep" {
			shells++
		}
	}
	if shells < 2 {
		t.Fatalf("expected the sim's shell and its background job below jsplan, found %+v", kids)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := p.wait()
	if code != 143 {
		t.Fatalf("want exit 143 after SIGTERM, got %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout(), p.stderrText())
	}
	for _, k := range kids {
		if k.alive() {
			t.Errorf("process %d (%s) outlived jsplan", k.pid, k.comm)
		}
	}
	rep := readReport(t, e.art)
	if rep.Status != result.Interrupted || rep.ExitCode != 143 {
		t.Errorf("report: status %q exit %d, want interrupted 143", rep.Status, rep.ExitCode)
	}
	if len(rep.Steps) != 5 || rep.Steps[3].Status != result.Interrupted || rep.Steps[4].Status != result.Skipped {
		t.Errorf("report steps: %+v", rep.Steps)
	}
	if len(rep.Finally) != 1 || rep.Finally[0].Status != result.Passed {
		t.Errorf("finally power off did not run: %+v", rep.Finally)
	}
	j := readJUnit(t, e.art)
	if st := j.Suites[0].Property("status"); result.Status(st) != result.Interrupted {
		t.Errorf("junit status property %q, want interrupted", st)
	}
	if j.Suites[0].Errors != 1 {
		t.Errorf("junit errors %d, want 1 (the interrupted step)", j.Suites[0].Errors)
	}
	if page := readPage(t, e.art, "interrupted"); !strings.Contains(page, `<details id="con-4" class="sec st-interrupted failure" open`) {
		t.Errorf("report.html does not open the interrupted step")
	}
}

func TestApplyStepTimeoutWhileConsoleFloods(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("flood.yaml", plan("flood",
		"  - name: flood\n    timeout: 2s\n    run: yes flood\n",
		"  - name: shell still usable\n    run: {command: 'echo alive-$((40+2))', expect-output: alive-42}\n"+powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 1 {
		t.Fatalf("want exit 1, got %s", r)
	}
	rep := readReport(t, e.art)
	if len(rep.Steps) != 3 || rep.Steps[2].Status != result.Failed || !strings.Contains(rep.Steps[2].Error, "timed out") {
		t.Fatalf("flood step: %+v", rep.Steps)
	}
	if !strings.Contains(r.stdout, "timed out") {
		t.Errorf("output does not say the step timed out:\n%s", r.stdout)
	}
	for _, f := range rep.Finally {
		if f.Status != result.Passed {
			t.Errorf("finally step %q: %s %s", f.Name, f.Status, f.Error)
		}
	}
}

func TestApplyConcurrentRunsAreSerialized(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Each run holds the board until the test creates its release file.
	pf := e.write("busy.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
name: busy
params:
  release: {type: path, required: true}
steps:
  - power: on
  - wait-for-login: {username: root, password: sim-password}
  - name: work
    run: echo working
  - name: hold the board
    timeout: 60s
    local:
      command: 'while [ ! -e "$RELEASE" ]; do sleep 0.05; done'
      env: {RELEASE: "${{ params.release }}"}
finally:
  - power: off
`)
	relA, relB := filepath.Join(e.dir, "release-a"), filepath.Join(e.dir, "release-b")
	a := e.start(e.applyArgs(pf, filepath.Join(e.dir, "a"), "--output", "json", "--set", "release="+relA)...)
	a.waitLine("run-start", func(l string) bool { return strings.Contains(l, `"run-start"`) })
	b := e.start(e.applyArgs(pf, filepath.Join(e.dir, "b"), "--output", "json", "--set", "release="+relB)...)
	b.waitLine("busy", func(l string) bool { return strings.Contains(l, "busy") })
	e.write("release-a", "")
	e.write("release-b", "")
	if c := a.wait(); c != 0 {
		t.Fatalf("first run: exit %d\n%s\n%s", c, a.stdout(), a.stderrText())
	}
	if c := b.wait(); c != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", c, b.stdout(), b.stderrText())
	}
	evA, evB := events(t, a.stdout()), events(t, b.stdout())
	startA, endA := eventTime(t, evA, "run-start"), eventTime(t, evA, "run-end")
	startB, endB := eventTime(t, evB, "run-start"), eventTime(t, evB, "run-end")
	if !startB.After(endA) {
		t.Errorf("runs overlap: first %s..%s, second %s..%s", startA.Format(time.StampMicro), endA.Format(time.StampMicro),
			startB.Format(time.StampMicro), endB.Format(time.StampMicro))
	}
	busy := false
	for _, ev := range evB {
		if ev.Type == "log" && strings.Contains(ev.Message, "busy") {
			busy = true
			if !strings.Contains(ev.Message, fmt.Sprintf("pid %d", a.pid())) {
				t.Errorf("busy message does not name the holder (pid %d): %q", a.pid(), ev.Message)
			}
		}
	}
	if !busy {
		t.Errorf("the second run never said the board is busy:\n%s", b.stdout())
	}
}

// events parses JSON lines.
func events(t *testing.T, out string) []engine.Event {
	t.Helper()
	var evs []engine.Event
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var ev engine.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func eventTime(t *testing.T, evs []engine.Event, typ string) time.Time {
	t.Helper()
	for _, ev := range evs {
		if ev.Type == typ {
			return ev.Time
		}
	}
	t.Fatalf("no %s event", typ)
	return time.Time{}
}

func TestApplyAfterCrashedHolder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	long := e.write("long.yaml", plan("crasher", "  - name: long sleep\n    sleep: 60s\n", powerOff))
	a := e.start(e.applyArgs(long, filepath.Join(e.dir, "a"))...)
	a.waitRun("long sleep")
	killLater(t, descendants(a.pid()))
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if c := a.wait(); c != 128+9 {
		t.Fatalf("killed run: exit %d", c)
	}
	if h := lockHolder(t, e.locks, "sim-1"); h.PID != a.pid() {
		t.Fatalf("the lock file should still name the dead holder (pid %d), has %+v", a.pid(), h)
	}
	quick := e.write("quick.yaml", plan("quick", "  - name: work\n    run: echo working\n", powerOff))
	r := e.run(e.applyArgs(quick, filepath.Join(e.dir, "b"), "--lock-wait", "0s")...)
	if r.code != 0 {
		t.Fatalf("run after a crashed holder: %s", r)
	}
	if strings.Contains(r.stdout, "busy") {
		t.Errorf("the lock of a dead holder was seen as busy:\n%s", r.stdout)
	}
}

func TestApplyConsoleDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	boards := e.write("boards.yaml", `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    drivers:
      sim: {password: sim-password, faults: {console-drop-after: 3s}}
`)
	pf := e.write("drop.yaml", plan("drop",
		"  - name: past the drop\n    sleep: 4s\n  - name: after the drop\n    run: echo still here\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art, "--boards", boards)...)
	if r.code != 3 {
		t.Fatalf("want exit 3 (infrastructure), got %s", r)
	}
	rep := readReport(t, e.art)
	if rep.Status != result.Error || rep.Class != "infrastructure" {
		t.Errorf("report: status %q class %q, want error infrastructure", rep.Status, rep.Class)
	}
	if len(rep.Steps) != 4 || rep.Steps[3].Status != result.Error {
		t.Errorf("report steps: %+v", rep.Steps)
	}
	clog, err := os.ReadFile(filepath.Join(e.art, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(clog), "Linux version") || !strings.Contains(string(clog), "root@sim:~#") {
		t.Errorf("console.log lost the boot log:\n%s", clog)
	}
}

func TestApplyFinallyStepsAllRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("fin.yaml", plan("finally",
		"  - name: work\n    run: echo working\n",
		"  - name: broken cleanup\n    run: sh -c 'exit 7'\n  - name: after the broken one\n    log: still cleaning\n"+powerOff))
	r := e.run(e.applyArgs(pf, e.art)...)
	if r.code != 1 {
		t.Fatalf("want exit 1, got %s", r)
	}
	rep := readReport(t, e.art)
	var got []string
	for _, f := range rep.Finally {
		got = append(got, f.Name+"="+string(f.Status))
	}
	want := "broken cleanup=failed after the broken one=passed power off=passed"
	if strings.Join(got, " ") != want {
		t.Errorf("finally steps: %v, want %s", got, want)
	}
	for _, s := range rep.Steps {
		if s.Status != result.Passed {
			t.Errorf("step %q: %s", s.Name, s.Status)
		}
	}
}

func TestApplySecretsNeverLeak(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{`s3cr3t-VALUE-42`, `s3cr%t\VALUE-42`} {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			pf := e.write("secret.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
name: secrets
params:
  token: {type: string, secret: true, required: true}
steps:
  - power: on
  - wait-for-login: {username: root, password: sim-password}
  - name: echo the token
    run: {command: 'printf "%s\n" "$T"', env: {T: "${{ params.token }}"}}
  - name: log the token
    log: "the token is ${{ params.token }}"
  - name: token in a failure
    continue-on-error: true
    run: {command: 'printf "bad %s\n" "$T"; false', env: {T: "${{ params.token }}"}}
  - name: save the token
    run: {command: 'printf "%s\n" "$T" > token.txt', env: {T: "${{ params.token }}"}}
  - name: collect the token
    collect: {paths: token.txt, to: files}
finally:
  - power: off
`)
			r := e.run(e.applyArgs(pf, e.art, "--set", "token="+secret)...)
			if r.code != 0 {
				t.Fatalf("want exit 0, got %s", r)
			}
			if _, err := os.Stat(filepath.Join(e.art, "files", "token.txt")); err != nil {
				t.Fatalf("the token file was not collected: %v", err)
			}
			for _, what := range []string{secret, "sim-password"} {
				if hits := grepTree(t, e.art, what); len(hits) > 0 {
					t.Errorf("%q found in %v", what, hits)
				}
				if strings.Contains(r.stdout, what) || strings.Contains(r.stderr, what) {
					t.Errorf("%q found in the output", what)
				}
			}
			// The form the shell command is typed in (printf-quoted) must
			// not show either.
			quoted := strings.NewReplacer(`%`, `%%`, `\`, `\\`).Replace(secret)
			if quoted != secret {
				if hits := grepTree(t, e.art, quoted); len(hits) > 0 {
					t.Errorf("quoted form %q found in %v", quoted, hits)
				}
			}
			for _, f := range []string{"console.log", "report.json", "report.html", "files/token.txt", "plan.rendered.yaml"} {
				if b, _ := os.ReadFile(filepath.Join(e.art, f)); !strings.Contains(string(b), "***") {
					t.Errorf("%s has no *** mask", f)
				}
			}
			if !strings.Contains(r.stdout, "the token is ***") {
				t.Errorf("the log step is not masked in the output:\n%s", r.stdout)
			}
		})
	}
}

func TestApplyLockWaitExceeded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	holder := e.write("holder.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: the-holder\nsteps:\n  - name: hold\n    sleep: 60s\n")
	h := e.start(e.applyArgs(holder, filepath.Join(e.dir, "h"))...)
	h.waitRun("hold")
	t.Cleanup(func() { _ = h.cmd.Process.Signal(syscall.SIGTERM); h.wait() })

	pf := e.write("waiter.yaml", plan("waiter", "", ""))
	r := e.run(e.applyArgs(pf, e.art, "--lock-wait", "1s")...)
	if r.code != 3 {
		t.Fatalf("want exit 3, got %s", r)
	}
	for _, want := range []string{"busy", `plan "the-holder"`, fmt.Sprintf("pid %d", h.pid())} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	rep := readReport(t, e.art)
	if rep.Status != result.Error || rep.ExitCode != 3 || !strings.Contains(rep.Error, "the-holder") {
		t.Errorf("report: status %q exit %d error %q", rep.Status, rep.ExitCode, rep.Error)
	}
	readJUnit(t, e.art)
	if page := readPage(t, e.art, "error"); !strings.Contains(page, "the-holder") {
		t.Errorf("report.html does not say why the run did not start")
	}
}

func TestApplyJSONOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("json.yaml", plan("json", "  - name: say hi\n    run: echo hi\n  - log: done\n", powerOff))
	r := e.run(e.applyArgs(pf, e.art, "--output", "json")...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	evs := events(t, r.stdout)
	if len(evs) < 4 {
		t.Fatalf("only %d events", len(evs))
	}
	last := evs[len(evs)-1]
	if last.Type != "run-end" || last.Result == nil || last.Result.Status != result.Passed || last.Status != result.Passed {
		t.Fatalf("last event is not a passed run-end: %+v", last)
	}
	starts, ends := 0, 0
	for _, ev := range evs {
		switch ev.Type {
		case "step-start":
			starts++
		case "step-end":
			ends++
		case "run-start", "log", "console", "run-end":
		default:
			t.Errorf("unknown event type %q", ev.Type)
		}
		if ev.Time.IsZero() {
			t.Errorf("event without time: %+v", ev)
		}
	}
	if starts != 5 || ends != 5 {
		t.Errorf("%d step-start and %d step-end events, want 5 each", starts, ends)
	}
	if strings.Contains(r.stdout, "RUN ") || strings.Contains(r.stdout, "Artifacts:") {
		t.Errorf("text output mixed into JSON lines:\n%s", r.stdout)
	}
}

// TestApplyAssignedBoard: JSPLAN_BOARD (how a Kubernetes ResourceClaim
// hands a pod its board) picks the board, and a board that does not satisfy
// the plan's own selector is an invalid run (exit 2) naming the mismatch.
func TestApplyAssignedBoard(t *testing.T) {
	e := newEnv(t)
	boards := e.write("two.yaml", testBoards+`  - name: sim-2
    labels: {kind: bench}
    drivers:
      sim: {password: sim-password, boot-delay: 5ms}
`)
	p := e.write("virtual.yaml", strings.Replace(plan("assigned", "", ""), "steps:", "board:\n  labels: {kind: virtual}\nsteps:", 1))

	t.Setenv("JSPLAN_BOARD", "sim-2")
	r := e.run(e.applyArgs(p, e.art, "--boards", boards)...)
	if r.code != 2 || !strings.Contains(r.stderr, `board "sim-2" (from --board/JSPLAN_BOARD) does not satisfy the plan's selector kind=virtual: label kind: the plan wants "virtual", the board has "bench"`) ||
		!strings.Contains(r.stderr, "virtual.yaml:4:1: error: board") {
		t.Fatalf("want exit 2 naming the label mismatch at the plan's board key, got %s", r)
	}

	t.Setenv("JSPLAN_BOARD", "sim-1")
	r = e.run(e.applyArgs(p, e.art, "--boards", boards)...)
	if r.code != 0 {
		t.Fatalf("want a passing run on sim-1, got %s", r)
	}
	if rep := readReport(t, e.art); rep.Board != "sim-1" {
		t.Errorf("ran on %q, want sim-1", rep.Board)
	}
}
