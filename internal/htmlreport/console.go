package htmlreport

// The console sections of the page, read from console.log with
// engine/console's Reader (the format is that package's): pass 1 reads the
// whole log once, assigning its lines to steps; the lines kept for the page
// are then read again by their offsets, only them.

import (
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/result"
)

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
	segs   []*segment
	offs   []int64   // byte offset of each line (index n-1), and the file size last
	times  []float64 // each line's time (index n-1)
	lines  int
	size   int64
	marks  map[int]bool
	header console.LogHeader
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
// note (within the first 5000 lines), else the header's time, else the
// run's start.
func logBase(f *os.File, res *engine.Result) time.Time {
	if f == nil {
		return res.Start
	}
	r := console.NewReader(io.NewSectionReader(f, 0, math.MaxInt64))
	first := ""
	if len(res.Steps) > 0 && !res.Steps[0].Start.IsZero() {
		first = res.Steps[0].Index
	}
	for i := 0; i < 5000; i++ {
		l, err := r.Next()
		if err != nil {
			break
		}
		if l.Header {
			if h := r.Header(); h.Start.Nanosecond() != 0 {
				return h.Start
			}
			continue
		}
		if first == "" {
			break
		}
		if idx, ok := console.StepOf(l); ok && idx == first {
			return res.Steps[0].Start.Add(-time.Duration(l.T * float64(time.Second)))
		}
	}
	if h := r.Header(); !h.Start.IsZero() {
		return h.Start
	}
	return res.Start
}

// slack absorbs the log's millisecond rounding at a step's end.
const slack = 0.002

