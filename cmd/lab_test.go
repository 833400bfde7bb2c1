package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/health"
)

// labBoards is an inventory of two virtual boards of one kind, with the
// repository's default health check for the kind; faultA is sim-a's sim
// faults (e.g. "login-refused: true"), empty for none.
func labBoards(t *testing.T, faultA string) string {
	t.Helper()
	check, err := filepath.Abs("../plans/lib/health.yaml")
	if err != nil {
		t.Fatal(err)
	}
	faults := ""
	if faultA != "" {
		faults = ", faults: {" + faultA + "}"
	}
	return `apiVersion: jsplan.dev/v1
kind: Boards
health:
  - labels: {kind: virtual}
    plan: ` + check + `
    every: 24h
    after-failures: 2
boards:
  - name: sim-a
    labels: {kind: virtual}
    drivers:
      sim: {password: demo-password, boot-delay: 1ms` + faults + `}
  - name: sim-b
    labels: {kind: virtual}
    drivers:
      sim: {password: demo-password, boot-delay: 1ms}
`
}

const labPlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: boot
board: {labels: {kind: virtual}}
steps:
  - power: on
  - wait-for-login: {username: root, password: demo-password}
  - run: {command: "echo up", expect-output: up}
finally:
  - power: off
`

func (e *testEnv) healthRecord(board string) health.Record {
	e.t.Helper()
	s, err := health.Open(e.locks)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := s.Get(board)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *testEnv) boardsList() map[string]labRow {
	e.t.Helper()
	r := e.run("boards", "list", "--boards", e.boards, "--lock-dir", e.locks, "-o", "json")
	if r.code != 0 {
		e.t.Fatalf("boards list: %s", r)
	}
	var rows []boardRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		e.t.Fatalf("boards list -o json: %v\n%s", err, r.stdout)
	}
	out := map[string]labRow{}
	for _, row := range rows {
		out[row.Name] = row.labRow
	}
	return out
}

// A virtual board made to fail its health check goes bad; the next apply
// by label skips it (and says so) and takes the other board; naming it is
// refused unless --allow-bad.
func TestHealthCheckTakesBadBoardOut(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("boards.yaml", labBoards(t, "login-refused: true"))
	plan := e.write("plan.yaml", labPlan)
	hart := filepath.Join(e.dir, "health")

	list := e.boardsList()
	if list["sim-a"].Condition != health.Unknown || list["sim-a"].CheckDue != "never checked" {
		t.Fatalf("before any check: %+v", list["sim-a"])
	}
	r := e.run("boards", "health", "--boards", e.boards, "--lock-dir", e.locks, "--state-dir", e.state, "--artifacts", hart)
	if r.code != 1 || !strings.Contains(r.stderr, "1 health check failed") {
		t.Fatalf("boards health: want exit 1 for sim-a's failing check: %s", r)
	}
	if a, b := e.healthRecord("sim-a"), e.healthRecord("sim-b"); a.State != health.Bad || b.State != health.Good ||
		a.LastCheck == nil || a.LastCheck.Passed || b.LastCheck == nil || !b.LastCheck.Passed {
		t.Fatalf("after the checks: sim-a %+v, sim-b %+v", a, b)
	}
	if rep := readReport(t, filepath.Join(hart, "sim-a")); rep.Board != "sim-a" || rep.Plan != "health" || rep.ExitCode == 0 {
		t.Fatalf("sim-a's check report: board %s plan %s exit %d", rep.Board, rep.Plan, rep.ExitCode)
	}
	list = e.boardsList()
	if list["sim-a"].Condition != health.Bad || list["sim-a"].LastCheck == nil || list["sim-b"].Condition != health.Good || list["sim-b"].CheckDue != "" {
		t.Fatalf("boards list after the checks: %+v", list)
	}
	text := e.run("boards", "list", "--boards", e.boards, "--lock-dir", e.locks)
	if !strings.Contains(text.stdout, "CONDITION") || !strings.Contains(text.stdout, "failed: ") {
		t.Fatalf("boards list shows no condition or last check:\n%s", text.stdout)
	}
	// Not due again: nothing runs.
	if r := e.run("boards", "health", "sim-b", "--boards", e.boards, "--lock-dir", e.locks, "--state-dir", e.state, "--artifacts", hart, "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"ran": false`) {
		t.Fatalf("a board checked just now is not due: %s", r)
	}

	art := filepath.Join(e.dir, "run")
	r = e.run(e.applyArgs(plan, art, "--console=false")...)
	if r.code != 0 || !strings.Contains(r.stdout, "skipping board sim-a: bad (health check failed") {
		t.Fatalf("apply by label: %s", r)
	}
	if rep := readReport(t, art); rep.Board != "sim-b" {
		t.Fatalf("apply by label ran on %s, want sim-b", rep.Board)
	}

	r = e.run(e.applyArgs(plan, art, "--board", "sim-a")...)
	if r.code != 3 || !strings.Contains(r.stderr, "board sim-a is bad") || !strings.Contains(r.stderr, "--allow-bad") {
		t.Fatalf("a bad board named explicitly must be refused: %s", r)
	}
	r = e.run(e.applyArgs(plan, art, "--board", "sim-a", "--allow-bad", "--console=false")...)
	if rep := readReport(t, art); rep.Board != "sim-a" || r.code == 0 {
		t.Fatalf("--allow-bad runs on sim-a (whose login is refused): board %s, %s", rep.Board, r)
	}

	// The checks' parameters come from --set (and --params-file): a wrong
	// password fails sim-b's check.
	r = e.run("boards", "health", "--now", "sim-b", "--set", "password=wrong-password", "--boards", e.boards, "--lock-dir", e.locks, "--state-dir", e.state, "--artifacts", hart)
	if r.code != 1 || e.healthRecord("sim-b").State != health.Bad {
		t.Fatalf("boards health --set password=...: %s", r)
	}
}

