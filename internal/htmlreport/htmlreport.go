// Package htmlreport writes report.html, the page a person reads after a
// run: one self-contained file (no network: styles and the small script are
// inline) with the run's header, a timeline of the steps, the console log
// cut into step sections, and the artifacts; and the trends page of several
// runs (see WriteHistory).
//
// The page holds only what report.json and console.log hold, which jsplan
// writes with secrets masked; Options.Redact masks once more when the run's
// redactor is at hand.
package htmlreport

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"math"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/artifact"
	"github.com/jsplan/jsplan/internal/fsutil"
	"github.com/jsplan/jsplan/internal/shorten"
)

//go:embed templates
var files embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"pct":  func(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) + "%" },
	"px":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"dur":  FormatSeconds,
	"size": humanSize,
	"depthpad": func(d int) template.CSS {
		return template.CSS(fmt.Sprintf("padding-left:%.1fem", 0.3+1.1*float64(d)))
	},
}).ParseFS(files, "templates/*.tmpl"))

func asset(name string) string {
	b, err := files.ReadFile("templates/" + name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// File names in the artifacts directory.
const (
	ReportFile  = "report.html"
	JSONFile    = "report.json"
	ConsoleFile = "console.log"
)

// DefaultBudget is the most console text a page embeds.
const DefaultBudget = 2 << 20

// Options tunes the page.
type Options struct {
	// Redact masks secrets in every text of the page; nil leaves the
	// texts as report.json and console.log have them (already masked).
	Redact func(string) string
	// ConsoleBudget bounds the console bytes embedded (default DefaultBudget).
	ConsoleBudget int64
}

func (o *Options) redact(s string) string {
	if o.Redact == nil {
		return s
	}
	return o.Redact(s)
}

// Write writes dir/report.html for res, with dir/console.log and the
// files in dir.
func Write(dir string, res *engine.Result, opt Options) error {
	var buf bytes.Buffer
	if err := Render(&buf, dir, res, opt); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, ReportFile), buf.Bytes())
}

// Rebuild writes out (default dir/report.html) from dir/report.json and
// dir/console.log.
func Rebuild(dir, out string, opt Options) error {
	res, err := ReadResult(dir)
	if err != nil {
		return err
	}
	if out == "" {
		return Write(dir, res, opt)
	}
	var buf bytes.Buffer
	if err := Render(&buf, dir, res, opt); err != nil {
		return err
	}
	return writeFile(out, buf.Bytes())
}

// maxJSON bounds the report.json read: jsplan's are far smaller (test
// output is cut per case, cases are bounded per step).
const maxJSON = 256 << 20

// ReadResult reads dir/report.json, as the artifacts are read: through
// the directory, never a symlink or special file (see artifact.Open).
func ReadResult(dir string) (*engine.Result, error) {
	b, err := artifact.ReadFile(dir, JSONFile, maxJSON)
	if err != nil {
		return nil, err
	}
	res := &engine.Result{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, JSONFile), err)
	}
	sanitize(res)
	res.Duration = time.Duration(res.Seconds * float64(time.Second))
	return res, nil
}

// sanitize makes a report.json read from disk safe to draw: it drops null
// steps and cases and keeps durations finite and not negative (a report
// may come from anywhere: the pages never trust it).
func sanitize(res *engine.Result) {
	res.Seconds = seconds(res.Seconds)
	res.Steps = sanitizeSteps(res.Steps)
	res.Finally = sanitizeSteps(res.Finally)
}

func sanitizeSteps(list []*engine.StepResult) []*engine.StepResult {
	out := list[:0]
	for _, s := range list {
		if s == nil {
			continue
		}
		s.Seconds = seconds(s.Seconds)
		s.Children = sanitizeSteps(s.Children)
		s.Tests = sanitizeTests(s.Tests)
		out = append(out, s)
	}
	return out
}

func sanitizeTests(list []*result.TestCase) []*result.TestCase {
	out := list[:0]
	for _, t := range list {
		if t == nil {
			continue
		}
		t.Seconds = seconds(t.Seconds)
		t.Children = sanitizeTests(t.Children)
		out = append(out, t)
	}
	return out
}

// maxSeconds bounds a duration read from a report: a century.
const maxSeconds = 100 * 365 * 24 * 3600

