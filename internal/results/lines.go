package results

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/shorten"
)

// lineParser reads KTAP and TAP 13/14, one line at a time.
//
// Nesting follows indentation, which covers both dialects: a KTAP subtest
// is an indented block that starts with its own version line, a TAP 14
// subtest an indented block announced by "# Subtest: NAME". The cases of an
// indented block become the children of the next result line at the outer
// level. Lines that are neither version, plan, result, "# Subtest:" nor
// "Bail out!" are diagnostics (KTAP's "unknown lines": kernel messages);
// in KTAP they become the output of the next result (kselftest and KUnit
// print a test's messages before its result), in TAP of the last one
// (Test::More prints why a test failed after it). A kernel timestamp
// ("[   12.345678] ") at the start of a line and terminal escape sequences
// are ignored. In TAP, prove's "t/file.t .. " headers group the cases of
// each test file under a case named after it.
type lineParser struct {
	lim     Limits
	tap     bool             // diagnostics follow their result (TAP), else precede it (KTAP)
	owner   *result.TestCase // TAP: the result the diagnostics go to
	cnt     counter
	stack   []*level
	done    []*result.TestCase // cases of finished documents
	out     tail               // diagnostics since the last result
	line    []byte             // the line being received
	cut     bool               // dropping the rest of an overlong line
	last    *result.TestCase   // the last result, for its YAML block
	lastInd int
	yaml    *tail // the YAML block being read, or nil
	yamlInd int
	bailed  bool
	// file is the test file prove announced ("t/a.t .. "), whose cases
	// become the children of one case named after it; from is where its
	// cases start in done.
	file string
	from int
}

// level is one nesting level: the top of a document or a subtest.
type level struct {
	indent   int
	started  bool // a version line was seen
	plan     int  // -1 until a plan line
	planNote string
	count    int // results at this level
	cases    []*result.TestCase
	subName  string // "# Subtest: NAME" seen: the name of the next test
	header   string // the first "# Subtest:" name of the level (KUnit names a subtest inside it)
	// pending holds a finished subtest's cases until its result line.
	pending    []*result.TestCase
	hasPending bool
	pendName   string
}

func newLineParser(lim Limits, tap bool) *lineParser {
	p := &lineParser{lim: lim, tap: tap, cnt: newCounter(lim)}
	p.out.max = lim.MaxOutput
	p.stack = []*level{{plan: -1}}
	return p
}

// Write implements io.Writer.
func (p *lineParser) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.appendLine(b)
			break
		}
		p.appendLine(b[:i])
		p.handle(string(p.line))
		p.line, p.cut = p.line[:0], false
		b = b[i+1:]
	}
	return n, nil
}

func (p *lineParser) appendLine(b []byte) {
	if p.cut {
		return
	}
	if room := p.lim.MaxLine - len(p.line); len(b) > room {
		b, p.cut = b[:room], true
	}
	p.line = append(p.line, b...)
}

// Close implements Parser.
func (p *lineParser) Close() []*result.TestCase {
	if len(p.line) > 0 {
		p.handle(string(p.line))
		p.line = p.line[:0]
	}
	p.endYAML()
	p.flushOwner()
	p.finishAll("the output ended before this test's result")
	if s := p.cnt.summary(); s != nil {
		p.done = append(p.done, s)
	}
	out := p.done
	p.done = nil
	return out
}

type kind int

const (
	kOther kind = iota
	kVersion
	kPlan
	kResult
	kSubtest
	kBail
)

func classify(s string) kind {
	switch {
	case strings.HasPrefix(s, "ok") && (len(s) == 2 || s[2] == ' ' || s[2] == '\t'),
		strings.HasPrefix(s, "not ok") && (len(s) == 6 || s[6] == ' ' || s[6] == '\t'):
		return kResult
	case strings.HasPrefix(s, "1.."):
		if len(s) > 3 && s[3] >= '0' && s[3] <= '9' {
			return kPlan
		}
	case strings.HasPrefix(s, "KTAP version ") || strings.HasPrefix(s, "TAP version "):
		return kVersion
	case strings.HasPrefix(s, "# Subtest:"):
		return kSubtest
	case strings.HasPrefix(s, "Bail out!"):
		return kBail
	}
	return kOther
}

