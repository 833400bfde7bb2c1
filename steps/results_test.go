package steps_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/results"
)

// ktapSuite is a command that prints a small KTAP suite on the board: two
// passing cases, a skipped one and a failing one, and exits 1 as a test
// runner does when a case failed.
const ktapSuite = `printf 'KTAP version 1\n1..4\n'; ` +
	`printf 'ok 1 console\n'; printf '# storage: probing mmc0\n'; printf 'ok 2 storage\n'; ` +
	`printf 'ok 3 network # SKIP no cable\n'; ` +
	`printf '# watchdog: no reset after 2s\nnot ok 4 watchdog\n'; false`

func tests(t *testing.T, s *engine.StepResult) string {
	t.Helper()
	var b strings.Builder
	var walk func([]*result.TestCase, int)
	walk = func(list []*result.TestCase, depth int) {
		for _, c := range list {
			fmt.Fprintf(&b, "%s%s %s\n", strings.Repeat("  ", depth), c.Status, c.Name)
			walk(c.Children, depth+1)
		}
	}
	walk(s.Tests, 0)
	return b.String()
}

// The sim board's shell prints KTAP: every case lands in the step's result
// and the allowed failure does not fail the step, though the command
// exited 1.
func TestRunResultsOnBoard(t *testing.T) {
	plan := head + login + fmt.Sprintf(`  - name: allowed
    run:
      command: %q
      results: {format: ktap, allow-failures: [watch*]}
  - name: strict
    run:
      command: %q
      results: ktap
`, ktapSuite, ktapSuite)
	r := execute(t, "", "", plan, true, nil)
	ok := r.step(t, "allowed")
	if ok.Status != result.Passed {
		t.Fatalf("allowed: %s %s", ok.Status, ok.Error)
	}
	if got, want := tests(t, ok), "passed console\npassed storage\nskipped network\nfailed watchdog\n"; got != want {
		t.Fatalf("tests:\n%s\nwant:\n%s", got, want)
	}
	w := ok.Tests[3]
	if !w.Allowed || !strings.Contains(w.Output, "no reset after 2s") {
		t.Fatalf("watchdog case: %+v", w)
	}
	if !strings.Contains(ok.Tests[1].Output, "probing mmc0") {
		t.Fatalf("storage output: %q", ok.Tests[1].Output)
	}
	strict := r.step(t, "strict")
	if strict.Status != result.Failed || !strings.Contains(strict.Error, "1 test case failed: watchdog") {
		t.Fatalf("strict: %s %q", strict.Status, strict.Error)
	}
	if len(strict.Tests) != 4 {
		t.Fatalf("strict tests: %s", tests(t, strict))
	}
}

// A board that hangs in the middle of a suite: the step times out, and the
// cases printed before are kept with the rest of the plan as an error.
func TestRunResultsBoardHangsMidSuite(t *testing.T) {
	plan := head + login + `  - name: hangs
    timeout: 3s
    run:
      command: "printf 'KTAP version 1\n1..3\nok 1 first\n'; sleep 60; printf 'ok 2 second\n'"
      results: ktap
  - name: board still usable
    run: echo alive
`
	r := execute(t, "", "", plan, true, nil)
	s := r.step(t, "hangs")
	if s.Status != result.Failed || !strings.Contains(s.Error, "timed out") {
		t.Fatalf("hangs: %s %q", s.Status, s.Error)
	}
	if got, want := tests(t, s), "passed first\nerror tests 2..3 (no result)\n"; got != want {
		t.Fatalf("tests:\n%s\nwant:\n%s", got, want)
	}
}

// The exit status still counts when no case failed, and when the plan
// asks for one; a command that prints no results fails.
func TestRunResultsExitStatus(t *testing.T) {
	plan := head + login + `  - name: crashed after passing
    continue-on-error: true
    run: {command: "printf '1..1\nok 1 a\n'; sh -c 'exit 3'", results: tap}
  - name: explicit status
    continue-on-error: true
    run: {command: "printf '1..1\nnot ok 1 a\n'; false", exit-code: 0, results: {format: tap, allow-failures: ["*"]}}
  - name: no results
    continue-on-error: true
    run: {command: "echo hello", results: ktap}
  - name: threshold
    run: {command: "printf '1..3\nnot ok 1 a\nnot ok 2 b\nok 3 c\n'", results: {format: tap, max-failures: 2}}
`
	r := execute(t, "", "", plan, true, nil)
	for name, want := range map[string]string{"crashed after passing": "exited with status 3",
		"explicit status": "exited with status 1", "no results": "no ktap test results found"} {
		if s := r.step(t, name); s.Status != result.Failed || !strings.Contains(s.Error, want) {
			t.Errorf("%s: %s %q", name, s.Status, s.Error)
		}
	}
	if s := r.step(t, "threshold"); s.Status != result.Passed || len(s.Tests) != 3 {
		t.Errorf("threshold: %s %q %d", s.Status, s.Error, len(s.Tests))
	}
}