func seconds(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return min(v, maxSeconds)
}

// page is what report.html.tmpl renders.
type page struct {
	Res        *engine.Result
	Title      string
	Start      string
	Duration   string
	Images     []imageInfo
	Ticks      []tick
	Grid       template.CSS // the ticks' spacing, for the grid lines
	Rows       []*row
	Failure    *row
	Sections   []*section
	Console    consoleInfo
	Files      []fileInfo
	FilesLeft  int
	Generated  string
	CSS        template.CSS
	JS         template.JS
	CSP        string
	HasConsole bool
	// Lanes are one timeline row per board, in a run on several.
	Lanes []*lane
}

// csp is the pages' Content-Security-Policy: nothing from the network,
// and only the page's own style sheet and script, by their hashes, so that
// no markup or script a report smuggled in could run. Style attributes
// (a bar's place, an indent) stay allowed: they cannot run script.
func csp(css, js string) string {
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return "default-src 'none'; style-src " + hash(css) + "; style-src-attr 'unsafe-inline'; script-src " + hash(js) + "; img-src data:"
}

type imageInfo struct {
	Step, Path, Format, SHA256 string
	Size                       int64
}

type tick struct {
	Left  float64
	Label string
}

// row is one step: a bar on the timeline and its details.
type row struct {
	Idx, Name, Type, Status, Error, Output, Tip string
	Depth, Attempts, TestsLeft                  int
	Left, Width                                 float64
	Seconds, Offset                             float64
	Finally, Parent, Ignored, Failure, Ran      bool
	FirstFinally                                bool
	Anchor                                      string
	Tests                                       []*result.TestCase
	span                                        *stepSpan
}

// section is a part of the console: the lines of one step (or none).
type section struct {
	ID, Title, Status string
	Step              *row
	Depth             int
	Open, Earlier     bool
	Items             []item
	Lines             int
	First, Last       int
}

// item is a console line, or a note that lines were left out.
type item struct {
	N        int
	T        string
	Segs     []textSeg
	Note     bool
	Gap      bool
	GapLines int
	GapBytes int64
	GapFrom  int
	GapTo    int
}

type textSeg struct {
	Text string
	Mark bool
}

type consoleInfo struct {
	Lines, Shown int
	Bytes        int64
	Cut          bool
	LeftLines    int
	LeftBytes    int64
	Missing      string
}

type fileInfo struct {
	Path string
	Href template.URL
	Size int64
	Dir  bool
}

// Render writes the page for res to w.
func Render(w io.Writer, dir string, res *engine.Result, opt Options) error {
	if opt.ConsoleBudget <= 0 {
		opt.ConsoleBudget = DefaultBudget
	}
	p := &page{Res: res, CSS: template.CSS(asset("report.css")), JS: template.JS(asset("report.js"))}
	p.CSP = csp(string(p.CSS), string(p.JS))
	p.Title = fmt.Sprintf("%s on %s: %s", opt.redact(res.Plan), opt.redact(res.Board), res.Status)
	if len(res.Boards) > 1 {
		var names []string
		for _, rb := range res.Boards {
			names = append(names, rb.Board)
		}
		p.Title = fmt.Sprintf("%s on %s: %s", opt.redact(res.Plan), opt.redact(strings.Join(names, ", ")), res.Status)
	}
	if !res.Start.IsZero() {
		p.Start = res.Start.Local().Format("2006-01-02 15:04:05 MST")
	}
	p.Duration = FormatSeconds(res.Seconds)
	p.Generated = time.Now().Local().Format("2006-01-02 15:04:05 MST")
	for _, im := range res.Images {
		p.Images = append(p.Images, imageInfo{Step: im.Step, Path: opt.redact(im.Path), Format: im.Format, SHA256: im.SHA256, Size: im.Size})
	}

	conPath := filepath.Join(dir, ConsoleFile)
	if len(res.Boards) > 1 {
		// a run on several boards: the first board's console here; each
		// board's log is in the artifacts
		conPath = filepath.Join(dir, engine.ConsoleLogName(len(res.Boards), res.Boards[0].Board))
	}
	// The log is opened once: its start calibrates the timeline, then the
	// console sections read it (console.go).
	con, conErr := artifact.Open(filepath.Dir(conPath), filepath.Base(conPath))
	if conErr == nil {
		defer con.Close()
	}
	base := logBase(con, res)
	byIdx, order := spans(res, base)
	p.Rows, p.Failure = rows(res, order, byIdx, &opt)
	p.Ticks = ticks(timelineEnd(res, order))
	p.Lanes = lanes(res, p.Rows, &opt)
	if len(p.Ticks) > 1 {
		p.Grid = template.CSS(fmt.Sprintf("--grid:%.3f%%", p.Ticks[1].Left))
	}

	var highlights []string
	if p.Failure != nil {
		highlights = quoted(p.Failure.Error)
	}
	if len(order) == 0 {
		// The run never started (a busy board): a console.log here is an
		// older run's.
		p.Console.Missing = "the run did not start"
	} else if err := p.console(con, conErr, byIdx, order, highlights, &opt); err != nil {
		p.Console.Missing = err.Error()
	}
	p.Files, p.FilesLeft = listFiles(dir, &opt)

	// Redact what came from the report (console lines are done as read).
	p.Res = redactResult(res, &opt)
	return tmpl.ExecuteTemplate(w, "report.html.tmpl", p)
}

