package results

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/shorten"
)

// junitParser reads JUnit XML (the Ant/Surefire shape pytest, ctest, go-junit-report and
// most runners write) with encoding/xml's streaming decoder, in a goroutine
// fed through a pipe. <testsuite> elements become parent cases (nested
// suites nest), <testcase> elements their children; <failure>, <error> and
// <skipped> set a case's status (pytest's xfail, a skipped of type
// "pytest.xfail", is an expected failure), <system-out>/<system-err> its
// output.
type junitParser struct {
	pw    *io.PipeWriter
	done  chan struct{}
	cases []*result.TestCase
}

func newJUnitParser(lim Limits) *junitParser {
	pr, pw := io.Pipe()
	p := &junitParser{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.cases = decodeJUnit(pr, lim)
		_, _ = io.Copy(io.Discard, pr) // the rest after an error
	}()
	return p
}

// Write implements io.Writer.
func (p *junitParser) Write(b []byte) (int, error) {
	_, _ = p.pw.Write(b)
	return len(b), nil
}

// Close implements Parser.
func (p *junitParser) Close() []*result.TestCase {
	p.pw.Close()
	<-p.done
	return p.cases
}

type jframe struct {
	elem string // testsuite, testcase, or a child element of a testcase
	tc   *result.TestCase
	text *tail // text collected for output
	msg  bool  // the text is the message (failure body when no message attr)
}

func decodeJUnit(r io.Reader, lim Limits) []*result.TestCase {
	d := xml.NewDecoder(&boundedXML{r: r, max: lim.MaxLine, maxDepth: lim.MaxDepth})
	d.Entity = xml.HTMLEntity
	// Accept any declared encoding as is: results are text, and a byte that
	// is not UTF-8 is dropped from the report rather than losing the file.
	d.CharsetReader = func(_ string, in io.Reader) (io.Reader, error) { return in, nil }
	cnt := newCounter(lim)
	var top []*result.TestCase
	var stack []*jframe
	attach := func(tc *result.TestCase) {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].elem == "testsuite" {
				if cnt.keep(tc) {
					stack[i].tc.Children = append(stack[i].tc.Children, tc)
				}
				return
			}
		}
		if cnt.keep(tc) {
			top = append(top, tc)
		}
	}
	suiteName := func() string {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].elem == "testsuite" {
				return stack[i].tc.Name
			}
		}
		return ""
	}
	// current is the open testcase, if the innermost frames are its.
	current := func() *jframe {
		for i := len(stack) - 1; i >= 0; i-- {
			switch stack[i].elem {
			case "testcase":
				return stack[i]
			case "testsuite":
				return nil
			}
		}
		return nil
	}
	var err error
	for {
		var tok xml.Token
		tok, err = d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			f := &jframe{elem: t.Name.Local}
			switch t.Name.Local {
			case "testsuite":
				f.tc = &result.TestCase{Name: shorten.Clip(attr(t, "name"), 1024), Suite: suiteName(), Seconds: seconds(attr(t, "time"))}
				if f.tc.Name == "" {
					f.tc.Name = "testsuite"
				}
			case "testcase":
				f.tc = &result.TestCase{Name: shorten.Clip(attr(t, "name"), 1024), Status: result.Passed, Seconds: seconds(attr(t, "time"))}
				f.tc.Suite = shorten.Clip(attr(t, "classname"), 1024)
				if f.tc.Suite == "" {
					f.tc.Suite = suiteName()
				}
				if f.tc.Name == "" {
					f.tc.Name = "testcase"
				}
			case "failure", "error", "skipped", "system-out", "system-err":
				c := current()
				if c == nil {
					break
				}
				f.tc = c.tc
				f.text = &tail{max: lim.MaxOutput}
				msg := shorten.Clip(attr(t, "message"), lim.MaxOutput)
				switch t.Name.Local {
				case "failure":
					if c.tc.Status != result.Error {
						c.tc.Status = result.Failed
					}
				case "error":
					c.tc.Status = result.Error
				case "skipped":
					// A skip never hides a failure or error of the same
					// case, whatever the order of the elements.
					if c.tc.Status == result.Passed {
						c.tc.Status = result.Skipped
						if strings.Contains(strings.ToLower(attr(t, "type")), "xfail") {
							c.tc.Status = result.XFail
						}
					}
				}
				skipOfFailed := t.Name.Local == "skipped" && c.tc.Status != result.Skipped && c.tc.Status != result.XFail
				if !skipOfFailed && (t.Name.Local == "failure" || t.Name.Local == "error" || t.Name.Local == "skipped") {
					if msg != "" {
						c.tc.Message = msg
					} else {
						f.msg = true
					}
				}
			}
			if len(stack) < 4*lim.MaxDepth {
				stack = append(stack, f)
			}
		case xml.CharData:
			if n := len(stack); n > 0 && stack[n-1].text != nil {
				stack[n-1].text.add(string(t))
			}
		case xml.EndElement:
			if len(stack) == 0 {
				continue
			}
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			endFrame(f, lim, attach)
		}
	}
	if len(stack) > 0 {
		why := "the XML document ended early"
		if err != nil && !errors.Is(err, io.EOF) {
			why = "the XML document is cut or malformed: " + err.Error()
		}
		for len(stack) > 0 {
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch f.elem {
			case "testcase":
				f.tc.Status = result.Error
				f.tc.Message = shorten.Clip(why, lim.MaxOutput)
			case "testsuite":
				f.tc.Children = append(f.tc.Children, &result.TestCase{Name: "(rest of the suite)", Suite: f.tc.Name,
					Status: result.Error, Message: shorten.Clip(why, lim.MaxOutput)})
			}
			endFrame(f, lim, attach)
		}
	}
	if len(top) == 0 {
		why := "no <testsuite> or <testcase> in the output"
		if err != nil && !errors.Is(err, io.EOF) {
			why = "not JUnit XML: " + err.Error()
		}
		top = append(top, &result.TestCase{Name: "(JUnit XML)", Status: result.Error, Message: shorten.Clip(why, lim.MaxOutput)})
	}
	if s := cnt.summary(); s != nil {
		top = append(top, s)
	}
	return top
}

