package htmlreport

import (
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// genHistory makes n runs of a plan "nightly" (oldest first): runs before
// change flash image A, the others image B. Case "timers/rtc" of step
// "2 kselftest" passes on A and fails on B (a regression at the first B
// run); case "net/ping" of step "3 network" fails in runs flaky (1-based)
// whatever the image; "mm/alloc" always passes.
func genHistory(n, change int, flaky map[int]bool, t0 time.Time) []*engine.Result {
	var out []*engine.Result
	for i := 1; i <= n; i++ {
		img := engine.Image{Step: "1", Path: "a.img", SHA256: "aaaa"}
		regressed := i >= change
		if regressed {
			img = engine.Image{Step: "1", Path: "b.img", SHA256: "bbbb"}
		}
		st := func(fail bool) result.Status {
			if fail {
				return result.Failed
			}
			return result.Passed
		}
		step := st
		start := t0.Add(time.Duration(i) * time.Hour)
		r := &engine.Result{Plan: "nightly", Board: "sim-1", Start: start, Seconds: 10, Images: []engine.Image{img},
			Status: step(regressed || flaky[i]), ExitCode: map[bool]int{false: 0, true: 1}[regressed || flaky[i]],
			Steps: []*engine.StepResult{
				{Index: "1", Name: "flash", Type: "flash", Status: result.Passed, Start: start, Seconds: 2},
				{Index: "2", Name: "kselftest", Type: "run", Status: step(regressed), Start: start, Seconds: 3, Tests: []*result.TestCase{
					{Name: "timers", Status: st(regressed), Children: []*result.TestCase{{Name: "rtc", Status: st(regressed)}}},
					{Suite: "mm", Name: "alloc", Status: result.Passed},
				}},
				{Index: "3", Name: "network", Type: "run", Status: step(flaky[i]), Start: start, Seconds: 1, Tests: []*result.TestCase{
					{Suite: "net", Name: "ping", Status: st(flaky[i])},
				}},
			}}
		out = append(out, r)
	}
	return out
}

func TestAnalyzeRegressionAndFlaky(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var runs []*histRun
	for _, r := range genHistory(8, 5, map[int]bool{2: true, 6: true}, t0) {
		runs = append(runs, &histRun{Res: r, Dir: r.Start.Format("15")})
	}
	rg := Analyze(runs)
	by := map[string]*Item{}
	for _, it := range rg.Items {
		by[it.Title()] = it
	}
	rtc := by["2 kselftest › timers/rtc"]
	if rtc == nil || rtc.Verdict != Regressed || rtc.LastPass == nil || rtc.LastPass.N != 4 || rtc.FirstFailure == nil || rtc.FirstFailure.N != 5 || rtc.Flips != 0 {
		t.Fatalf("timers/rtc: %+v", rtc)
	}
	ping := by["3 network › net/ping"]
	if ping == nil || ping.Verdict != Flaky || ping.Flips != 4 || ping.Failures != 2 || ping.Last != result.Passed {
		t.Fatalf("net/ping: %+v", ping)
	}
	if it := by["2 kselftest › mm/alloc"]; it == nil || it.Verdict != Passing || it.Passes != 8 || it.FirstFailure != nil {
		t.Fatalf("mm/alloc: %+v", it)
	}
	if it := by["2 kselftest"]; it == nil || it.Verdict != Regressed {
		t.Fatalf("step 2: %+v", it)
	}
	if rg.Items[0].Verdict != Regressed || rg.Counts[Regressed] != 2 || rg.Counts[Flaky] != 2 {
		t.Fatalf("what got worse comes first: %+v, counts %v", rg.Items[0], rg.Counts)
	}
	// A failure that follows an image change and stays is no flake: the
	// same failures on a history whose flaky case fails once, on the new
	// image, for good, read as a regression.
	runs = runs[:0]
	for _, r := range genHistory(6, 4, map[int]bool{4: true, 5: true, 6: true}, t0) {
		runs = append(runs, &histRun{Res: r})
	}
	rg = Analyze(runs)
	for _, it := range rg.Items {
		if it.Verdict == Flaky {
			t.Fatalf("no flip without an image change, yet %s is flaky", it.Title())
		}
	}
}