// redactResult returns a copy of res's header texts, masked.
func redactResult(res *engine.Result, opt *Options) *engine.Result {
	c := *res
	c.Plan, c.File, c.Board = opt.redact(c.Plan), opt.redact(c.File), opt.redact(c.Board)
	c.Summary, c.Error, c.Command = opt.redact(c.Summary), opt.redact(c.Error), opt.redact(c.Command)
	c.Attempts = nil
	for _, a := range res.Attempts {
		a.Board, a.Reason = opt.redact(a.Board), opt.redact(a.Reason)
		c.Attempts = append(c.Attempts, a)
	}
	return &c
}

// timelineEnd is the length of the time axis in seconds.
func timelineEnd(res *engine.Result, order []*stepSpan) float64 {
	end := res.Seconds
	for _, sp := range order {
		if sp.ran {
			end = max(end, sp.res.Start.Sub(res.Start).Seconds()+sp.res.Seconds)
		}
	}
	if end <= 0 {
		end = 1
	}
	return end
}

func rows(res *engine.Result, order []*stepSpan, byIdx map[string]*stepSpan, opt *Options) ([]*row, *row) {
	total := timelineEnd(res, order)
	// Steps that did not run sit where the main steps stopped.
	var stopped float64
	for _, s := range res.Steps {
		if sp := byIdx[s.Index]; sp != nil && sp.ran {
			stopped = max(stopped, s.Start.Sub(res.Start).Seconds()+s.Seconds)
		}
	}
	finally := map[*engine.StepResult]bool{}
	var mark func(list []*engine.StepResult)
	mark = func(list []*engine.StepResult) {
		for _, s := range list {
			finally[s] = true
			mark(s.Children)
		}
	}
	mark(res.Finally)

	var out []*row
	var failure *row
	tb := newTestBudget()
	for _, sp := range order {
		s := sp.res
		depth := 0
		for p := sp.parent; p != nil; p = p.parent {
			depth++
		}
		r := &row{Idx: s.Index, Name: clip(opt.redact(s.Name), maxCaseText), Type: s.Type, Status: string(s.Status), Error: clip(opt.redact(s.Error), maxStepText),
			Output: clip(opt.redact(s.Output), maxStepText), Depth: depth, Attempts: s.Attempts, Seconds: s.Seconds, Finally: finally[s],
			Parent: len(s.Children) > 0, Ignored: s.Ignored, Ran: sp.ran, Anchor: "con-" + s.Index, span: sp}
		r.Tests, r.TestsLeft = redactTests(s.Tests, opt, tb)
		if sp.ran {
			r.Offset = s.Start.Sub(res.Start).Seconds()
			r.Left = 100 * r.Offset / total
			r.Width = 100 * s.Seconds / total
		} else {
			r.Offset = stopped
			r.Left = 100 * stopped / total
		}
		r.Left = min(max(r.Left, 0), 100)
		r.Width = min(max(r.Width, 0), 100-r.Left)
		tip := fmt.Sprintf("%s %s (%s): %s", r.Idx, r.Name, r.Type, r.Status)
		if sp.ran {
			tip += fmt.Sprintf(", %s from +%s", FormatSeconds(s.Seconds), FormatSeconds(r.Offset))
		}
		if s.Attempts > 1 {
			tip += fmt.Sprintf(", %d attempts", s.Attempts)
		}
		if s.Ignored {
			tip += ", continue-on-error"
		}
		if r.Error != "" {
			tip += "\n" + shorten.FirstLine(r.Error)
		}
		r.Tip = tip
		// The failure is the deepest failed step, not ignored, that has no
		// failed child: the first one (a finally failure counts after the
		// main steps' one).
		if failure == nil && !s.Ignored && (s.Status == result.Failed || s.Status == result.Error ||
			s.Status == result.Interrupted) && !hasFailedChild(s) {
			failure = r
			r.Failure = true
		}
		if r.Finally && depth == 0 && s == res.Finally[0] {
			r.FirstFinally = true
		}
		out = append(out, r)
	}
	return out, failure
}

