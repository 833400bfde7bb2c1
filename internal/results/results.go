// Package results parses the test results a board reports, as it prints
// them: KTAP (the kernel's TAP dialect: kselftest, KUnit), TAP 13/14 and
// JUnit XML. A Parser is fed bytes as they arrive (it is an io.Writer) and
// Close returns the test cases seen, so a board that dies in the middle of a
// suite still yields the cases it printed; what is missing (the rest of a
// plan "1..N", a subtest without a result, a cut XML document) becomes an
// `error` case that says so.
//
// Memory stays bounded whatever the stream holds: lines, diagnostics, XML
// text and the number of cases kept all have limits (Limits).
//
// No Go library fits: the TAP parsers on the module proxy read a whole
// document (github.com/mpontillo/tap13 takes a []string, shogo82148/go-tap
// builds its suite at the end), know neither TAP 14 subtests nor KTAP's
// nesting by indentation and version lines, and are unmaintained since 2020;
// the JUnit readers (joshdk/go-junit) ingest a whole document into memory.
// KTAP and TAP share one line parser here; JUnit uses encoding/xml's
// streaming decoder behind a filter that bounds text and tag sizes.
package results

import (
	"fmt"
	"io"
	"strings"

	"github.com/jsplan/jsplan/engine/result"
)

// Formats are the result formats a step may declare.
var Formats = []string{"ktap", "tap", "junit"}

// Limits bound what a parser keeps; zero fields take the defaults.
type Limits struct {
	// MaxCases is how many test cases are kept (default 50000). Cases past
	// it are counted into one summary case that fails when any of them did.
	MaxCases int
	// MaxOutput bounds a case's output and message (default 4 KiB; the end
	// of the output is kept).
	MaxOutput int
	// MaxLine is where an overlong line is cut (default 64 KiB); in XML,
	// the longest text or CDATA run kept and the longest tag accepted.
	MaxLine int
	// MaxDepth bounds the nesting of subtests or XML elements (default 32).
	MaxDepth int
	// MaxTotalOutput bounds the output kept over all cases of a stream,
	// failing and other cases each (default 8 MiB each): past it a case
	// keeps its status, name and message, not its output.
	MaxTotalOutput int
}

func (l Limits) withDefaults() Limits {
	if l.MaxCases <= 0 {
		l.MaxCases = 50000
	}
	if l.MaxOutput <= 0 {
		l.MaxOutput = 4 << 10
	}
	if l.MaxLine <= 0 {
		l.MaxLine = 64 << 10
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 32
	}
	if l.MaxTotalOutput <= 0 {
		l.MaxTotalOutput = 8 << 20
	}
	return l
}

// Parser reads a result stream. Write never fails (a malformed stream
// becomes error cases, never an error), so it can be fed from a console
// reader; Close ends the stream and returns the cases.
type Parser interface {
	io.Writer
	// Close ends the stream; open suites are closed as incomplete.
	Close() []*result.TestCase
}

// New returns a parser for format ("ktap", "tap" or "junit").
func New(format string, lim Limits) (Parser, error) {
	lim = lim.withDefaults()
	switch format {
	case "ktap":
		return newLineParser(lim, false), nil
	case "tap":
		return newLineParser(lim, true), nil
	case "junit":
		return newJUnitParser(lim), nil
	}
	return nil, fmt.Errorf("unknown result format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// Parse reads r to its end (or its first error, which marks the results
// incomplete like a stream that stops) and returns the cases.
func Parse(format string, r io.Reader, lim Limits) ([]*result.TestCase, error) {
	p, err := New(format, lim)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(p, r)
	return p.Close(), nil
}

// counter keeps track of the cases kept and counts those dropped past the
// limit.
type counter struct {
	max     int
	kept    int
	dropped map[result.Status]int
	// output kept so far, of failing cases and of the others
	outBad, outOther, outMax int
}

func newCounter(lim Limits) counter {
	return counter{max: lim.MaxCases, outMax: lim.MaxTotalOutput}
}

// keep reports whether one more case may be kept (its children were
// counted as they came), and counts its test points when not. A kept case
// keeps its output while the stream's output budget lasts.
func (c *counter) keep(tc *result.TestCase) bool {
	if c.kept < c.max {
		c.kept++
		c.charge(tc, tc.Output)
		return true
	}
	if c.dropped == nil {
		c.dropped = map[result.Status]int{}
	}
	walk([]*result.TestCase{tc}, func(x *result.TestCase) {
		if len(x.Children) == 0 {
			c.dropped[x.Status]++
		}
	})
	return false
}

// charge counts more output of tc (out, already in tc.Output) against the
// budget; past it, tc's output is dropped and says so.
func (c *counter) charge(tc *result.TestCase, out string) {
	if out == "" || c.outMax <= 0 {
		return
	}
	spent := &c.outOther
	if tc.Status.Failing() {
		spent = &c.outBad
	}
	if *spent+len(out) > c.outMax {
		tc.Output = "(output not kept: the stream's cases printed more than the limit of output kept)"
		return
	}
	*spent += len(out)
}

// summary is the case standing for the dropped ones, or nil.
func (c *counter) summary() *result.TestCase {
	if len(c.dropped) == 0 {
		return nil
	}
	total := 0
	var parts []string
	for _, s := range []result.Status{result.Passed, result.Failed, result.Error, result.Skipped, result.XFail} {
		if n := c.dropped[s]; n > 0 {
			total += n
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	st := result.Passed
	if c.dropped[result.Failed]+c.dropped[result.Error] > 0 {
		st = result.Failed
	}
	return &result.TestCase{Name: fmt.Sprintf("(%d more test cases not kept)", total), Status: st,
		Message: fmt.Sprintf("past the limit of %d cases kept: %s", c.max, strings.Join(parts, ", "))}
}

func walk(list []*result.TestCase, fn func(*result.TestCase)) {
	for _, c := range list {
		fn(c)
		walk(c.Children, fn)
	}
}

// tail is a buffer that keeps the last max bytes written.
type tail struct {
	max  int
	buf  []byte
	lost bool
}

func (t *tail) add(s string) {
	t.buf = append(t.buf, s...)
	if len(t.buf) > 2*t.max {
		t.trim()
	}
}

func (t *tail) trim() {
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.lost = true
	}
}

// take returns the text and empties the buffer.
func (t *tail) take() string {
	t.trim()
	s := string(t.buf)
	if t.lost {
		s = "..." + s
	}
	t.buf, t.lost = t.buf[:0], false
	return s
}