// indexConsole reads the log once: it assigns each line to the innermost
// step running when it was printed (a step's note starts it) and records
// the lines of the failing step that hold a highlighted text.
func indexConsole(r io.Reader, byIdx map[string]*stepSpan, highlights []string, failure *stepSpan) *consoleIndex {
	ci := &consoleIndex{marks: map[int]bool{}}
	cr := console.NewReader(r)
	var cur *segment
	var owner *stepSpan
	newSeg := func(step *stepSpan, line int, t float64) {
		cur = &segment{step: step, first: line, last: line - 1, startT: t}
		if step != nil && step.ran && t+slack < step.start {
			cur.earlier = true
		}
		ci.segs = append(ci.segs, cur)
	}
	for {
		l, err := cr.Next()
		if err != nil {
			break
		}
		ci.lines = l.N
		ci.offs = append(ci.offs, l.Off)
		ci.times = append(ci.times, l.T)
		ci.size = l.Off + l.Size
		if l.Header {
			continue
		}
		if idx, ok := console.StepOf(l); ok {
			if sp := byIdx[idx]; sp != nil {
				owner = sp
				newSeg(owner, l.N, l.T)
			}
		}
		// A step that has ended hands the lines to its parent.
		for owner != nil && owner.ran && l.T > owner.end+slack && (cur == nil || cur.first != l.N) {
			owner = owner.parent
		}
		if cur == nil || cur.step != owner {
			newSeg(owner, l.N, l.T)
		}
		cur.last = l.N
		if failure != nil && owner == failure {
			for _, h := range highlights {
				if strings.Contains(l.Text, h) {
					ci.marks[l.N] = true
					break
				}
			}
		}
	}
	ci.header = cr.Header()
	ci.offs = append(ci.offs, ci.size)
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
	marks := slices.Sorted(maps.Keys(ci.marks))
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
		for i, n := range marks {
			if i >= 50 {
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

// readKept reads the kept lines by their offsets and calls fn for each, in
// order, with its time from pass 1.
func (ci *consoleIndex) readKept(f io.ReaderAt, keep []lineRange, fn func(console.Line)) error {
	for _, k := range keep {
		from, to := ci.offs[k.a-1], ci.offs[k.b]
		sr := io.NewSectionReader(f, from, to-from)
		r := console.NewReader(sr)
		if k.a > 1 {
			r = console.ContinueReader(sr, ci.header, k.a-1)
		}
		for n := k.a; n <= k.b; n++ {
			l, err := r.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			l.Off, l.T = from+l.Off, ci.times[n-1]
			fn(l)
		}
	}
	return nil
}

// consoleView builds the page's console sections from the index.
type consoleView struct {
	p      *page
	ci     *consoleIndex
	secOf  map[int]*section // first line -> section
	prev   int              // the last line shown
	shown  int64
	budget int64
}

// console fills the page's console sections from the log f (openErr: why
// it could not be opened).
func (p *page) console(f *os.File, openErr error, byIdx map[string]*stepSpan, order []*stepSpan, highlights []string, opt *Options) error {
	if openErr != nil {
		p.addEmptySections(nil, order)
		if os.IsNotExist(openErr) {
			return fmt.Errorf("no %s in the artifacts", ConsoleFile)
		}
		return openErr
	}
	p.HasConsole = true
	var failure *stepSpan
	if p.Failure != nil {
		failure = p.Failure.span
	}
	ci := indexConsole(io.NewSectionReader(f, 0, math.MaxInt64), byIdx, highlights, failure)
	keep := ci.keepPlan(opt.ConsoleBudget, failure)
	p.Console.Lines, p.Console.Bytes = ci.lines, ci.size
	v := &consoleView{p: p, ci: ci, budget: opt.ConsoleBudget}
	p.addEmptySections(v.sections(failure), order)

	// The kept lines, with a note where lines were left out.
	if len(keep) > 0 && (keep[0].a != 1 || keep[0].b != ci.lines) {
		p.Console.Cut = true
	}
	err := ci.readKept(f, keep, func(l console.Line) { v.add(l, highlights, opt) })
	if v.prev < ci.lines {
		v.addGap(v.prev+1, ci.lines)
	}
	return err
}

// sections makes one section per segment and returns the steps that have
// one.
func (v *consoleView) sections(failure *stepSpan) map[*stepSpan]bool {
	rowOf := map[*stepSpan]*row{}
	for _, r := range v.p.Rows {
		rowOf[r.span] = r
	}
	v.secOf = make(map[int]*section)
	seen := map[*stepSpan]bool{}
	var secs []*section
	for i, sg := range v.ci.segs {
		s := &section{ID: fmt.Sprintf("sec-%d", i), First: sg.first, Last: sg.last, Earlier: sg.earlier}
		if sg.step != nil {
			r := rowOf[sg.step]
			s.Step, s.Depth, s.Status = r, r.Depth, r.Status
			s.Title = r.Idx + " " + r.Name
			if !seen[sg.step] && !sg.earlier {
				s.ID = r.Anchor
				seen[sg.step] = true
			}
			if sg.earlier {
				s.Title += " (an earlier attempt)"
			}
			s.Open = sg.step == failure && !sg.earlier
		} else if sg.first <= 2 || len(secs) == 0 {
			s.Title = "before the first step"
		} else {
			s.Title = "between steps"
		}
		if sg.last >= sg.first {
			s.Lines = sg.last - sg.first + 1
		}
		secs = append(secs, s)
		v.secOf[sg.first] = s
	}
	v.p.Sections = secs
	return seen
}

// sectionAt is the section holding line n.
func (v *consoleView) sectionAt(n int) *section {
	segs := v.ci.segs
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > n }) - 1
	if i < 0 {
		return nil
	}
	return v.secOf[segs[i].first]
}

// addGap notes that lines from..to were left out, split at section
// boundaries so that each section says what it lost.
func (v *consoleView) addGap(from, to int) {
	for n := from; n <= to; {
		s := v.sectionAt(n)
		end := to
		if s != nil {
			end = min(to, s.Last)
		}
		if s != nil && end >= n {
			bytes := v.ci.offs[end] - v.ci.offs[n-1]
			s.Items = append(s.Items, item{Gap: true, GapLines: end - n + 1, GapBytes: bytes, GapFrom: n, GapTo: end})
			v.p.Console.LeftLines += end - n + 1
			v.p.Console.LeftBytes += bytes
		}
		if end < n {
			end = n
		}
		n = end + 1
	}
}

// add shows a kept line. The budget holds the text as read; escaping may
// grow it (a board printing "<" for pages): lines past twice the budget,
// escaped, are left out like the others.
func (v *consoleView) add(l console.Line, highlights []string, opt *Options) {
	if v.shown > 2*v.budget && l.N > 1 {
		v.p.Console.Cut = true
		return // counted in the gap before the next kept line
	}
	if l.N > v.prev+1 {
		v.addGap(v.prev+1, l.N-1)
	}
	v.prev = l.N
	if l.Header {
		return
	}
	s := v.sectionAt(l.N)
	if s == nil {
		return
	}
	// Masked as shown: colour codes between a secret's characters
	// (grep --color) are gone once cleaned.
	text := opt.redact(cleanLine(opt.redact(l.Text)))
	it := item{N: l.N, T: strconv.FormatFloat(l.T, 'f', 3, 64), Note: l.Note, Segs: []textSeg{{Text: text}}}
	if v.ci.marks[l.N] {
		it.Segs = markText(text, highlights)
	}
	s.Items = append(s.Items, it)
	v.p.Console.Shown++
	v.shown += escapedLen(text) + lineCost
}