func hasFailedChild(s *engine.StepResult) bool {
	for _, c := range s.Children {
		if !c.Ignored && (c.Status == result.Failed || c.Status == result.Error || c.Status == result.Interrupted) {
			return true
		}
	}
	return false
}

// Budgets of the page for what the board reported (report.json holds it
// all): the test cases listed, some kept for failures, and the bytes of
// their messages and output; and any one text of a step.
const (
	maxCases    = 1500
	maxBadCases = 1500
	maxTestText = 512 << 10
	maxCaseText = 4 << 10
	maxStepText = 64 << 10
)

// testBudget is what is left of the page's budgets for test cases.
type testBudget struct {
	cases, bad int
	text       int
}

func newTestBudget() *testBudget {
	return &testBudget{cases: maxCases, bad: maxBadCases, text: maxTestText}
}

// redactTests returns the cases the page lists, masked and within the
// budget, and how many it leaves out. A failing case is never dropped for
// a passing one: failures have a budget of their own.
func redactTests(ts []*result.TestCase, opt *Options, b *testBudget) ([]*result.TestCase, int) {
	var out []*result.TestCase
	left := 0
	for _, t := range ts {
		if t == nil {
			continue
		}
		children, cl := redactTests(t.Children, opt, b)
		left += cl
		bad := t.Status.Failing() && !t.Allowed
		switch {
		case bad && b.bad > 0:
			b.bad--
		case b.cases > 0:
			b.cases--
		case len(children) > 0: // the suite of listed cases
		default:
			left++
			continue
		}
		c := *t
		c.Suite, c.Name = clip(opt.redact(c.Suite), maxCaseText), clip(opt.redact(c.Name), maxCaseText)
		c.Message, c.Output = b.clip(opt.redact(c.Message)), b.clip(opt.redact(c.Output))
		if bad && c.Message == "" && t.Message != "" { // a failure keeps why
			c.Message = clip(opt.redact(t.Message), 1<<10)
		}
		c.Children = children
		out = append(out, &c)
	}
	return out, left
}

// clip takes s, cut to a case's share, out of the budget ("" once spent).
func (b *testBudget) clip(s string) string {
	if s == "" || b.text <= 0 {
		return ""
	}
	s = clip(s, min(maxCaseText, b.text))
	b.text -= len(s)
	return s
}

// clip cuts s to at most n bytes (on a rune boundary), saying so.
func clip(s string, n int) string {
	head, more := shorten.Cut(s, n)
	if more == 0 {
		return s
	}
	return head + fmt.Sprintf(" [… %d bytes more in report.json]", more)
}

// ticks are the labels of the time axis: 1, 2 or 5 times a power of ten,
// five to ten of them.
func ticks(total float64) []tick {
	if math.IsNaN(total) || math.IsInf(total, 0) || total <= 0 {
		total = 1
	}
	step := max(niceStep(total/8), 1e-3)
	var out []tick
	for i := 0; i <= 10; i++ {
		v := float64(i) * step
		if v > total+1e-9 {
			break
		}
		out = append(out, tick{Left: 100 * v / total, Label: FormatSeconds(v)})
	}
	return out
}

