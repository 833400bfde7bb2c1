package results

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine/result"
)

// A KUnit run as a board's console shows it at boot: kernel timestamps,
// kernel messages around the results, suites nested by four spaces and a
// parameterised test nested one level more.
func TestKTAPKUnitBootLog(t *testing.T) {
	cases := parseFile(t, "ktap", "kunit-boot.ktap")
	wantTree(t, cases, `
failed board-gpio
  passed gpio_request_free
  failed gpio_irq_mapping
  skipped gpio_pinmux [pinctrl is not built in]
passed board-clk
  passed clk_rate_param
    passed 24000000
    passed 48000000
  passed clk_gate_toggle
`)
	// KTAP prints a test's messages before its result.
	if out := find(t, cases, "board-gpio/gpio_irq_mapping").Output; !strings.Contains(out, "EXPECTATION FAILED at drivers/gpio/gpio-board-kunit.c:88") ||
		!strings.Contains(out, "irq == 17") || strings.Contains(out, "[") {
		t.Fatalf("output of gpio_irq_mapping: %q", out)
	}
	if c := find(t, cases, "board-clk/clk_rate_param/48000000"); c.Suite != "clk_rate_param" {
		t.Fatalf("suite = %q", c.Suite)
	}
	if out := find(t, cases, "board-gpio").Output; !strings.Contains(out, "# board-gpio: pass:1 fail:1 skip:1 total:3") {
		t.Fatalf("suite output: %q", out)
	}
}

// The shape of the kselftest runner: each test's own TAP is commented out
// ("# ok 1 ..."), only the runner's results count; XFAIL is an expected
// failure; the diagnostic after '#' is the message.
func TestKTAPKselftest(t *testing.T) {
	cases := parseFile(t, "ktap", "kselftest.ktap")
	wantTree(t, cases, `
passed selftests: timers: posix_timers
failed selftests: timers: rtcpie [exit=1]
skipped selftests: timers: adjtick
xfail selftests: timers: set-tz [settimeofday tz is not supported]
`)
	if out := find(t, cases, "selftests: timers: rtcpie").Output; !strings.Contains(out, "could not open /dev/rtc0") {
		t.Fatalf("output: %q", out)
	}
}

// The nesting example of the KTAP specification (rewritten): two spaces per
// level, subtests without names until their result line.
func TestKTAPSpecNesting(t *testing.T) {
	wantTree(t, parseFile(t, "ktap", "ktap-spec.ktap"), `
failed board_test
  passed uart_suite
    passed probe
  passed dma_suite
    skipped dma_map [no iommu]
    passed dma_unmap
  failed i2c_suite
    passed i2c_scan
    failed i2c_read
    skipped i2c_write [bus is read only]
`)
}

// A board that dies in the middle of a suite: the cases seen so far are
// kept, the open subtest and the rest of each plan are errors.
func TestKTAPBoardDiesMidSuite(t *testing.T) {
	wantTree(t, parseFile(t, "ktap", "kunit-cut.ktap"), `
passed mm
  passed alloc_pages
  passed free_pages
error sched [the output ended before this test's result]
  passed wakeup_latency
  error tests 2..4 (no result) [the plan 1..4 announced 4 results but 1 came: the suite is incomplete]
error test 3 (no result) [the plan 1..3 announced 3 results but 2 came: the suite is incomplete]
`)
}

