package htmlreport

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/result"
)

// logText is a log line's text after its time: a note right after it, a
// board's line after a space.
func logText(s string) string {
	if strings.HasPrefix(s, console.NotePrefix) {
		return s
	}
	return " " + s
}

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// sampleResult is a failed run: a group with a retried child, a step whose
// console printed a fail-on pattern, a step that did not run, and finally.
func sampleResult() *engine.Result {
	return &engine.Result{
		Plan: "nightly", File: "plans/nightly.yaml", Board: "rig-3", Status: result.Failed, ExitCode: 1,
		Summary: "failed: 3 of 6 steps passed", Start: t0, Seconds: 10, Version: "v1.2.3",
		Command: "jsplan apply plans/nightly.yaml --set 'password=***'",
		Images:  []engine.Image{{Step: "1.1", Path: "out/img.raw", Format: "raw", Size: 4 << 20, SHA256: strings.Repeat("ab", 32)}},
		Steps: []*engine.StepResult{
			{Index: "1", Name: "boot", Type: "group", Status: result.Passed, Attempts: 1, Start: at(0.5), Seconds: 4,
				Children: []*engine.StepResult{
					{Index: "1.1", Name: "power on", Type: "power", Status: result.Passed, Attempts: 1, Start: at(0.5), Seconds: 0.5},
					{Index: "1.2", Name: "log in", Type: "wait-for-login", Status: result.Passed, Attempts: 2, Start: at(2), Seconds: 2},
				}},
			{Index: "2", Name: "kunit", Type: "run", Status: result.Failed, Attempts: 1, Start: at(5), Seconds: 3,
				Error: `console printed "Kernel panic - not syncing: boom" (fail-on pattern "Kernel panic")`,
				Tests: []*result.TestCase{{Suite: "kunit", Name: "example", Status: result.Failed, Children: []*result.TestCase{
					{Name: "example_simple_test", Status: result.Passed}, {Name: "example_skip_test", Status: result.Skipped},
					{Name: "example_fail_test", Status: result.Failed, Message: "expected 1 == 2"}}}}},
			{Index: "3", Name: "collect", Type: "collect", Status: result.Skipped},
		},
		Finally: []*engine.StepResult{
			{Index: "f.1", Name: "power off", Type: "power", Status: result.Passed, Attempts: 1, Start: at(9), Seconds: 0.5},
		},
	}
}