// A board whose runs end twice in a row with an infrastructure error is
// due for its check, which finds it bad.
func TestInfraFailuresMakeACheckDue(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("boards.yaml", labBoards(t, ""))
	plan := e.write("plan.yaml", strings.Replace(labPlan, "{labels: {kind: virtual}}", "{name: sim-a}", 1))
	hart := filepath.Join(e.dir, "health")
	healthRun := func(want int) cliRun {
		r := e.run("boards", "health", "sim-a", "--boards", e.boards, "--lock-dir", e.locks, "--state-dir", e.state, "--artifacts", hart, "-o", "json")
		if r.code != want {
			t.Fatalf("boards health: want exit %d: %s", want, r)
		}
		return r
	}
	healthRun(0)
	if rec := e.healthRecord("sim-a"); rec.State != health.Good {
		t.Fatalf("first check: %+v", rec)
	}
	// The power switch breaks.
	e.boards = e.write("boards.yaml", labBoards(t, "power-fail: true"))
	art := filepath.Join(e.dir, "run")
	if r := e.run(e.applyArgs(plan, art, "--console=false")...); r.code != 3 || !strings.Contains(r.stdout, "board sim-a is now suspect (1 infrastructure failure in a row)") {
		t.Fatalf("first exit 3: %s", r)
	}
	if r := healthRun(0); !strings.Contains(r.stdout, `"ran": false`) {
		t.Fatalf("one failure of two: no check yet: %s", r)
	}
	if e.boardsList()["sim-a"].Condition != health.Suspect {
		t.Fatal("sim-a should be suspect")
	}
	if r := e.run(e.applyArgs(plan, art, "--console=false")...); r.code != 3 {
		t.Fatalf("second exit 3: %s", r)
	}
	if due := e.boardsList()["sim-a"].CheckDue; !strings.Contains(due, "2 infrastructure failures in a row") {
		t.Fatalf("boards list: check due %q", due)
	}
	r := healthRun(1)
	if !strings.Contains(r.stdout, `"ran": true`) || !strings.Contains(r.stdout, "2 infrastructure failures in a row") {
		t.Fatalf("the due check did not run: %s", r)
	}
	if rec := e.healthRecord("sim-a"); rec.State != health.Bad || rec.InfraFailures != 0 || !strings.Contains(rec.LastCheck.Reason, "power-fail") {
		t.Fatalf("after the failing check: %+v", rec)
	}
}