func (p *lineParser) handle(raw string) {
	if p.bailed {
		return
	}
	s := stripStamp(stripANSI(strings.TrimSuffix(raw, "\r")))
	ind := 0
	for ind < len(s) && s[ind] == ' ' {
		ind++
	}
	rest := strings.TrimRight(s[ind:], " \t\r")
	if p.yaml != nil {
		if ind >= p.yamlInd && rest == "..." {
			p.endYAML()
			return
		}
		if ind >= p.yamlInd || rest == "" {
			p.yaml.add(s + "\n")
			return
		}
		p.endYAML()
	}
	k := classify(rest)
	if p.tap && ind == 0 && k == kOther {
		if name, ok := proveHeader(rest); ok {
			p.flushOwner()
			p.finishAll("the output ended before this test's result")
			p.file, p.from = name, len(p.done)
			return
		}
	}
	if p.file != "" && k == kResult && len(p.stack) == 1 && ind == p.stack[0].indent &&
		(rest == "ok" || rest == "not ok") && p.stack[0].plan >= 0 && p.stack[0].count >= p.stack[0].plan {
		p.flushOwner()
		return // prove's verdict on the file, after its plan is complete
	}
	switch k {
	case kOther:
		if rest == "---" && p.last != nil && ind > p.lastInd {
			p.yaml, p.yamlInd = &tail{max: p.lim.MaxOutput}, ind
			return
		}
		if !p.tap || p.owner != nil {
			p.out.add(s + "\n")
		}
		return
	case kBail:
		p.flushOwner()
		p.finishAll("the run bailed out before this test's result")
		p.add(p.stack[0], &result.TestCase{Name: "Bail out!", Status: result.Error,
			Message: shorten.Clip(strings.TrimSpace(strings.TrimPrefix(rest, "Bail out!")), p.lim.MaxOutput), Output: p.out.take()})
		p.bailed = true
		return
	}
	p.flushOwner()
	if !p.place(ind) {
		p.out.add(s + "\n") // nested too deep: kept as text
		return
	}
	l := p.stack[len(p.stack)-1]
	p.last = nil
	switch k {
	case kVersion:
		if len(p.stack) == 1 && (l.count > 0 || l.plan >= 0 || l.hasPending) {
			// A new document at the top: close the one before.
			p.done = append(p.done, p.finish(l, "the output ended before this test's result")...)
			*l = level{indent: ind, plan: -1}
		}
		l.started = true
	case kPlan:
		if l.plan < 0 {
			num, note := rest[3:], ""
			if i := strings.IndexByte(num, '#'); i >= 0 {
				num, note = num[:i], strings.TrimSpace(num[i+1:])
			}
			n, err := strconv.Atoi(strings.TrimSpace(num))
			if err != nil || n > 1<<30 {
				p.out.add(s + "\n")
				return
			}
			l.plan, l.planNote = n, shorten.Clip(note, p.lim.MaxOutput)
		}
	case kSubtest:
		l.subName = shorten.Clip(strings.TrimSpace(strings.TrimPrefix(rest, "# Subtest:")), 1024)
		if l.count == 0 && l.header == "" {
			l.header = l.subName
		}
	case kResult:
		tc, num := parseResult(rest, p.lim)
		switch {
		case tc.Name != "":
		case l.subName != "":
			tc.Name = l.subName
		case num != "":
			tc.Name = "test " + num
		default:
			tc.Name = "test"
		}
		if !p.tap {
			tc.Output = p.out.take()
		}
		if l.hasPending {
			for _, c := range l.pending {
				c.Suite = tc.Name
			}
			tc.Children = l.pending
			l.pending, l.hasPending, l.pendName = nil, false, ""
		}
		l.subName = ""
		l.count++
		if p.add(l, tc) {
			p.last, p.lastInd = tc, ind
			if p.tap {
				p.owner = tc
			}
		}
	}
}

