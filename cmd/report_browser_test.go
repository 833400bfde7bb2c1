package cmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// chromium finds a Chromium to drive: $JSPLAN_CHROMIUM, else the Debian
// packages' binaries (chromium, chromium-headless-shell).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("JSPLAN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-headless-shell", "/usr/lib/chromium/chromium",
		"/usr/lib/chromium/chromium-headless-shell", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium here: install the Debian package chromium (internal/deps/deps.sh install) or set JSPLAN_CHROMIUM")
	return ""
}

// screenshotDir is where the tests leave their screenshots:
// $JSPLAN_TEST_ARTIFACTS when set (kept), else a temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("JSPLAN_TEST_ARTIFACTS"); d != "" {
		d = filepath.Join(d, "report-screenshots")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browser starts a headless Chromium with a fresh profile and nothing that
// phones home; the returned context drives one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium(t)
	// A fresh profile, removed after the browser: its helper processes may
	// still write there for a moment after it exits, so retry.
	profile, err := os.MkdirTemp("", "jsplan-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	tctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(tctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", exe, err)
	}
	return tctx
}

// watch records what the page does behind the reader's back: every
// request it makes and every error it logs.
type watch struct {
	mu       sync.Mutex
	requests []string
	errors   []string
}

func watchPage(t *testing.T, ctx context.Context) *watch {
	t.Helper()
	w := &watch{}
	err := chromedp.Listen(ctx, func(ev any) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			w.requests = append(w.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			w.errors = append(w.errors, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert || e.Type == runtime.ConsoleAPICalledTypeWarning {
				w.errors = append(w.errors, fmt.Sprintf("console.%s", e.Type))
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
				w.errors = append(w.errors, fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	return w
}

// check asserts that the page asked for nothing but itself and logged no
// error.
func (w *watch) check(t *testing.T, page string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.requests) == 0 {
		t.Errorf("no request seen at all: the network events are not watched")
	}
	for _, r := range w.requests {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "file" || u.Path != page {
			t.Errorf("the page made a request for %s", r)
		}
	}
	for _, e := range w.errors {
		t.Errorf("the page logged an error: %s", e)
	}
}

// pageState is what a reader sees, read from the DOM.
type pageState struct {
	Verdict        string   `json:"verdict"`
	VerdictOnTop   bool     `json:"verdictOnTop"`
	Bars           int      `json:"bars"`
	BarSteps       []string `json:"barSteps"`
	FailRows       []string `json:"failRows"`
	FailRowVisible bool     `json:"failRowVisible"`
	OpenSections   []string `json:"openSections"`
	FailLines      int      `json:"failLines"`
	FailError      string   `json:"failError"`
	Marked         []string `json:"marked"`
	PageWidth      int      `json:"pageWidth"`
	ViewWidth      int      `json:"viewWidth"`
	LineFont       float64  `json:"lineFont"`
	LabelWidth     int      `json:"labelWidth"`
}

const stateJS = `(() => {
  const vis = e => { if (!e) return false; const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const v = document.getElementById('verdict');
  const bars = [...document.querySelectorAll('a.tlrow .bar')];
  const fail = [...document.querySelectorAll('a.tlrow.failure')];
  const open = [...document.querySelectorAll('details.sec[open]')].map(d => d.id);
  let failLines = 0, failError = '';
  if (fail.length) {
    const sec = document.getElementById('con-' + fail[0].dataset.step);
    if (sec && sec.open) {
      failLines = [...sec.querySelectorAll('.l')].filter(vis).length;
      const err = sec.querySelector('.err');
      if (vis(err)) failError = err.textContent;
    }
  }
  const line = document.querySelector('.l');
  const lbl = document.querySelector('a.tlrow .lbl');
  return {
    verdict: v ? v.textContent.trim() : '',
    verdictOnTop: vis(v) && v.getBoundingClientRect().top < innerHeight,
    bars: bars.length,
    barSteps: bars.map(b => b.closest('a').dataset.step),
    failRows: fail.map(a => a.dataset.step),
    failRowVisible: fail.length > 0 && vis(fail[0]),
    openSections: open,
    failLines: failLines,
    failError: failError,
    marked: [...document.querySelectorAll('details.sec[open] mark')].map(m => m.textContent),
    pageWidth: document.documentElement.scrollWidth,
    viewWidth: innerWidth,
    lineFont: line ? parseFloat(getComputedStyle(line).fontSize) : 0,
    labelWidth: lbl ? Math.round(lbl.getBoundingClientRect().width) : 0,
  };
})()`

// allSteps lists the indexes of the steps of a result, nested ones too.
func allSteps(r *engine.Result) []string {
	var out []string
	var walk func([]*engine.StepResult)
	walk = func(l []*engine.StepResult) {
		for _, s := range l {
			out = append(out, s.Index)
			walk(s.Children)
		}
	}
	walk(r.Steps)
	walk(r.Finally)
	return out
}

// demoBoards is the built-in inventory with the test's password and a fast boot.
const demoBoards = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    vars: {image-id-file: etc/image-id}
    drivers:
      sim: {password: sim-password, boot-delay: 5ms}
`

// demoRun applies the demo plan (as `make demo` does) on the test's virtual
// board; imageID "" makes the smoke test fail.
func demoRun(t *testing.T, e *testEnv, name, imageID string, extra ...string) string {
	t.Helper()
	const id = "demo-4242"
	img := e.write("demo.img", strings.Repeat("\x00filler", 1000)+"\nJSPLAN_IMAGE_ID="+id+"\n")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	planFile, err := filepath.Abs("../plans/examples/virtual-smoke.yaml")
	if err != nil {
		t.Fatal(err)
	}
	boards := e.write("demo-boards.yaml", demoBoards)
	art := filepath.Join(e.dir, name)
	want := 0
	if imageID == "" {
		imageID, want = "not-"+id, 1
	}
	args := append([]string{"--set", "image=" + img, "--set", "image-id=" + imageID, "--set", "sha256=" + hex.EncodeToString(sum[:]),
		"--set", "password=sim-password", "--boards", boards}, extra...)
	r := e.run(e.applyArgs(planFile, art, args...)...)
	if r.code != want {
		t.Fatalf("%s: want exit %d, got %s", name, want, r)
	}
	return art
}

// TestReportInBrowser opens the report.html of a passing and of a failing
// run of the demo plan in Chromium, on a desktop and on a phone screen, and
// checks what a person sees there.
func TestReportInBrowser(t *testing.T) {
	chromium(t)
	e := newEnv(t)
	runs := []struct {
		name string
		art  string
	}{
		{"passing", demoRun(t, e, "passing", "demo-4242")},
		{"failing", demoRun(t, e, "failing", "")},
	}
	if d := os.Getenv("JSPLAN_DEMO_ARTIFACTS"); d != "" { // e.g. out/artifacts after make demo
		if !filepath.IsAbs(d) { // relative to the repository's root, where make runs
			d = filepath.Join("..", d)
		}
		abs, _ := filepath.Abs(d)
		runs = append(runs, struct{ name, art string }{"demo", abs})
	}
	shots := screenshotDir(t)
	views := []struct {
		name          string
		width, height int64
		mobile        bool
	}{
		{"desktop", 1280, 800, false},
		{"phone", 390, 844, true},
	}
	for _, run := range runs {
		res := readReport(t, run.art)
		steps := allSteps(res)
		for _, v := range views {
			t.Run(run.name+"/"+v.name, func(t *testing.T) {
				ctx := browser(t)
				w := watchPage(t, ctx)
				page := filepath.Join(run.art, "report.html")
				vopts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
				if v.mobile {
					vopts = []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile}
				}
				if err := chromedp.Do(ctx, chromedp.EmulateViewport(v.width, v.height, vopts...),
					chromedp.Navigate("file://"+page), chromedp.WaitReady("#console")); err != nil {
					t.Fatal(err)
				}
				st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](stateJS))
				if err != nil {
					t.Fatal(err)
				}
				shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(shots, fmt.Sprintf("report-%s-%s.png", run.name, v.name))
				if err := os.WriteFile(file, shot, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot: %s", file)

				// The verdict is the first thing on the screen.
				if st.Verdict != string(res.Status) || !st.VerdictOnTop {
					t.Errorf("verdict %q (on the first screen: %v), want %q", st.Verdict, st.VerdictOnTop, res.Status)
				}
				// One bar per step, in the report's order.
				if st.Bars != len(steps) || strings.Join(st.BarSteps, " ") != strings.Join(steps, " ") {
					t.Errorf("timeline bars %v, want one per step %v", st.BarSteps, steps)
				}
				if res.Status == result.Passed {
					if len(st.FailRows) != 0 || len(st.OpenSections) != 0 {
						t.Errorf("a passing run shows failed steps %v and open sections %v", st.FailRows, st.OpenSections)
					}
				} else {
					// The failing step is marked, its console section is open,
					// shows its lines and its error, with the error's text
					// highlighted.
					failed := failedLeaf(res)
					if len(st.FailRows) != 1 || st.FailRows[0] != failed.Index || !st.FailRowVisible {
						t.Errorf("marked failing steps %v (visible: %v), want [%s]", st.FailRows, st.FailRowVisible, failed.Index)
					}
					if len(st.OpenSections) != 1 || st.OpenSections[0] != "con-"+failed.Index || st.FailLines == 0 {
						t.Errorf("open sections %v with %d visible lines, want the failing step's (con-%s)", st.OpenSections, st.FailLines, failed.Index)
					}
					if st.FailError != failed.Error {
						t.Errorf("the failing step's section shows the error %q, want %q", st.FailError, failed.Error)
					}
					if len(st.Marked) == 0 {
						t.Errorf("nothing highlighted in the failing step's console")
					}
				}
				// Readable: no sideways scrolling of the page, console text
				// not tiny, step names not squeezed.
				if st.PageWidth > st.ViewWidth+1 {
					t.Errorf("the page is %dpx wide on a %dpx screen", st.PageWidth, st.ViewWidth)
				}
				if st.LineFont < 11 {
					t.Errorf("console lines in %.1fpx type", st.LineFont)
				}
				if st.LabelWidth < 150 {
					t.Errorf("step names get %dpx", st.LabelWidth)
				}

				// Search finds a console line and shows it, opening its section.
				if err := chromedp.Do(ctx, chromedp.SendKeys("#q", "Welcome to the jsplan simulated board\r")); err != nil {
					t.Fatal(err)
				}
				found, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => {
  const c = document.querySelector('.l.cur');
  if (!c) return {n: 0};
  const r = c.getBoundingClientRect();
  return {n: document.querySelectorAll('.l.hit').length, text: c.textContent, open: c.closest('details').open,
          inView: r.top >= 0 && r.bottom <= innerHeight, hits: document.getElementById('hits').textContent};
})()`))
				if err != nil {
					t.Fatal(err)
				}
				if n, _ := found["n"].(float64); n < 1 || found["open"] != true || found["inView"] != true ||
					!strings.Contains(fmt.Sprint(found["text"]), "Welcome to the jsplan simulated board") {
					t.Errorf("search: %v", found)
				}

				// A click on a step's bar opens its console section.
				login := ""
				for _, s := range steps {
					if sr := stepByIndex(res, s); sr != nil && sr.Type == "wait-for-login" {
						login = s
					}
				}
				if err := chromedp.Do(ctx, chromedp.Click(`a.tlrow[data-step="`+login+`"] .bar`)); err != nil {
					t.Fatal(err)
				}
				opened, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
  const s = document.getElementById('con-`+login+`');
  return !!s && s.open && location.hash === '#con-`+login+`' && s.querySelectorAll('.l').length > 0;
})()`))
				if err != nil || !opened {
					t.Errorf("clicking the bar of step %s did not open its console section (%v)", login, err)
				}
				if v.name == "desktop" {
					full, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
					if err == nil {
						_ = os.WriteFile(filepath.Join(shots, fmt.Sprintf("report-%s-full.png", run.name)), full, 0o644)
					}
				}
				w.check(t, page)
			})
		}
	}
}

// TestHistoryInBrowser opens the trends page of three runs.
func TestHistoryInBrowser(t *testing.T) {
	chromium(t)
	e := newEnv(t)
	runs := filepath.Join(e.dir, "runs")
	for i, id := range []string{"demo-4242", "", "demo-4242"} {
		art := demoRun(t, e, fmt.Sprintf("runs/%d", i), id)
		_ = art
	}
	out := filepath.Join(e.dir, "history.html")
	if r := e.run("report", "--history", "--out", out, runs); r.code != 0 || !strings.Contains(r.stdout, "3 runs") {
		t.Fatalf("report --history: %s", r)
	}
	ctx := browser(t)
	w := watchPage(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+out), chromedp.WaitReady("svg.plot")); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](`(() => {
  const shown = [...document.querySelectorAll('svg.plot g.series')].filter(g => g.style.display !== 'none');
  const cb = document.querySelector('#legend input:not(:checked)');
  let toggled = 0;
  if (cb) { cb.click(); const g = document.getElementById('ser-' + cb.dataset.s); toggled = g && g.style.display !== 'none' ? 1 : 0; }
  return {shown: shown.length, points: shown[0] ? shown[0].querySelectorAll('circle').length : 0,
          bad: document.querySelectorAll('svg.plot circle.bad').length,
          rows: document.querySelectorAll('#runs tbody tr').length, links: document.querySelectorAll('#runs a[href$="report.html"]').length,
          toggled: toggled, width: document.documentElement.scrollWidth - innerWidth};
})()`))
	if err != nil {
		t.Fatal(err)
	}
	if got["shown"] < 2 || got["points"] != 3 || got["bad"] < 1 || got["rows"] != 3 || got["links"] != 3 || got["toggled"] != 1 || got["width"] > 1 {
		t.Errorf("trends page: %v", got)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err == nil {
		_ = os.WriteFile(filepath.Join(screenshotDir(t), "history-desktop.png"), shot, 0o644)
	}
	w.check(t, out)
}

func failedLeaf(r *engine.Result) *engine.StepResult {
	var found *engine.StepResult
	var walk func([]*engine.StepResult)
	walk = func(l []*engine.StepResult) {
		for _, s := range l {
			if found != nil {
				return
			}
			if s.Status == result.Failed && !s.Ignored && len(s.Children) == 0 {
				found = s
				return
			}
			walk(s.Children)
		}
	}
	walk(r.Steps)
	if found == nil {
		walk(r.Finally)
	}
	if found == nil {
		return &engine.StepResult{}
	}
	return found
}

func stepByIndex(r *engine.Result, idx string) *engine.StepResult {
	var found *engine.StepResult
	var walk func([]*engine.StepResult)
	walk = func(l []*engine.StepResult) {
		for _, s := range l {
			if s.Index == idx {
				found = s
			}
			walk(s.Children)
		}
	}
	walk(r.Steps)
	walk(r.Finally)
	return found
}

// TestHostileReportsInBrowser opens pages built from report.json files a
// hostile run could leave: markup in every text, a status closing the SVG
// title. No script of theirs runs (no dialog opens, nothing is refused by
// the policy: nothing tried), the page's own script does (search works).
func TestHostileReportsInBrowser(t *testing.T) {
	chromium(t)
	e := newEnv(t)
	runs := filepath.Join(e.dir, "runs")
	hostile := `{"plan":"<script>alert(1)</script>","board":"<img src=x onerror=alert(2)>","status":"</title><script>alert(3)</script>",` +
		`"start":"2026-11-29T10:00:00Z","duration_seconds":3,"steps":[null,{"index":"1\"><script>alert(4)</script>","name":"<svg onload=alert(5)>",` +
		`"type":"run","status":"</title></circle><script>alert(6)</script>","start":"2026-11-29T10:00:01Z","duration_seconds":1,` +
		`"error":"<script>alert(7)</script>","tests":[null,{"name":"<img src=x onerror=alert(8)>","status":"fail","message":"</pre><script>alert(9)</script>"}]}],"finally":[null]}`
	for i := 0; i < 2; i++ {
		dir := filepath.Join(runs, fmt.Sprintf("run-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "report.json"), []byte(hostile), 0o644); err != nil {
			t.Fatal(err)
		}
		log := "# jsplan console log v2: plan x, board y, started 2026-11-29T10:00:00.5Z\n[    0.600] <script>alert(10)</script>\n[    0.700]### step 1: forged? no, a note\n"
		if err := os.WriteFile(filepath.Join(dir, "console.log"), []byte(log), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := e.run("report", dir); r.code != 0 {
			t.Fatalf("report: %s", r)
		}
	}
	out := filepath.Join(e.dir, "history.html")
	if r := e.run("report", "--history", "--out", out, runs); r.code != 0 || !strings.Contains(r.stdout, "2 runs") {
		t.Fatalf("report --history: %s", r)
	}
	for _, p := range []string{filepath.Join(runs, "run-0", "report.html"), out} {
		ctx := browser(t)
		w := watchPage(t, ctx)
		// alert records its calls instead of opening a dialog (this script is
		// the browser's own, outside the page's policy).
		if _, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument,
			cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: "window.__alerts = []; window.alert = m => window.__alerts.push(String(m));"}); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.Navigate("file://"+p), chromedp.WaitReady("footer")); err != nil {
			t.Fatal(err)
		}
		// The page's own script runs: report.js searches, history.js toggles
		// a series.
		js := `(() => { const q = document.getElementById('q');
  if (q) { q.value = 'alert'; q.dispatchEvent(new Event('input')); return new Promise(r => setTimeout(() => r({ran: document.querySelectorAll('.l.hit').length > 0, alerts: window.__alerts}), 800)); }
  const cb = document.querySelector('#legend input'); if (!cb) return {ran: false, alerts: window.__alerts};
  const g = document.getElementById('ser-' + cb.dataset.s); const before = g.style.display; cb.click();
  return {ran: g.style.display !== before, alerts: window.__alerts}; })()`
		got, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
			Ran    bool     `json:"ran"`
			Alerts []string `json:"alerts"`
		}](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if got.Alerts == nil {
			t.Errorf("%s: no alert recorder in the page", p)
		}
		if len(got.Alerts) > 0 {
			t.Errorf("%s: injected script ran: %q", p, got.Alerts)
		}
		if !got.Ran {
			t.Errorf("%s: the page's own script did not run", p)
		}
		w.check(t, p)
	}
}
