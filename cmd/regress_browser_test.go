package cmd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/htmlreport"
	"github.com/jsplan/jsplan/internal/report"
)

// writeGeneratedHistory writes 8 runs' artifacts (report.json and
// report.html) under dir: image A for runs 1-4, image B from run 5; case
// timers/rtc passes on A and fails on B (a regression at run 5); case
// net/ping fails in runs 2 and 6 and passes otherwise (flaky).
func writeGeneratedHistory(t *testing.T, dir string) {
	t.Helper()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= 8; i++ {
		regressed, flaky := i >= 5, i == 2 || i == 6
		img := engine.Image{Step: "1", Path: "a.img", SHA256: "aaaa"}
		if regressed {
			img = engine.Image{Step: "1", Path: "b.img", SHA256: "bbbb"}
		}
		st := map[bool]result.Status{false: result.Passed, true: result.Failed}
		step := st
		start := t0.Add(time.Duration(i) * time.Hour)
		r := &engine.Result{Plan: "nightly", Board: "sim-1", Start: start, Seconds: 10, Images: []engine.Image{img},
			Status: step[regressed || flaky], ExitCode: map[bool]int{false: 0, true: 1}[regressed || flaky],
			Steps: []*engine.StepResult{
				{Index: "1", Name: "flash", Type: "flash", Status: result.Passed, Start: start, Seconds: 2},
				{Index: "2", Name: "kselftest", Type: "run", Status: step[regressed], Start: start, Seconds: 3, Tests: []*result.TestCase{
					{Name: "timers", Status: st[regressed], Children: []*result.TestCase{{Name: "rtc", Status: st[regressed]}}},
					{Suite: "mm", Name: "alloc", Status: result.Passed},
				}},
				{Index: "3", Name: "network", Type: "run", Status: step[flaky], Start: start, Seconds: 1, Tests: []*result.TestCase{
					{Suite: "net", Name: "ping", Status: st[flaky]},
				}},
			}}
		art := filepath.Join(dir, fmt.Sprintf("run-%d", i))
		if err := os.MkdirAll(art, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := report.WriteJSON(filepath.Join(art, "report.json"), r); err != nil {
			t.Fatal(err)
		}
		if err := htmlreport.Write(art, r, htmlreport.Options{}); err != nil {
			t.Fatal(err)
		}
	}
}

// A generated history with one regressing and one flaky case is reported
// as such, in JSON and on the page, which shows what got worse first.
func TestRegressionsInJSONAndBrowser(t *testing.T) {
	e := newEnv(t)
	runs := filepath.Join(e.dir, "runs")
	writeGeneratedHistory(t, runs)
	out := filepath.Join(e.dir, "history.html")
	r := e.run("report", "--history", "--out", out, "--output", "json", runs)
	if r.code != 0 {
		t.Fatalf("report --history -o json: %s", r)
	}
	var reg htmlreport.Regressions
	if err := json.Unmarshal([]byte(r.stdout), &reg); err != nil {
		t.Fatalf("json: %v\n%s", err, r.stdout)
	}
	by := map[string]*htmlreport.Item{}
	for _, it := range reg.Items {
		by[it.Title()] = it
	}
	rtc, ping := by["2 kselftest › timers/rtc"], by["3 network › net/ping"]
	if rtc == nil || rtc.Verdict != "regressed" || rtc.LastPass.N != 4 || rtc.FirstFailure.N != 5 ||
		!strings.HasSuffix(rtc.LastPass.Report, "run-4/report.html") || !strings.HasSuffix(rtc.FirstFailure.Report, "run-5/report.html") ||
		rtc.FirstFailure.Image != "sha256:bbbb" {
		t.Fatalf("timers/rtc: %+v", rtc)
	}
	if ping == nil || ping.Verdict != "flaky" || ping.Flips != 4 {
		t.Fatalf("net/ping: %+v", ping)
	}
	if alloc := by["2 kselftest › mm/alloc"]; alloc == nil || alloc.Verdict != "passing" {
		t.Fatalf("mm/alloc: %+v", alloc)
	}
	if reg.Items[0].Verdict != "regressed" {
		t.Fatalf("first item: %+v", reg.Items[0])
	}
	if r := e.run("report", "--history", "--out", out, runs); r.code != 0 || !strings.Contains(r.stdout, "8 runs; 2 regressed, 2 flaky") {
		t.Fatalf("report --history: %s", r)
	}

	chromium(t)
	ctx := browser(t)
	w := watchPage(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+out), chromedp.WaitReady("#worse")); err != nil {
		t.Fatal(err)
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`(() => {
  const sections = [...document.querySelectorAll('main > section')].map(s => s.id);
  const rows = [...document.querySelectorAll('#worse tbody tr')];
  const find = (v, name) => rows.find(r => r.dataset.verdict === v && r.cells[1].textContent.includes(name));
  const reg = find('regressed', 'timers/rtc'), fl = find('flaky', 'net/ping');
  const r0 = rows[0] ? rows[0].getBoundingClientRect() : {top: 1e9};
  return {first: sections[0], top: rows[0] ? rows[0].dataset.verdict : '',
          regLinks: reg ? [...reg.querySelectorAll('a')].map(a => a.getAttribute('href')).join(' ') : '',
          flips: fl ? fl.cells[4].textContent : '', visible: r0.top < innerHeight,
          passingRows: rows.filter(r => r.dataset.verdict === 'passing').length,
          summary: document.getElementById('verdicts').textContent};
})()`))
	if err != nil {
		t.Fatal(err)
	}
	if res["first"] != "worse" || res["top"] != "regressed" || res["visible"] != true || res["passingRows"] != float64(0) ||
		!strings.Contains(res["regLinks"].(string), "run-4/report.html") || !strings.Contains(res["regLinks"].(string), "run-5/report.html") ||
		res["flips"] != "4" || !strings.Contains(res["summary"].(string), "2 regressed, 2 flaky") {
		t.Errorf("history page: %v", res)
	}
	if shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		_ = os.WriteFile(filepath.Join(screenshotDir(t), "history-regressions.png"), shot, 0o644)
	}
	w.check(t, out)
}