// flushOwner gives the diagnostics that followed a TAP result to it.
func (p *lineParser) flushOwner() {
	if p.owner == nil {
		return
	}
	if text := p.out.take(); text != "" {
		out := p.owner.Output
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += text
		if len(out) > p.lim.MaxOutput {
			out = "..." + out[len(out)-p.lim.MaxOutput:]
		}
		old := len(p.owner.Output)
		p.owner.Output = strings.ToValidUTF8(out, "")
		if d := len(p.owner.Output) - old; d > 0 {
			p.cnt.charge(p.owner, p.owner.Output[old:])
		}
	}
	p.owner = nil
}

// place makes the level of a line at indentation ind the current one:
// deeper opens a subtest, shallower closes subtests; past the depth limit
// lines join the deepest subtest. It reports whether the line has a level.
func (p *lineParser) place(ind int) bool {
	top := p.stack[len(p.stack)-1]
	if len(p.stack) == 1 && ind != top.indent && !top.started && top.count == 0 && top.plan < 0 && !top.hasPending {
		top.indent = ind // the whole stream is indented
		return true
	}
	for ind < top.indent {
		if len(p.stack) == 1 {
			// Output that began inside a subtest (TAP 14 without a
			// header): the top so far becomes a subtest of a new top.
			p.stack = []*level{{indent: ind, plan: -1}, top}
		}
		p.pop("")
		top = p.stack[len(p.stack)-1]
	}
	if ind > top.indent && len(p.stack) < p.lim.MaxDepth {
		p.stack = append(p.stack, &level{indent: ind, plan: -1})
	}
	// Deeper than allowed: the line counts at the deepest level, so that a
	// failure nested too deep is still a failure.
	return true
}

// pop closes the innermost subtest: its cases wait for their parent's
// result line. With why set, the subtest never got one (the stream ended).
func (p *lineParser) pop(why string) {
	child := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	parent := p.stack[len(p.stack)-1]
	cases := p.finish(child, why)
	if parent.hasPending {
		p.flushPending(parent, "no result line for this test")
	}
	name := parent.subName
	if name == "" {
		name = child.header
	}
	parent.pending, parent.hasPending, parent.pendName = cases, true, name
}

// flushPending turns a subtest that got no result line into an error case.
func (p *lineParser) flushPending(l *level, why string) {
	name := l.pendName
	if name == "" {
		name = "(subtest without a result)"
	}
	tc := &result.TestCase{Name: name, Status: result.Error, Message: why, Children: l.pending, Output: p.out.take()}
	for _, c := range tc.Children {
		c.Suite = name
	}
	l.pending, l.hasPending, l.pendName = nil, false, ""
	l.count++ // it has the place of its missing result
	p.add(l, tc)
}

// finish closes a level: a subtest still waiting for its result and a plan
// that announced more results than came become error cases.
func (p *lineParser) finish(l *level, why string) []*result.TestCase {
	if l.hasPending {
		if why == "" {
			why = "no result line for this test"
		}
		p.flushPending(l, why)
	}
	switch {
	case l.plan > l.count:
		msg := fmt.Sprintf("the plan 1..%d announced %d results but %d came: the suite is incomplete", l.plan, l.plan, l.count)
		name := fmt.Sprintf("tests %d..%d (no result)", l.count+1, l.plan)
		if l.count+1 == l.plan {
			name = fmt.Sprintf("test %d (no result)", l.plan)
		}
		p.add(l, &result.TestCase{Name: name, Status: result.Error, Message: msg})
	case l.plan >= 0 && l.count > l.plan:
		p.add(l, &result.TestCase{Name: "(results beyond the plan)", Status: result.Error,
			Message: fmt.Sprintf("the plan 1..%d announced %d results but %d came", l.plan, l.plan, l.count)})
	case l.plan == 0 && l.count == 0 && len(p.stack) <= 1:
		// "1..0 # SKIP reason": the whole suite was skipped.
		note := l.planNote
		if w, rest := firstWord(note); strings.HasPrefix(strings.ToUpper(w), "SKIP") {
			note = rest
		}
		p.add(l, &result.TestCase{Name: "(all tests skipped)", Status: result.Skipped, Message: note})
	}
	cases := l.cases
	l.cases = nil
	return cases
}