// writeLog writes a console log in console.Log's format: lines are
// (seconds, text) pairs; a text starting "### " is jsplan's note.
func writeLog(t *testing.T, dir string, lines ...any) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, console.Header+"plan nightly, board rig-3, started %s\n", t0.Format(time.RFC3339Nano))
	for i := 0; i+1 < len(lines); i += 2 {
		fmt.Fprintf(&b, "[%9.3f]%s\n", lines[i].(float64), logText(lines[i+1].(string)))
	}
	if err := os.WriteFile(filepath.Join(dir, ConsoleFile), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func render(t *testing.T, dir string, res *engine.Result, opt Options) string {
	t.Helper()
	if err := Write(dir, res, opt); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sectionHTML returns the HTML of the console section with the given id.
func sectionHTML(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `<details id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no section %s", id)
	}
	j := strings.Index(page[i:], "\n</details>")
	return page[i : i+j]
}

// The console is cut into sections by step: a step's lines from its marker
// on, its parent's lines after it ended, an earlier attempt apart.
func TestConsoleSectionsFollowSteps(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir,
		0.1, "U-Boot 2024.01",
		0.5, "### step 1: boot",
		0.5, "### step 1.1: power on",
		0.6, "\x1b[1;32mrelay\x1b[0m clicks\x07",
		0.7, "Kernel panic notifier registered",
		1.0, "### step 1.2: log in",
		1.2, "login: attempt one",
		2.0, "### step 1.2: log in",
		3.9, "Welcome to rig-3",
		4.2, "boot group tail line",
		5.0, "### step 2: kunit",
		6.0, "Kernel panic - not syncing: boom",
		9.0, "### step f.1: power off",
		9.2, "reboot: Power down",
	)
	page := render(t, dir, sampleResult(), Options{})
	for id, want := range map[string][]string{
		"sec-0":   {"U-Boot 2024.01", "before the first step"},
		"con-1.1": {"relay clicks"},
		"con-1.2": {"Welcome to rig-3"},
		"con-2":   {"Kernel panic", "<mark>Kernel panic - not syncing: boom</mark>", "example_fail_test", "expected 1 == 2"},
		"con-f.1": {"reboot: Power down"},
		"con-3":   {"not run"},
	} {
		s := sectionHTML(t, page, id)
		for _, w := range want {
			if !strings.Contains(s, w) {
				t.Errorf("section %s lacks %q:\n%s", id, w, s)
			}
		}
	}
	// Only the failing step's lines are highlighted.
	if s := sectionHTML(t, page, "con-1.1"); !strings.Contains(s, "Kernel panic notifier registered") || strings.Contains(s, "<mark>") {
		t.Errorf("a line outside the failing step is highlighted:\n%s", s)
	}
	// The earlier attempt of 1.2 has its own section; the group's tail
	// line is back with the group.
	if !regexp.MustCompile(`(?s)an earlier attempt.*login: attempt one`).MatchString(page) {
		t.Errorf("the first attempt of 1.2 is not marked as an earlier attempt")
	}
	if strings.Contains(sectionHTML(t, page, "con-1.2"), "boot group tail line") {
		t.Errorf("a line printed after step 1.2 ended is in its section")
	}
	// Only the failing step's section is open; its bar is marked.
	if n := strings.Count(page, "\" open "); n != 1 || !strings.Contains(sectionHTML(t, page, "con-2"), " open ") {
		t.Errorf("%d sections open, want only con-2", n)
	}
	if !regexp.MustCompile(`<a class="tlrow st-failed failure[^"]*" href="#con-2"`).MatchString(page) {
		t.Errorf("the failing step's bar is not marked")
	}
	// One bar per step; the test cases nest under their suite.
	if n := strings.Count(page, `<span class="bar"`); n != 6 {
		t.Errorf("%d bars, want 6", n)
	}
	if !regexp.MustCompile(`(?s)<li class="tc t-failed"><span class="tstat">failed</span> <span class="muted">kunit:</span> example.*<ul class="tcs">.*t-passed.*example_simple_test.*t-skipped.*t-failed.*example_fail_test`).MatchString(page) {
		t.Errorf("test cases not rendered as a nested list")
	}
	// Retries show on the bar, and hovering tells the details.
	if !strings.Contains(page, `title="1.2 log in (wait-for-login): passed, 2.0s from &#43;2.0s, 2 attempts"`) || !strings.Contains(page, "↻2") {
		t.Errorf("the retried step's bar does not show its attempts")
	}
	// Header facts.
	for _, w := range []string{"v1.2.3", strings.Repeat("ab", 32), "out/img.raw", "--set &#39;password=***&#39;", "rig-3"} {
		if !strings.Contains(page, w) {
			t.Errorf("header lacks %q", w)
		}
	}
	// Self-contained: no URL the browser would fetch.
	for _, bad := range []string{"http://", "https://", "//fonts.", "src=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
}

// A 100 MB log gives a page of about 2 MB that keeps every step's start and
// end, the failure and the highlighted line, and says what it left out.
func TestLongConsoleIsCut(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 100 MB log")
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, ConsoleFile))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, console.Header+"plan nightly, board rig-3, started %s\n", t0.Format(time.RFC3339Nano))
	line := func(s float64, text string) { fmt.Fprintf(w, "[%9.3f]%s\n", s, logText(text)) }
	line(0.5, "### step 1: boot")
	line(0.5, "### step 1.1: power on")
	line(1.0, "### step 1.2: log in")
	line(2.0, "### step 1.2: log in")
	pad := strings.Repeat("x", 60)
	var size int64
	for i := 0; size < 50<<20; i++ {
		n, _ := fmt.Fprintf(w, "[%9.3f] boot noise %d %s\n", 2.0+float64(i)*1e-6, i, pad)
		size += int64(n)
	}
	line(3.9, "Welcome to rig-3")
	line(5.0, "### step 2: kunit")
	size = 0
	for i := 0; size < 50<<20; i++ {
		n, _ := fmt.Fprintf(w, "[%9.3f] test noise %d %s\n", 5.0+float64(i)*1e-6, i, pad)
		size += int64(n)
	}
	line(7.9, "Kernel panic - not syncing: boom")
	line(7.95, "---[ end Kernel panic ]---")
	line(9.0, "### step f.1: power off")
	line(9.2, "reboot: Power down")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	start := time.Now()
	page := render(t, dir, sampleResult(), Options{})
	t.Logf("100 MB log -> %d byte page in %s", len(page), time.Since(start).Round(time.Millisecond))
	if len(page) > 3<<20 {
		t.Errorf("the page has %d bytes", len(page))
	}
	for _, want := range []string{"Welcome to rig-3", "<mark>Kernel panic - not syncing: boom</mark>", "end <mark>Kernel panic</mark> ]",
		"reboot: Power down", "boot noise 0 ", "test noise 0 ", `left out here: lines`, `id="cutnote"`, `href="./console.log"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// Options.Redact masks what the page shows, the console too.
func TestRedactOption(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 0.5, "### step 1: boot", 0.6, "password is hunter2")
	res := sampleResult()
	res.Command = "jsplan apply x --set password=hunter2"
	page := render(t, dir, res, Options{Redact: func(s string) string { return strings.ReplaceAll(s, "hunter2", "***") }})
	if strings.Contains(page, "hunter2") {
		t.Errorf("the page holds the secret")
	}
	if !strings.Contains(page, "password is ***") {
		t.Errorf("the console line is missing")
	}
}

// Without console.log the page still shows the steps and says why.
func TestNoConsole(t *testing.T) {
	page := render(t, t.TempDir(), sampleResult(), Options{})
	if !strings.Contains(page, "No console: no console.log in the artifacts.") || !strings.Contains(page, `id="con-2"`) {
		t.Errorf("page without a console log:\n%s", page)
	}
	// A run that never started shows no console, not an older run's.
	dir := t.TempDir()
	writeLog(t, dir, 0.5, "### step 1: boot", 0.6, "an older run's line")
	res := &engine.Result{Plan: "nightly", Board: "rig-3", Status: result.Error, Start: t0,
		Error: "board rig-3 is busy", Summary: "error: the run did not start (board rig-3 is busy)"}
	page = render(t, dir, res, Options{})
	if strings.Contains(page, "an older run") || !strings.Contains(page, "No console: the run did not start.") || !strings.Contains(page, "board rig-3 is busy") {
		t.Errorf("page of a run that did not start:\n%s", page)
	}
}

// The trends page: one plot of every step's duration across runs, a table.
func TestHistory(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 3; i++ {
		res := sampleResult()
		res.Start = t0.Add(time.Duration(i) * time.Hour)
		res.Steps[0].Children[1].Seconds = float64(2 + i)
		dir := filepath.Join(root, fmt.Sprintf("run-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b := fmt.Sprintf(`{"plan":"nightly","board":"rig-3","status":"passed","start":%q,"duration_seconds":10,"steps":[{"index":"1","name":"log in","type":"wait-for-login","status":"passed","start":%q,"duration_seconds":%d}]}`,
			res.Start.Format(time.RFC3339Nano), res.Start.Format(time.RFC3339Nano), 2+i)
		if err := os.WriteFile(filepath.Join(dir, JSONFile), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(root, "h.html")
	n, err := WriteHistory(out, []string{root, filepath.Join(root, "missing")})
	if err != nil || n != 3 {
		t.Fatalf("WriteHistory: %d runs, %v", n, err)
	}
	b, _ := os.ReadFile(out)
	page := string(b)
	for _, want := range []string{"<svg class=\"plot\"", "1 log in: #3", "<td class=\"num\">4.0s</td>", "&#43;33%", "missing"} {
		if !strings.Contains(page, want) {
			t.Errorf("history page lacks %q", want)
		}
	}
}

// A board printing jsplan's notes makes no section of the page: the lines
// stay board lines in the step that printed them, the failing step keeps
// its output, and the page stays small.
func TestBoardCannotForgeNotes(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, ConsoleFile))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, console.Header+"plan nightly, board rig-3, started %s\n", t0.Format(time.RFC3339Nano))
	// The log's clock says 5.5 s: inside step 2 (5 s to 8 s).
	lg := console.NewLog(f, time.Now().Add(-5500*time.Millisecond), nil)
	lg.Note("step %s: %s", "2", "kunit")
	w := bufio.NewWriterSize(lg, 64<<10)
	for i := 0; i < 200000; i++ {
		w.WriteString("### step 1.2: log in\n")
	}
	w.WriteString("### logged out: all tests passed\nKernel panic - not syncing: boom\n")
	w.Flush()
	lg.Close()
	f.Close()
	// Step 2 lasts an hour here, so that writing the lines on a slow, busy
	// machine cannot carry them past its end: the test is about notes, not
	// time.
	res := sampleResult()
	res.Steps[1].Seconds = 3600
	res.Finally[0].Start = res.Steps[1].Start.Add(3601 * time.Second)
	res.Seconds = 3700
	page := render(t, dir, res, Options{})
	if len(page) > 4<<20 {
		t.Errorf("the page has %d bytes", len(page))
	}
	s := sectionHTML(t, page, "con-2")
	for _, want := range []string{"<mark>Kernel panic - not syncing: boom</mark>", "### logged out: all tests passed", "### step 1.2: log in"} {
		if !strings.Contains(s, want) {
			t.Errorf("step 2's section lacks %q", want)
		}
	}
	if n := strings.Count(page, "<details id="); n > 20 {
		t.Errorf("the page has %d sections", n)
	}
	if strings.Contains(page, `class="l n"`) && regexp.MustCompile(`class="l n"[^\n]*(logged out|step 1\.2)`).MatchString(page) {
		t.Errorf("a board line is shown as a note")
	}
	if strings.Contains(page, "between steps") {
		t.Errorf("the board's lines moved out of step 2")
	}
}

// Board-reported test cases and their output have a budget on the page;
// failures are listed before passing cases are.
func TestTestCasesBudget(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 5.0, "### step 2: kunit", 6.0, "x")
	res := sampleResult()
	var cases []*result.TestCase
	for i := 0; i < 20000; i++ {
		cases = append(cases, &result.TestCase{Name: fmt.Sprintf("case_%d", i), Status: result.Passed, Output: strings.Repeat("o", 4096)})
	}
	cases = append(cases, &result.TestCase{Name: "the_failing_case", Status: result.Failed, Output: "FAIL-OUTPUT"})
	res.Steps[1].Tests = []*result.TestCase{{Suite: "big", Name: "big", Status: result.Failed, Children: cases}}
	page := render(t, dir, res, Options{})
	if len(page) > 4<<20 {
		t.Errorf("the page has %d bytes", len(page))
	}
	for _, want := range []string{"the_failing_case", "case_0<", "more cases, not listed here: see report.json"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// A log of an older version (no "v2" in its header) still has its notes.
func TestLegacyConsoleLog(t *testing.T) {
	dir := t.TempDir()
	log := "# jsplan console log: plan nightly, board rig-3, started " + t0.Format(time.RFC3339Nano) + "\n" +
		"[    5.000] ### step 2: kunit\n[    6.000] Kernel panic - not syncing: boom\n"
	if err := os.WriteFile(filepath.Join(dir, ConsoleFile), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := sectionHTML(t, render(t, dir, sampleResult(), Options{}), "con-2"); !strings.Contains(s, "<mark>Kernel panic") {
		t.Errorf("step 2's section of an old log:\n%s", s)
	}
}
