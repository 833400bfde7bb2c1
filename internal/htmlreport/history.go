package htmlreport

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// histRun is one run of the trends page.
type histRun struct {
	Res    *engine.Result
	Dir    string
	Href   template.URL // its report.html, relative to the page
	Label  string
	Start  string
	N      int
	Status result.Status
}

// series is one step's durations across the runs (NaN where the run has no
// such step, or the step did not run).
type series struct {
	Key, Idx, Name string
	Depth          int
	Leaf           bool
	Secs           []float64
	Status         []result.Status
	Shown          bool
	Color          string
	Median         float64
	Min, Max, Last float64
	Count          int
	Change         string
	Spark          template.HTML
}

type historyPage struct {
	Runs      []*histRun
	Series    []*series
	Plot      template.HTML
	Plans     string
	Generated string
	CSS       template.CSS
	JS        template.JS
	CSP       string
	Skipped   []string
	Reg       *pageRegressions
}

// pageRegressions is the analysis as the page shows it: the items that
// got worse (regressed, flaky, failing, fixed) first.
type pageRegressions struct {
	*Regressions
	Worse []*Item
}

var palette = []string{"#0969da", "#cf222e", "#1f883d", "#8250df", "#d4731a", "#1b7c83", "#bf3989", "#6e7781", "#953800", "#4d2d00"}

// LoadRuns reads the runs under dirs: each DIR is an artifacts directory
// (with report.json) or holds some as subdirectories. Runs come sorted by
// start time; directories without a readable report are returned apart.
func LoadRuns(dirs []string) ([]*histRun, []string) {
	var runs []*histRun
	var skipped []string
	add := func(dir string) bool {
		res, err := ReadResult(dir)
		if err != nil {
			return false
		}
		runs = append(runs, &histRun{Res: res, Dir: dir})
		return true
	}
	for _, d := range dirs {
		if add(d) {
			continue
		}
		ents, err := os.ReadDir(d)
		found := false
		if err == nil {
			for _, e := range ents {
				if e.IsDir() && add(filepath.Join(d, e.Name())) {
					found = true
				}
			}
		}
		if !found {
			skipped = append(skipped, d)
		}
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Res.Start.Before(runs[j].Res.Start) })
	return runs, skipped
}

// WriteHistory writes the trends page of the runs under dirs to out and
// returns how many runs it holds.
func WriteHistory(out string, dirs []string) (int, error) {
	_, n, err := WriteHistoryAnalysis(out, dirs)
	return n, err
}

// WriteHistoryAnalysis writes the trends page of the runs under dirs to
// out and returns its analysis (every step's and test case's last pass,
// first failure after it, flaky ones) and how many runs it holds.
func WriteHistoryAnalysis(out string, dirs []string) (*Regressions, int, error) {
	runs, skipped := LoadRuns(dirs)
	if len(runs) == 0 {
		return nil, 0, fmt.Errorf("no report.json in %s", strings.Join(dirs, ", "))
	}
	var buf bytes.Buffer
	reg, err := renderHistory(&buf, out, runs, skipped)
	if err != nil {
		return nil, 0, err
	}
	return reg, len(runs), writeFile(out, buf.Bytes())
}

func renderHistory(buf *bytes.Buffer, out string, runs []*histRun, skipped []string) (*Regressions, error) {
	p := &historyPage{Runs: runs, Skipped: skipped, CSS: template.CSS(asset("report.css") + asset("history.css")),
		JS: template.JS(asset("history.js")), Generated: time.Now().Local().Format("2006-01-02 15:04:05 MST")}
	p.CSP = csp(string(p.CSS), string(p.JS))
	outDir, _ := filepath.Abs(filepath.Dir(out))
	plans := map[string]bool{}
	var planNames []string
	for i, r := range runs {
		r.N = i + 1
		r.Status = r.Res.Status
		r.Start = r.Res.Start.Local().Format("2006-01-02 15:04")
		r.Label = r.Res.Start.Local().Format("01-02 15:04")
		if abs, err := filepath.Abs(filepath.Join(r.Dir, ReportFile)); err == nil {
			if _, err := os.Stat(abs); err == nil {
				if rel, err := filepath.Rel(outDir, abs); err == nil {
					parts := strings.Split(filepath.ToSlash(rel), "/")
					for i := range parts {
						if parts[i] != ".." {
							parts[i] = url.PathEscape(parts[i])
						}
					}
					r.Href = template.URL("./" + strings.Join(parts, "/"))
				}
			}
		}
		if !plans[r.Res.Plan] {
			plans[r.Res.Plan] = true
			planNames = append(planNames, r.Res.Plan)
		}
	}
	p.Plans = strings.Join(planNames, ", ")
	p.Series = buildSeries(runs)
	p.Plot = plot(runs, p.Series)
	reg := Analyze(runs)
	p.Reg = &pageRegressions{Regressions: reg}
	for _, it := range reg.Items {
		if it.Verdict != Passing {
			p.Reg.Worse = append(p.Reg.Worse, it)
		}
	}
	return reg, tmpl.ExecuteTemplate(buf, "history.html.tmpl", p)
}

