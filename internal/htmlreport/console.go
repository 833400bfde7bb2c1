package htmlreport

import (
	"bufio"
	"bytes"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/artifact"
)

// The console log's format (engine/console.Log): a header line, then one
// line per console line, `[%9.3f] text`, seconds since the log's start;
// jsplan's own notes are `[%9.3f]### text`, with no space after the time, a
// step's start `[%9.3f]### step IDX: NAME`. A board's line always has the
// space, so it cannot pass for a note. In logs of older versions (no "v2"
// in the header) notes were told by their text.
var (
	headerRe = regexp.MustCompile(`^# jsplan console log(?: v2)?: .*started (\S+)\s*$`)
	markerRe = regexp.MustCompile(`^### step (\S+): `)
)

// logFormat is how a log tells notes from the board's lines.
type logFormat struct{ legacy bool }

// formatOf reads the format from the log's first line.
func formatOf(header string) logFormat {
	return logFormat{legacy: !strings.HasPrefix(header, console.Header)}
}

// stepSpan is a step's place in the console: seconds since the log's start.
type stepSpan struct {
	res        *engine.StepResult
	parent     *stepSpan
	start, end float64
	ran        bool
}

// segment is a run of consecutive lines that belong to one step (or to no
// step: before the first one, between them).
type segment struct {
	step        *stepSpan
	first, last int // line numbers, inclusive; first > last when empty
	startT      float64
	earlier     bool // the step's lines from an attempt before the last
}

// consoleIndex is pass 1 over console.log: the segments and what to keep.
type consoleIndex struct {
	segs  []*segment
	offs  []int64 // byte offset of each line (index n-1), and the file size last
	lines int
	size  int64
	marks map[int]bool
}

// spans lays the steps of res out on the console's clock.
func spans(res *engine.Result, base time.Time) (map[string]*stepSpan, []*stepSpan) {
	all := map[string]*stepSpan{}
	var order []*stepSpan
	var walk func(list []*engine.StepResult, parent *stepSpan)
	walk = func(list []*engine.StepResult, parent *stepSpan) {
		for _, s := range list {
			sp := &stepSpan{res: s, parent: parent, ran: !s.Start.IsZero() && s.Status != result.Skipped}
			if sp.ran {
				sp.start = s.Start.Sub(base).Seconds()
				sp.end = sp.start + s.Seconds
			}
			all[s.Index] = sp
			order = append(order, sp)
			walk(s.Children, sp)
		}
	}
	walk(res.Steps, nil)
	walk(res.Finally, nil)
	return all, order
}

// logBase finds the wall-clock time of the log's zero: the header's time
// when it has sub-second precision, else calibrated on the first step's
// marker line, else the header's time, else the run's start.
func logBase(path string, res *engine.Result) time.Time {
	f, err := artifact.Open(filepath.Dir(path), filepath.Base(path))
	if err != nil {
		return res.Start
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var header time.Time
	var lf logFormat
	first := ""
	if len(res.Steps) > 0 {
		first = res.Steps[0].Index
	}
	for i := 0; sc.Scan() && i < 5000; i++ {
		line := sc.Text()
		if i == 0 {
			lf = formatOf(line)
			if m := headerRe.FindStringSubmatch(line); m != nil {
				if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
					if t.Nanosecond() != 0 {
						return t
					}
					header = t
				}
			}
			continue
		}
		if first == "" || res.Steps[0].Start.IsZero() {
			continue
		}
		secs, text, note := lf.parseLine(line, -1)
		if mm := markerRe.FindStringSubmatch(text); note && secs >= 0 && mm != nil && mm[1] == first {
			return res.Steps[0].Start.Add(-time.Duration(secs * float64(time.Second)))
		}
	}
	if !header.IsZero() {
		return header
	}
	return res.Start
}

// parseLine splits a log line, `[%9.3f] text` or `[%9.3f]### note`, into
// its time and text (by hand: the regexp costs more than the rest of the
// page for long logs). A note's text keeps its "### ".
func (lf logFormat) parseLine(raw string, prevT float64) (t float64, text string, note bool) {
	end := strings.IndexByte(raw, ']')
	if len(raw) < 3 || raw[0] != '[' || end < 0 {
		return prevT, raw, false
	}
	stamp := strings.TrimSpace(raw[1:end])
	t, err := strconv.ParseFloat(stamp, 64)
	if err != nil && stamp != "..." { // "..." is the cap's marker note
		return prevT, raw, false
	}
	if err != nil {
		t = prevT
	}
	rest := raw[end+1:]
	if lf.legacy {
		text = strings.TrimPrefix(rest, " ")
		return t, text, strings.HasPrefix(text, console.NotePrefix)
	}
	if strings.HasPrefix(rest, console.NotePrefix) {
		return t, rest, true
	}
	return t, strings.TrimPrefix(rest, " "), false
}

// slack absorbs the log's millisecond rounding at a step's end.
const slack = 0.002