// finishAll closes every open subtest and the current document.
func (p *lineParser) finishAll(why string) {
	for len(p.stack) > 1 {
		p.pop(why)
	}
	top := p.stack[0]
	p.done = append(p.done, p.finish(top, why)...)
	*top = level{indent: top.indent, plan: -1}
	if p.file != "" {
		cases := append([]*result.TestCase(nil), p.done[p.from:]...)
		for _, c := range cases {
			c.Suite = p.file
		}
		fc := &result.TestCase{Name: p.file, Status: suiteStatus(cases), Children: cases}
		if len(cases) == 0 {
			fc.Status, fc.Message = result.Error, "no results"
		}
		p.done = append(p.done[:p.from], fc)
		p.file = ""
	}
}

// proveHeader recognises the line prove -v prints before a test file's
// output: its name, padded with dots ("t/basic.t .... ").
func proveHeader(s string) (string, bool) {
	s = strings.TrimRight(s, " ")
	i := strings.LastIndexByte(s, ' ')
	if i <= 0 || len(s)-i < 3 || strings.Trim(s[i+1:], ".") != "" {
		return "", false
	}
	name := s[:i]
	if strings.ContainsAny(name, " \t#") {
		return "", false
	}
	return name, true
}

// add keeps tc at level l unless the case limit is reached.
func (p *lineParser) add(l *level, tc *result.TestCase) bool {
	if !p.cnt.keep(tc) {
		return false
	}
	l.cases = append(l.cases, tc)
	return true
}

// endYAML reads the fields of the last result's YAML block that a report
// shows (duration, message) and keeps the block as its output.
func (p *lineParser) endYAML() {
	if p.yaml == nil {
		return
	}
	text := p.yaml.take()
	p.yaml = nil
	tc := p.last
	if tc == nil {
		return
	}
	lines := strings.Split(text, "\n")
	key := func(name string) (string, int) {
		for i, l := range lines {
			t := strings.TrimSpace(l)
			if v, ok := strings.CutPrefix(t, name+":"); ok {
				return strings.TrimSpace(v), i
			}
		}
		return "", -1
	}
	if v, _ := key("duration_ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && ms < 1e15 {
			tc.Seconds = ms / 1000
		}
	}
	if tc.Status == result.Failed || tc.Status == result.Error || tc.Status == result.XFail {
		for _, name := range []string{"message", "error"} {
			v, i := key(name)
			if i < 0 {
				continue
			}
			if strings.HasPrefix(v, "|") || strings.HasPrefix(v, ">") {
				// A block scalar: the more indented lines that follow.
				var b []string
				for _, l := range lines[i+1:] {
					if strings.TrimSpace(l) != "" && indentOf(l) <= indentOf(lines[i]) {
						break
					}
					b = append(b, strings.TrimSpace(l))
				}
				v = strings.TrimSpace(strings.Join(b, "\n"))
			} else {
				v = unquote(v)
			}
			if v != "" && tc.Message == "" {
				tc.Message = shorten.Clip(v, p.lim.MaxOutput)
			}
			break
		}
	}
	out := tc.Output
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	out += "---\n" + text + "...\n"
	if len(out) > p.lim.MaxOutput {
		out = "..." + out[len(out)-p.lim.MaxOutput:]
	}
	old := len(tc.Output)
	tc.Output = strings.ToValidUTF8(out, "")
	if d := len(tc.Output) - old; d > 0 {
		p.cnt.charge(tc, tc.Output[old:])
	}
}