func TestKTAPDirectivesAndEdges(t *testing.T) {
	wantTree(t, parseString(t, "ktap", `KTAP version 1
1..8
ok 1 a # SKIP
not ok 2 b # TIMEOUT 30 seconds
not ok 3 c # ERROR cannot open /dev/foo
ok 4 d # XPASS
ok 5 e # rcode=0
not ok 6
ok 7 - dashed name
ok 8 with \# hash # TODO later
`), `
skipped a
error b [timed out: 30 seconds]
error c [cannot open /dev/foo]
failed d [passed though expected to fail (XPASS)]
passed e [rcode=0]
failed test 6
passed dashed name
passed with # hash [passed though marked TODO: later]
`)
	// Two documents in one stream (two test runs): both kept, each checked
	// against its own plan.
	wantTree(t, parseString(t, "ktap", "KTAP version 1\n1..1\nok 1 first\nKTAP version 1\n1..2\nok 1 second\n"), `
passed first
passed second
error test 2 (no result) [the plan 1..2 announced 2 results but 1 came: the suite is incomplete]
`)
	// A skipped suite.
	wantTree(t, parseString(t, "ktap", "TAP version 13\n1..0 # SKIP no rtc on this board\n"), `
skipped (all tests skipped) [no rtc on this board]
`)
	// Output indented as a whole (a serial console that indents), CRLF.
	wantTree(t, parseString(t, "ktap", "  KTAP version 1\r\n  1..1\r\n  ok 1 x\r\n"), "passed x\n")
	// Colours and a carriage return before the line (a console redraw).
	wantTree(t, parseString(t, "tap", "1..2\n\x1b[32mok\x1b[0m 1 - green\n\x1b[1;31mnot ok 2 - red\x1b[m\n"), "passed green\nfailed red\n")
	// More results than planned.
	wantTree(t, parseString(t, "ktap", "1..1\nok 1 x\nok 2 y\n"), `
passed x
passed y
error (results beyond the plan) [the plan 1..1 announced 1 results but 2 came]
`)
	// Nothing: no cases.
	if c := parseString(t, "ktap", "Linux version 6.1\nlogin: "); len(c) != 0 {
		t.Fatalf("cases from no results: %s", tree(c))
	}
	// A result line with no newline at the end of the stream still counts.
	wantTree(t, parseString(t, "ktap", "1..1\nok 1 last"), "passed last\n")
	// "okay" is not a result.
	if c := parseString(t, "ktap", "okay then\nnot okay\n"); len(c) != 0 {
		t.Fatalf("cases: %s", tree(c))
	}
}

// Real TAP from Test::More (perl t/sample.t, checked with prove -v, which
// reported "Failed tests: 5-6"): a skip, a TODO, a subtest, and failure
// diagnostics that follow their result.
func TestTAPTestMore(t *testing.T) {
	cases := parseFile(t, "tap", "test-more.tap")
	wantTree(t, cases, `
passed board answers on the console
passed arithmetic on the board
skipped test 3 [no network on this board]
xfail watchdog resets the board [watchdog driver not ported yet]
failed storage
  passed mmc0 present
  failed partition table as expected
failed kernel is the one we flashed
`)
	if out := find(t, cases, "kernel is the one we flashed").Output; !strings.Contains(out, "got: '4.19'") || strings.Contains(out, "Failed test 'storage'") {
		t.Fatalf("output: %q", out)
	}
	if out := find(t, cases, "storage/partition table as expected").Output; !strings.Contains(out, "Structures begin differing") {
		t.Fatalf("output: %q", out)
	}
	if out := find(t, cases, "storage").Output; !strings.Contains(out, "Failed test 'storage'") {
		t.Fatalf("output: %q", out)
	}
}

// Real TAP 13 with TAP 14 subtests and YAML diagnostics, from Node.js's
// test runner (node --test --test-reporter=tap).
func TestTAPNodeSubtestsAndYAML(t *testing.T) {
	cases := parseFile(t, "tap", "node-test.tap")
	wantTree(t, cases, `
failed gpio [1 subtest failed]
  passed led toggles
  failed button reads high [Expected values to be strictly equal:

'low' !== 'high']
passed uart loopback
skipped usb gadget [no OTG cable on this board]
xfail rtc survives power cycle [rtc battery missing]
`)
	c := find(t, cases, "gpio/button reads high")
	if c.Seconds < 0.006 || c.Seconds > 0.007 || !strings.Contains(c.Output, "failureType: 'testCodeFailure'") {
		t.Fatalf("yaml not read: %v %q", c.Seconds, c.Output)
	}
}

func TestTAPBailOut(t *testing.T) {
	wantTree(t, parseString(t, "tap", "TAP version 13\n1..3\nok 1 - a\nBail out! the board lost power\nok 2 - never\n"), `
passed a
error tests 2..3 (no result) [the plan 1..3 announced 3 results but 1 came: the suite is incomplete]
error Bail out! [the board lost power]
`)
}

// Fed one byte at a time, or in odd chunks, a parser gives what it gives
// for the whole stream.
func TestStreamingChunksDoNotMatter(t *testing.T) {
	for _, f := range [][2]string{{"ktap", "kunit-boot.ktap"}, {"tap", "node-test.tap"}, {"tap", "test-more.tap"}, {"junit", "pytest.xml"}} {
		data, err := os.ReadFile(filepath.Join("testdata", f[1]))
		if err != nil {
			t.Fatal(err)
		}
		whole := tree(parseString(t, f[0], string(data)))
		for _, size := range []int{1, 7, 4096} {
			p, _ := New(f[0], Limits{})
			for b := data; len(b) > 0; {
				n := min(size, len(b))
				if _, err := p.Write(b[:n]); err != nil {
					t.Fatal(err)
				}
				b = b[n:]
			}
			if got := tree(p.Close()); got != whole {
				t.Fatalf("%s in chunks of %d:\n%s\nwhole:\n%s", f[1], size, got, whole)
			}
		}
	}
}