// --retry-infra moves to a second board after a forced power failure; the
// reports keep both attempts. A test failure is never retried.
func TestRetryInfraOnAnotherBoard(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("boards.yaml", labBoards(t, "power-fail: true"))
	plan := e.write("plan.yaml", labPlan)
	art := filepath.Join(e.dir, "run")
	r := e.run(e.applyArgs(plan, art, "--retry-infra", "2", "--console=false")...)
	if r.code != 0 || !strings.Contains(r.stdout, "retrying (1 of 2) on sim-b") {
		t.Fatalf("apply --retry-infra: %s", r)
	}
	rep := readReport(t, art)
	if rep.Board != "sim-b" || rep.Status != result.Passed || len(rep.Attempts) != 2 {
		t.Fatalf("report.json: board %s status %s attempts %+v", rep.Board, rep.Status, rep.Attempts)
	}
	a1, a2 := rep.Attempts[0], rep.Attempts[1]
	if a1.Board != "sim-a" || a1.ExitCode != 3 || !strings.Contains(a1.Reason, "power-fail") || a1.Dir != "attempt-1" ||
		a2.Board != "sim-b" || a2.ExitCode != 0 || a2.Dir != "" {
		t.Fatalf("attempts: %+v", rep.Attempts)
	}
	if first := readReport(t, filepath.Join(art, "attempt-1")); first.Board != "sim-a" || first.ExitCode != 3 {
		t.Fatalf("attempt-1/report.json: board %s exit %d", first.Board, first.ExitCode)
	}
	if b, err := os.ReadFile(filepath.Join(art, "attempt-1", "console.log")); err != nil || !strings.Contains(string(b), "board sim-a") {
		t.Fatalf("attempt-1/console.log: %v", err)
	}
	j := readJUnit(t, art)
	found := false
	for _, c := range j.Suites[0].Cases {
		if c.Name == "attempt 1 on board sim-a" && c.Skipped != nil && strings.Contains(c.Skipped.Message, "power-fail") {
			found = true
		}
	}
	if !found || j.Suites[0].Property("attempt.1") == "" || !strings.Contains(j.Suites[0].Property("attempt.2"), "board sim-b: passed") {
		t.Fatalf("junit.xml lacks the attempts: %+v", j.Suites[0])
	}
	html, err := os.ReadFile(filepath.Join(art, "report.html"))
	if err != nil || !strings.Contains(string(html), `href="attempt-1/report.html"`) || !strings.Contains(string(html), "<b>sim-a</b>: error (exit 3)") {
		t.Fatalf("report.html lacks the attempts (%v)", err)
	}
	if rec := e.healthRecord("sim-a"); rec.State != health.Suspect {
		t.Fatalf("the failing board becomes suspect: %+v", rec)
	}

	// A failing test is not the lab's fault: no retry.
	fail := e.write("fail.yaml", strings.Replace(labPlan, `expect-output: up`, `expect-output: down`, 1))
	art2 := filepath.Join(e.dir, "run2")
	r = e.run(e.applyArgs(fail, art2, "--retry-infra", "2", "--board", "sim-b", "--console=false")...)
	if r.code != 1 || strings.Contains(r.stdout, "retrying") {
		t.Fatalf("a test failure must not be retried: %s", r)
	}
	if _, err := os.Stat(filepath.Join(art2, "attempt-1")); !os.IsNotExist(err) || len(readReport(t, art2).Attempts) != 0 {
		t.Fatal("a single attempt keeps no attempt-1/ and no attempts list")
	}
}