func indentOf(s string) int {
	return len(s) - len(strings.TrimLeft(s, " "))
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '\'' && v[len(v)-1] == '\'' || v[0] == '"' && v[len(v)-1] == '"') {
		if v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	return v
}

// parseResult reads "ok|not ok [N] [- ]description [# DIRECTIVE data]".
func parseResult(s string, lim Limits) (*result.TestCase, string) {
	notOK := strings.HasPrefix(s, "not ok")
	if notOK {
		s = s[len("not ok"):]
	} else {
		s = s[len("ok"):]
	}
	s = strings.TrimLeft(s, " \t")
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num := s[:i]
	if i > 0 && (i == len(s) || s[i] == ' ' || s[i] == '\t' || s[i] == '#') {
		s = strings.TrimLeft(s[i:], " \t")
	} else {
		num = ""
	}
	if strings.HasPrefix(s, "- ") || s == "-" {
		s = strings.TrimLeft(s[1:], " \t")
	}
	desc, dir, hasDir := splitHash(s)
	tc := &result.TestCase{Name: shorten.Clip(strings.TrimSpace(desc), 1024), Status: result.Passed}
	if notOK {
		tc.Status = result.Failed
	}
	if !hasDir {
		return tc, num
	}
	dir = strings.TrimSpace(dir)
	w, rest := firstWord(dir)
	msg := dir
	switch up := strings.ToUpper(w); {
	case strings.HasPrefix(up, "SKIP"):
		tc.Status, msg = result.Skipped, rest
	case strings.HasPrefix(up, "TODO"):
		msg = rest
		if notOK {
			tc.Status = result.XFail
		} else if msg == "" {
			msg = "passed though marked TODO"
		} else {
			msg = "passed though marked TODO: " + msg
		}
	case up == "XFAIL":
		tc.Status, msg = result.XFail, rest
	case up == "XPASS":
		tc.Status, msg = result.Failed, "passed though expected to fail (XPASS)"+colon(rest)
	case up == "TIMEOUT":
		tc.Status, msg = result.Error, "timed out"+colon(rest)
	case up == "ERROR":
		tc.Status, msg = result.Error, rest
	}
	tc.Message = shorten.Clip(msg, lim.MaxOutput)
	return tc, num
}

func colon(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// firstWord splits s at its first space; the rest loses a leading colon.
func firstWord(s string) (string, string) {
	w, rest, _ := strings.Cut(s, " ")
	w = strings.TrimRight(w, ":")
	return w, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
}

// splitHash cuts s at its first '#' that is not escaped ("\#" is a literal
// hash in TAP), and unescapes the description.
func splitHash(s string) (desc, dir string, ok bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '#':
			return unescape(s[:i]), s[i+1:], true
		}
	}
	return unescape(s), "", false
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\#`, "#", `\\`, `\`).Replace(s)
}

// stripANSI removes terminal escape sequences (colours, cursor moves) that
// a console or a test runner adds around results.
func stripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '[' {
			// CSI: parameters and intermediates, then a final byte.
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		i++ // a two-byte escape
	}
	return b.String()
}

// stripStamp removes a kernel log timestamp ("[   12.345678] ").
func stripStamp(s string) string {
	if len(s) < 4 || s[0] != '[' {
		return s
	}
	end := strings.IndexByte(s, ']')
	if end < 2 || end > 24 {
		return s
	}
	dot := false
	for _, c := range s[1:end] {
		switch {
		case c == '.':
			dot = true
		case c == ' ' || c >= '0' && c <= '9':
		default:
			return s
		}
	}
	if !dot {
		return s
	}
	s = s[end+1:]
	return strings.TrimPrefix(s, " ")
}