// quoted returns the Go-quoted strings in an error message ("console
// printed %q", "the console last printed: %q"), line by line: the texts to
// highlight in the failing step's console.
func quoted(msg string) []string {
	var out []string
	for _, m := range quotedRe.FindAllString(msg, -1) {
		s, err := strconv.Unquote(m)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(s, "\n") {
			if l = strings.TrimSpace(strings.TrimRight(l, "\r")); len(l) >= 3 {
				out = append(out, l)
			}
		}
	}
	return out
}

var quotedRe = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// escapedLen is the length of s escaped in HTML.
func escapedLen(s string) int64 {
	n := int64(len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<', '>':
			n += 3
		case '&', '\'', '"':
			n += 4
		}
	}
	return n
}

// addEmptySections gives every step without console lines a section, so
// that its bar has somewhere to point: after its parent's, or where the
// main steps stopped for steps that did not run.
func (p *page) addEmptySections(seen map[*stepSpan]bool, order []*stepSpan) {
	rowOf := map[*stepSpan]*row{}
	for _, r := range p.Rows {
		rowOf[r.span] = r
	}
	for _, sp := range order {
		if seen[sp] {
			continue
		}
		r := rowOf[sp]
		s := &section{ID: r.Anchor, Title: r.Idx + " " + r.Name, Step: r, Depth: r.Depth, Status: r.Status, Open: r.Failure}
		// Insert after the last section that starts before this step.
		at := len(p.Sections)
		if sp.ran || r.Finally {
			for i, other := range p.Sections {
				if other.Step != nil && other.Step.Offset > r.Offset+slack && !other.Earlier {
					at = i
					break
				}
			}
		} else {
			for i, other := range p.Sections {
				if other.Step != nil && other.Step.Finally {
					at = i
					break
				}
			}
		}
		p.Sections = append(p.Sections[:at], append([]*section{s}, p.Sections[at:]...)...)
		if seen != nil {
			seen[sp] = true
		}
	}
}

// ansiRe matches terminal escape sequences (colours, cursor moves, titles).
var ansiRe = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])`)

// cleanLine makes a console line fit to show: valid UTF-8, without
// terminal escapes and control characters (tabs stay).
func cleanLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0x1b) >= 0 {
		s = ansiRe.ReplaceAllString(s, "")
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// markText splits text around the highlighted strings.
func markText(text string, hs []string) []textSeg {
	var out []textSeg
	for text != "" {
		best, bl := -1, 0
		for _, h := range hs {
			if i := strings.Index(text, h); i >= 0 && (best < 0 || i < best) {
				best, bl = i, len(h)
			}
		}
		if best < 0 {
			out = append(out, textSeg{Text: text})
			break
		}
		if best > 0 {
			out = append(out, textSeg{Text: text[:best]})
		}
		out = append(out, textSeg{Text: text[best : best+bl], Mark: true})
		text = text[best+bl:]
	}
	return out
}

// listFiles lists the artifacts (not the page itself), at most maxFiles.
func listFiles(dir string, opt *Options) ([]fileInfo, int) {
	const maxFiles = 1000
	var out []fileInfo
	left := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		name := d.Name()
		if rel == ReportFile || strings.HasPrefix(name, "."+ReportFile) || name == ".jsplan-artifacts" || strings.HasPrefix(name, ".") && strings.Contains(name, ".json.") {
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if len(out) >= maxFiles {
			left++
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		for i := range parts {
			parts[i] = url.PathEscape(parts[i])
		}
		out = append(out, fileInfo{Path: opt.redact(filepath.ToSlash(rel)), Href: template.URL("./" + strings.Join(parts, "/")), Size: fi.Size()})
		return nil
	})
	return out, left
}

// FormatSeconds prints a duration in seconds for people: 12ms, 3.4s, 2m05s.
func FormatSeconds(s float64) string {
	switch {
	case s < 0:
		return "-" + FormatSeconds(-s)
	case s == 0:
		return "0s"
	case s < 0.001:
		return "<1ms"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 60:
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", int(s)/60, int(s)%60)
	}
	return fmt.Sprintf("%dh%02dm", int(s)/3600, int(s)%3600/60)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// writeFile writes data to path atomically.
func writeFile(path string, data []byte) error { return fsutil.WriteFileAtomic(path, data, 0o644) }