// buildSeries makes one series per step (by index and name), in the order
// of the newest run, then the steps only older runs have; plus the whole
// run first.
func buildSeries(runs []*histRun) []*series {
	byKey := map[string]*series{}
	var order []*series
	total := &series{Key: "run", Name: "whole run", Idx: "", Depth: 0, Leaf: false}
	order = append(order, total)
	for ri := len(runs) - 1; ri >= 0; ri-- {
		var walk func(list []*engine.StepResult, depth int, prefix string)
		walk = func(list []*engine.StepResult, depth int, prefix string) {
			for _, s := range list {
				key := prefix + s.Index + " " + s.Name
				if byKey[key] == nil {
					sr := &series{Key: key, Idx: prefix + s.Index, Name: s.Name, Depth: depth, Leaf: len(s.Children) == 0}
					byKey[key] = sr
					order = append(order, sr)
				}
				walk(s.Children, depth+1, prefix)
			}
		}
		walk(runs[ri].Res.Steps, 0, "")
		walk(runs[ri].Res.Finally, 0, "")
	}
	for _, s := range order {
		s.Secs = make([]float64, len(runs))
		s.Status = make([]result.Status, len(runs))
		for i := range s.Secs {
			s.Secs[i] = math.NaN()
		}
	}
	for i, r := range runs {
		total.Secs[i], total.Status[i] = r.Res.Seconds, r.Res.Status
		var walk func(list []*engine.StepResult)
		walk = func(list []*engine.StepResult) {
			for _, s := range list {
				if sr := byKey[s.Index+" "+s.Name]; sr != nil && s.Status != result.Skipped {
					sr.Secs[i], sr.Status[i] = s.Seconds, s.Status
				}
				walk(s.Children)
			}
		}
		walk(r.Res.Steps)
		walk(r.Res.Finally)
	}
	for _, s := range order {
		var vals []float64
		for _, v := range s.Secs {
			if !math.IsNaN(v) {
				vals = append(vals, v)
			}
		}
		s.Count = len(vals)
		if len(vals) == 0 {
			continue
		}
		s.Last = vals[len(vals)-1]
		sorted := append([]float64(nil), vals...)
		sort.Float64s(sorted)
		s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
		s.Median = sorted[len(sorted)/2]
		if len(sorted)%2 == 0 {
			s.Median = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
		}
		if s.Median > 0 && len(vals) > 1 {
			s.Change = fmt.Sprintf("%+.0f%%", 100*(s.Last-s.Median)/s.Median)
		}
	}
	// Shown at first: the whole run and the six slowest steps without
	// children (a boot, a login), by median.
	leaves := []*series{}
	for _, s := range order[1:] {
		if s.Leaf && s.Count > 0 {
			leaves = append(leaves, s)
		}
	}
	sort.SliceStable(leaves, func(i, j int) bool { return leaves[i].Median > leaves[j].Median })
	total.Shown = true
	for i, s := range leaves {
		if i < 6 {
			s.Shown = true
		}
	}
	for i, s := range order {
		s.Color = palette[i%len(palette)]
		s.Spark = sparkline(s)
	}
	return order
}