// KUnit prints its results at boot, before any step waits: a console step
// reads from what is pending until expect matches.
func TestConsoleResults(t *testing.T) {
	plan := head + login + `  - console:
      send: "printf 'KTAP version 1\\n1..2\\nok 1 a\\nnot ok 2 b # SKIP off\\n'; echo '# Tot''als: pass:1'<ENTER>"
      expect: "# Totals"
      results: ktap
`
	r := execute(t, "", "", plan, true, nil)
	s := r.res.Steps[2]
	if s.Status != result.Passed || tests(t, s) != "passed a\nskipped b\n" {
		t.Fatalf("console: %s %q\n%s", s.Status, s.Error, tests(t, s))
	}
}

// Results from a host command (TAP) and from collected files (JUnit from
// pytest): every case reported, the step failing on failing ones.
func TestLocalAndCollectResults(t *testing.T) {
	dir := t.TempDir()
	tap, err := os.ReadFile(filepath.Join("..", "internal", "results", "testdata", "test-more.tap"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sample.tap"), tap, 0o644); err != nil {
		t.Fatal(err)
	}
	junit, err := os.ReadFile(filepath.Join("testdata", "pytest.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pytest.xml"), junit, 0o644); err != nil {
		t.Fatal(err)
	}
	plan := head + `steps:
  - name: prove
    continue-on-error: true
    local: {command: "cat sample.tap; exit 1", results: tap}
  - name: pytest strict
    continue-on-error: true
    collect: {paths: pytest.xml, from: local, results: junit}
  - name: pytest allowed
    collect: {paths: pytest.xml, from: local, to: again, results: {format: junit, allow-failures: [test_mmc_size, "*led"]}}
`
	r := execute(t, dir, "", plan, false, nil)
	p := r.step(t, "prove")
	if p.Status != result.Failed || !strings.Contains(p.Error, "2 test cases failed: storage/partition table as expected, kernel is the one we flashed") {
		t.Fatalf("prove: %s %q", p.Status, p.Error)
	}
	if len(p.Tests) != 6 {
		t.Fatalf("prove tests:\n%s", tests(t, p))
	}
	s := r.step(t, "pytest strict")
	if s.Status != result.Failed || !strings.Contains(s.Error, "2 test cases failed: pytest/test_mmc_size, pytest/test_led") {
		t.Fatalf("pytest strict: %s %q", s.Status, s.Error)
	}
	a := r.step(t, "pytest allowed")
	if a.Status != result.Passed || len(a.Tests) != 1 || len(a.Tests[0].Children) != 8 {
		t.Fatalf("pytest allowed: %s %q\n%s", a.Status, a.Error, tests(t, a))
	}
	v := results.Judge(a.Tests, results.Policy{})
	if v.XFail != 1 || v.Skip != 1 || v.Error != 1 || v.Fail != 1 || v.Pass != 4 {
		t.Fatalf("counts: %+v", v)
	}
}

// Mistakes in the option are reported at their place in the plan.
func TestResultsOptionDiagnostics(t *testing.T) {
	plan := head + `steps:
  - console: {send: "x", results: ktap}
  - run: {command: "x", results: {format: xunit}}
  - run: {command: "x", results: {allow-failures: [a]}}
  - run: {command: "x", results: {format: tap, max-failures: -1}}
  - local: {command: "x", results: nope}
  - collect: {paths: a, results: {format: junit, allow-failures: "one"}}
`
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	l.LoadPlanBytes("plan.yaml", []byte(plan))
	got := l.Diagnostics().Error()
	for _, want := range []string{
		`plan.yaml:5:35: results need expect`,
		`plan.yaml:6:43: format must be one of "ktap", "tap", "junit"`,
		`plan.yaml:7:25: missing required key "format"`,
		`plan.yaml:8:62: must be >= 0`,
		`plan.yaml:9:36: results must be one of ktap, tap, junit, or a mapping`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "plan.yaml:10:") {
		t.Errorf("a valid collect results option was refused:\n%s", got)
	}
}

// A JUnit file written on the board, collected over the console: its
// cases are the step's.
func TestCollectResultsFromBoard(t *testing.T) {
	xml := `<testsuite name="board"><testcase name="boots"/><testcase name="ping"><skipped message="no cable"/></testcase>` +
		`<testcase name="rtc"><failure message="no rtc0">rtc: no /dev/rtc0</failure></testcase></testsuite>`
	plan := head + login + fmt.Sprintf(`  - run: |
      printf '%%s' '%s' > results.xml
  - name: collect results
    collect: {paths: results.xml, to: results, results: {format: junit, allow-failures: [board/rtc]}}
`, xml)
	r := execute(t, "", "", plan, true, nil)
	s := r.step(t, "collect results")
	if s.Status != result.Passed {
		t.Fatalf("collect: %s %q", s.Status, s.Error)
	}
	if got, want := tests(t, s), "failed board\n  passed boots\n  skipped ping\n  failed rtc\n"; got != want {
		t.Fatalf("tests:\n%s\nwant:\n%s", got, want)
	}
	if rtc := s.Tests[0].Children[2]; !rtc.Allowed || rtc.Message != "no rtc0" || rtc.Output != "rtc: no /dev/rtc0" {
		t.Fatalf("rtc: %+v", rtc)
	}
	if _, err := os.Stat(filepath.Join(r.artifacts, "results", "results.xml")); err != nil {
		t.Fatal(err)
	}
}