// endFrame finishes an element: a case or suite is attached to its parent,
// collected text goes to the case.
func endFrame(f *jframe, lim Limits, attach func(*result.TestCase)) {
	switch f.elem {
	case "testcase":
		attach(f.tc)
	case "testsuite":
		f.tc.Status = suiteStatus(f.tc.Children)
		attach(f.tc)
	default:
		if f.text == nil || f.tc == nil {
			return
		}
		text := strings.TrimSpace(f.text.take())
		if text == "" {
			return
		}
		if f.msg && f.tc.Message == "" {
			line, _, _ := strings.Cut(text, "\n")
			f.tc.Message = shorten.Clip(line, lim.MaxOutput)
		}
		out := f.tc.Output
		if out != "" {
			out += "\n"
		}
		out += text
		if len(out) > lim.MaxOutput {
			out = "..." + out[len(out)-lim.MaxOutput:]
		}
		f.tc.Output = strings.ToValidUTF8(out, "")
	}
}

// suiteStatus is a suite's (or a TAP file's) status from its cases: failed when one failed,
// skipped when all were, else passed.
func suiteStatus(children []*result.TestCase) result.Status {
	if len(children) == 0 {
		return result.Skipped
	}
	all := true
	for _, c := range children {
		switch c.Status {
		case result.Failed, result.Error:
			return result.Failed
		case result.Skipped:
		default:
			all = false
		}
	}
	if all {
		return result.Skipped
	}
	return result.Passed
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return strings.ToValidUTF8(a.Value, "")
		}
	}
	return ""
}

func seconds(s string) float64 {
	v, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(s), ",", ""), 64)
	if err != nil || v < 0 || v > 1e9 {
		return 0
	}
	return v
}

// boundedXML passes an XML stream through while bounding what the decoder
// would hold at once: text and CDATA runs past max bytes are cut (never
// inside an entity reference), comments are emptied, a tag, processing
// instruction or declaration longer than max and elements nested deeper
// than maxDepth end the stream with an error.
type boundedXML struct {
	r        io.Reader
	max      int
	maxDepth int
	in       []byte
	out      []byte // filtered bytes not read yet, from off
	off      int
	st       xstate
	run      int  // bytes of the current construct
	cut      bool // the current text or CDATA run is being cut
	ent      int  // inside an entity reference (bytes so far), 0 = not
	endTag   bool // the current tag is an end tag
	prev     byte // the previous byte of the current tag (for "/>")
	quote    byte
	bang     []byte // what follows "<!" until known
	brackets int
	last     [2]byte // the previous two input bytes (for "-->", "]]>", "?>")
	depth    int
	err      error
}

type xstate int

const (
	xText    xstate = iota
	xOpen           // just after '<'
	xTag            // in a start or end tag
	xBang           // after "<!", deciding
	xComment        // in <!-- -->
	xCDATA          // in <![CDATA[ ]]>
	xDecl           // in <!DOCTYPE ...>
	xPI             // in <? ?>
)