// indexConsole reads the log once: it assigns each line to the innermost
// step running when it was printed (a step's marker line starts it) and
// records the lines of the failing step that hold a highlighted text.
func indexConsole(r io.Reader, byIdx map[string]*stepSpan, highlights []string, failure *stepSpan) *consoleIndex {
	ci := &consoleIndex{marks: map[int]bool{}}
	br := bufio.NewReaderSize(r, 256<<10)
	var cur *segment
	var owner *stepSpan
	var off int64
	var prevT float64
	var lf logFormat
	n := 0
	newSeg := func(step *stepSpan, line int, t float64) {
		cur = &segment{step: step, first: line, last: line - 1, startT: t}
		if step != nil && step.ran && t+slack < step.start {
			cur.earlier = true
		}
		ci.segs = append(ci.segs, cur)
	}
	for {
		raw, err := br.ReadSlice('\n')
		if len(raw) == 0 && err != nil {
			break
		}
		if err == bufio.ErrBufferFull { // a line longer than the buffer: take it whole
			long := append([]byte(nil), raw...)
			for err == bufio.ErrBufferFull {
				raw, err = br.ReadSlice('\n')
				long = append(long, raw...)
			}
			raw = long
		}
		n++
		size := int64(len(raw))
		ci.offs = append(ci.offs, off)
		off += size
		text := string(bytes.TrimRight(raw, "\r\n"))
		if n == 1 {
			lf = formatOf(text)
		}
		if n == 1 && strings.HasPrefix(text, "# ") { // the header
			continue
		}
		t, body, note := lf.parseLine(text, prevT)
		prevT = t
		if note && strings.HasPrefix(body, console.NotePrefix+"step ") {
			if m := markerRe.FindStringSubmatch(body); m != nil {
				if sp := byIdx[m[1]]; sp != nil {
					owner = sp
					newSeg(owner, n, t)
				}
			}
		}
		// A step that has ended hands the lines to its parent.
		for owner != nil && owner.ran && t > owner.end+slack && (cur == nil || cur.first != n) {
			owner = owner.parent
		}
		if cur == nil || cur.step != owner {
			newSeg(owner, n, t)
		}
		cur.last = n
		for _, h := range highlights {
			if failure != nil && owner == failure && strings.Contains(body, h) {
				ci.marks[n] = true
				break
			}
		}
		if err != nil {
			break
		}
	}
	ci.lines = n
	ci.size = off
	ci.offs = append(ci.offs, off)
	return ci
}

// lineCost is what a console line costs the page besides its text (its
// element, number and time), counted against the budget.
const lineCost = 64

// lineRange is an inclusive range of line numbers.
type lineRange struct{ a, b int }

// keepPlan decides which lines to embed: all of them when the log fits the
// budget, else windows around each segment's start and end, the failure
// and the highlighted lines, shrunk until they fit.
func (ci *consoleIndex) keepPlan(budget int64, failure *stepSpan) []lineRange {
	if ci.size+int64(ci.lines)*lineCost <= budget {
		return []lineRange{{1, ci.lines}}
	}
	var failEnd int // last line of the failing step
	for _, s := range ci.segs {
		if failure != nil && s.step == failure && s.last >= s.first {
			failEnd = s.last
		}
	}
	for w, fw := 200, 4000; ; w, fw = w/2, fw/2 {
		var rs []lineRange
		rs = append(rs, lineRange{1, 1})
		for _, s := range ci.segs {
			if s.last < s.first {
				continue
			}
			rs = append(rs, lineRange{s.first, min(s.last, s.first+w-1)}, lineRange{max(s.first, s.last-w+1), s.last})
		}
		if failEnd > 0 {
			rs = append(rs, lineRange{max(1, failEnd-fw+1), min(ci.lines, failEnd+w)})
		}
		nm := 0
		for _, n := range sortedKeys(ci.marks) {
			if nm++; nm > 50 {
				break
			}
			rs = append(rs, lineRange{max(1, n-w/2), min(ci.lines, n+w/2)})
		}
		rs = mergeRanges(rs)
		var total int64
		for _, r := range rs {
			total += ci.offs[r.b] - ci.offs[r.a-1] + int64(r.b-r.a+1)*lineCost
		}
		if total <= budget || w <= 2 {
			if total > budget { // still too big: drop windows from the end
				for len(rs) > 1 && total > budget {
					last := rs[len(rs)-1]
					total -= ci.offs[last.b] - ci.offs[last.a-1]
					rs = rs[:len(rs)-1]
				}
			}
			return rs
		}
	}
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func mergeRanges(rs []lineRange) []lineRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].a < rs[j].a })
	var out []lineRange
	for _, r := range rs {
		if r.a > r.b {
			continue
		}
		if len(out) > 0 && r.a <= out[len(out)-1].b+1 {
			out[len(out)-1].b = max(out[len(out)-1].b, r.b)
			continue
		}
		out = append(out, r)
	}
	return out
}

// readKept reads the kept lines (pass 2) and calls fn for each, in order.
func readKept(r io.Reader, keep []lineRange, fn func(n int, raw string)) error {
	br := bufio.NewReaderSize(r, 256<<10)
	n, k := 0, 0
	for k < len(keep) {
		raw, err := br.ReadString('\n')
		if len(raw) == 0 && err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		n++
		for k < len(keep) && n > keep[k].b {
			k++
		}
		if k < len(keep) && n >= keep[k].a {
			fn(n, strings.TrimRight(raw, "\r\n"))
		}
		if err != nil {
			return nil
		}
	}
	return nil
}