// Limits: an overlong line is cut, outputs are bounded, cases past the
// limit are summarised and still fail the suite when one of them failed.
func TestLineLimits(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("1..5\n# " + strings.Repeat("x", 200<<10) + "\nok 1 " + strings.Repeat("n", 5000) + "\n")
	b.WriteString("ok 2 b\nnot ok 3 c\nok 4 d\nok 5 e\n")
	p, _ := New("ktap", Limits{MaxCases: 2, MaxOutput: 100, MaxLine: 1000})
	_, _ = p.Write(b.Bytes())
	cases := p.Close()
	if len(cases) != 3 || len(cases[0].Output) > 110 || len(cases[0].Name) > 1030 {
		t.Fatalf("cases: %d, output %d, name %d", len(cases), len(cases[0].Output), len(cases[0].Name))
	}
	last := cases[2]
	if last.Status != result.Failed || !strings.Contains(last.Name, "3 more") || !strings.Contains(last.Message, "1 failed") {
		t.Fatalf("summary case: %+v", last)
	}
	// Nesting deeper than the limit adds no levels (its lines join the deepest).
	var deep strings.Builder
	for i := 0; i < 100; i++ {
		deep.WriteString(strings.Repeat(" ", i) + "KTAP version 1\n")
	}
	if c := parseString(t, "ktap", deep.String()+"ok 1 x\n"); len(c) != 1 || c[0].Name != "x" {
		t.Fatalf("deep: %s", tree(c))
	}
}

// Real `prove -v --merge` output of two Test::More files: each file's
// cases under a case named after it; prove's own lines ("ok" after a
// complete plan, "Dubious", the summary) are not results.
func TestTAPProveVerbose(t *testing.T) {
	cases := parseFile(t, "tap", "prove-v-merge.txt")
	wantTree(t, cases, `
failed t/sample.t
  passed board answers on the console
  passed arithmetic on the board
  skipped test 3 [no network on this board]
  xfail watchdog resets the board [watchdog driver not ported yet]
  failed storage
    passed mmc0 present
    failed partition table as expected
  failed kernel is the one we flashed
passed t/second.t
  passed board answers on the console
  passed arithmetic on the board
`)
	last := cases[0].Children[5]
	if last.Suite != "t/sample.t" || !strings.Contains(last.Output, "expected: '6.1'") {
		t.Fatalf("last case of t/sample.t: %+v", last)
	}
	// A file that dies: its missing results are errors under it.
	wantTree(t, parseString(t, "tap", "t/a.t .. \n1..2\nok 1 - one\nt/b.t ..... \n1..1\nok 1 - b\nok\n"), `
failed t/a.t
  passed one
  error test 2 (no result) [the plan 1..2 announced 2 results but 1 came: the suite is incomplete]
passed t/b.t
  passed b
`)
	// KTAP has no prove headers: kernel lines like this one stay text.
	if c := parseString(t, "ktap", "1..1\nLoading modules ... \nok 1 x\n"); tree(c) != "passed x\n" {
		t.Fatalf("ktap: %s", tree(c))
	}
}

// A failure nested deeper than the depth limit still fails: past the
// limit, lines join the deepest level.
func TestKTAPDeepFailureCounts(t *testing.T) {
	var b strings.Builder
	b.WriteString("KTAP version 1\n1..1\n")
	for i := 1; i <= 40; i++ {
		b.WriteString(strings.Repeat("    ", i) + "KTAP version 1\n" + strings.Repeat("    ", i) + "1..1\n")
	}
	b.WriteString(strings.Repeat("    ", 41) + "not ok 1 deep_failure\n")
	for i := 40; i >= 1; i-- {
		b.WriteString(strings.Repeat("    ", i) + "ok 1 level\n")
	}
	b.WriteString("ok 1 top\n")
	cases := parseString(t, "ktap", b.String())
	if v := Judge(cases, Policy{}); v.Fail+v.Error == 0 {
		t.Fatalf("a deep failure was lost: %+v\n%s", v, tree(cases))
	}
	if !strings.Contains(tree(cases), "failed deep_failure") {
		t.Errorf("no deep_failure case:\n%s", tree(cases))
	}
}