func (b *boundedXML) Read(p []byte) (int, error) {
	for b.off == len(b.out) {
		b.out, b.off = b.out[:0], 0
		if b.err != nil {
			return 0, b.err
		}
		if b.in == nil {
			b.in = make([]byte, 32<<10)
		}
		n, rerr := b.r.Read(b.in)
		for _, c := range b.in[:n] {
			if err := b.step(c); err != nil {
				b.err = err
				break
			}
		}
		if rerr != nil && b.err == nil {
			b.err = rerr
		}
	}
	n := copy(p, b.out[b.off:])
	b.off += n
	return n, nil
}

// step consumes one input byte and appends what passes to b.out.
func (b *boundedXML) step(c byte) error {
	last := b.last
	b.last = [2]byte{b.last[1], c}
	switch b.st {
	case xText:
		if c == '<' {
			b.st, b.run, b.ent, b.cut = xOpen, 1, 0, false
			b.out = append(b.out, c)
			return nil
		}
		b.run++
		if b.run <= b.max || b.ent > 0 {
			switch {
			case c == '&':
				b.ent = 1
			case b.ent > 0 && (c == ';' || b.ent > 32):
				b.ent = 0
			case b.ent > 0:
				b.ent++
			}
			b.out = append(b.out, c)
		}
	case xOpen:
		b.run++
		switch c {
		case '/':
			b.st, b.endTag, b.prev = xTag, true, c
		case '!':
			b.st, b.bang = xBang, b.bang[:0]
		case '?':
			b.st = xPI
		default:
			b.st, b.endTag, b.prev = xTag, false, c
		}
		b.out = append(b.out, c)
	case xTag:
		b.run++
		if b.run > b.max {
			return fmt.Errorf("an XML tag longer than %d bytes", b.max)
		}
		switch {
		case b.quote != 0:
			if c == b.quote {
				b.quote = 0
			}
		case c == '"' || c == '\'':
			b.quote = c
		case c == '>':
			if !b.endTag && b.prev != '/' {
				b.depth++
				if b.depth > b.maxDepth {
					return fmt.Errorf("XML elements nested deeper than %d", b.maxDepth)
				}
			} else if b.endTag && b.depth > 0 {
				b.depth--
			}
			b.st, b.run = xText, 0
		}
		b.prev = c
		b.out = append(b.out, c)
	case xBang:
		b.bang = append(b.bang, c)
		b.out = append(b.out, c)
		switch s := string(b.bang); {
		case s == "--":
			b.st = xComment
		case s == "[CDATA[":
			b.st, b.run, b.cut = xCDATA, 0, false
		case !strings.HasPrefix("--", s) && !strings.HasPrefix("[CDATA[", s):
			b.st, b.run, b.brackets, b.quote = xDecl, len(s), 0, 0
			for _, x := range b.bang {
				b.declByte(x)
			}
		}
	case xComment:
		// Comments are emptied: they never reach a report.
		if last[0] == '-' && last[1] == '-' && c == '>' {
			b.st, b.run = xText, 0
			b.out = append(b.out, "-->"...)
		}
	case xCDATA:
		if last[0] == ']' && last[1] == ']' && c == '>' {
			if b.cut {
				b.out = append(b.out, "]]>"...)
			} else {
				b.out = append(b.out, c)
			}
			b.st, b.run = xText, 0
			return nil
		}
		b.run++
		if b.run > b.max {
			b.cut = true
		} else {
			b.out = append(b.out, c)
		}
	case xDecl:
		b.run++
		if b.run > b.max {
			return fmt.Errorf("an XML declaration longer than %d bytes", b.max)
		}
		b.declByte(c)
		b.out = append(b.out, c)
	case xPI:
		b.run++
		if b.run > b.max {
			return fmt.Errorf("an XML processing instruction longer than %d bytes", b.max)
		}
		if last[1] == '?' && c == '>' {
			b.st, b.run = xText, 0
		}
		b.out = append(b.out, c)
	}
	return nil
}

// declByte follows a <!DOCTYPE ...> declaration to its end.
func (b *boundedXML) declByte(c byte) {
	switch {
	case b.quote != 0:
		if c == b.quote {
			b.quote = 0
		}
	case c == '"' || c == '\'':
		b.quote = c
	case c == '[':
		b.brackets++
	case c == ']':
		b.brackets--
	case c == '>' && b.brackets <= 0:
		b.st, b.run = xText, 0
	}
}