// plot draws the series as an SVG line chart: runs along x, seconds up y.
func plot(runs []*histRun, ss []*series) template.HTML {
	const W, H, left, right, top, bottom = 960.0, 390.0, 96.0, 24.0, 14.0, 72.0
	maxY := 0.0
	for _, s := range ss {
		for _, v := range s.Secs {
			if !math.IsNaN(v) {
				maxY = max(maxY, v)
			}
		}
	}
	step := niceStep(maxY / 5)
	top5 := math.Ceil(maxY/step) * step
	if top5 <= 0 {
		top5 = 1
	}
	// One long run must not flatten every other: when the durations span
	// more than 20x, y is logarithmic, decade by decade.
	minY := math.Inf(1)
	for _, s := range ss {
		for _, v := range s.Secs {
			if !math.IsNaN(v) && v > 0 {
				minY = min(minY, v)
			}
		}
	}
	logScale := maxY > 0 && maxY/minY > 20
	lo, hi := 0.0, 0.0
	if logScale {
		lo, hi = math.Pow(10, math.Floor(math.Log10(minY))), math.Pow(10, math.Ceil(math.Log10(maxY)))
	}
	n := len(runs)
	x := func(i int) float64 {
		if n == 1 {
			return left + (W-left-right)/2
		}
		return left + float64(i)*(W-left-right)/float64(n-1)
	}
	y := func(v float64) float64 { return top + (H-top-bottom)*(1-v/top5) }
	ticks := []float64{}
	for v := 0.0; v <= top5+step/2; v += step {
		ticks = append(ticks, v)
	}
	if logScale {
		y = func(v float64) float64 {
			f := (math.Log10(max(v, lo)) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
			return top + (H-top-bottom)*(1-f)
		}
		ticks = ticks[:0]
		decades := math.Log10(hi / lo)
		for d := lo; d <= hi*1.001; d *= 10 {
			ticks = append(ticks, d)
			if decades <= 3 && d*10 <= hi*1.001 {
				ticks = append(ticks, 2*d, 5*d)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot" viewBox="0 0 %.0f %.0f" role="img" aria-label="step durations across runs" xmlns="http://www.w3.org/2000/svg">`, W, H)
	for _, v := range ticks {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/><text class="yl" x="%.1f" y="%.1f">%s</text>`,
			left, W-right, y(v), y(v), left-6, y(v)+4, template.HTMLEscapeString(FormatSeconds(v)))
	}
	if logScale {
		fmt.Fprintf(&b, `<text class="yl scale" x="%.1f" y="%.1f">log scale</text>`, left-6, H-6)
	}
	every := max(1, n/12)
	for i, r := range runs {
		if i%every != 0 && i != n-1 {
			continue
		}
		fmt.Fprintf(&b, `<text class="xl" transform="translate(%.1f %.1f) rotate(-35)">%s</text>`, x(i), H-bottom+14, template.HTMLEscapeString(fmt.Sprintf("#%d %s", r.N, r.Label)))
	}
	for si, s := range ss {
		hidden := ""
		if !s.Shown {
			hidden = ` style="display:none"`
		}
		fmt.Fprintf(&b, `<g class="series" id="ser-%d" data-s="%d"%s stroke="%s" fill="%s">`, si, si, hidden, s.Color, s.Color)
		var d strings.Builder
		pen := false
		for i, v := range s.Secs {
			if math.IsNaN(v) {
				pen = false
				continue
			}
			if pen {
				d.WriteString("L")
			} else {
				d.WriteString("M")
			}
			fmt.Fprintf(&d, "%.1f %.1f ", x(i), y(v))
			pen = true
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke-width="2"/>`, strings.TrimSpace(d.String()))
		for i, v := range s.Secs {
			if math.IsNaN(v) {
				continue
			}
			cls := "pt"
			if st := s.Status[i]; st != result.Passed {
				cls += " bad"
			}
			fmt.Fprintf(&b, `<circle class="%s" cx="%.1f" cy="%.1f" r="3.5"><title>%s: %s, %s (%s)</title></circle>`, cls, x(i), y(v),
				template.HTMLEscapeString(strings.TrimSpace(s.Idx+" "+s.Name)), template.HTMLEscapeString(fmt.Sprintf("#%d %s", runs[i].N, runs[i].Start)), FormatSeconds(v), template.HTMLEscapeString(string(s.Status[i])))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// sparkline is a small SVG of one series for the table.
func sparkline(s *series) template.HTML {
	const W, H = 120.0, 22.0
	if s.Count == 0 || s.Max <= 0 {
		return ""
	}
	n := len(s.Secs)
	var d strings.Builder
	pen := false
	for i, v := range s.Secs {
		if math.IsNaN(v) {
			pen = false
			continue
		}
		xx := W / 2
		if n > 1 {
			xx = 2 + float64(i)*(W-4)/float64(n-1)
		}
		yy := 2 + (H-4)*(1-v/s.Max)
		if pen {
			fmt.Fprintf(&d, "L%.1f %.1f ", xx, yy)
		} else {
			fmt.Fprintf(&d, "M%.1f %.1f ", xx, yy)
		}
		pen = true
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" aria-hidden="true"><path d="%s" fill="none" stroke="%s" stroke-width="1.5"/></svg>`,
		W, H, W, H, strings.TrimSpace(d.String()), s.Color))
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
