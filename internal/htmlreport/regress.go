package htmlreport

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// RunRef is a run of a history, as the regressions name it.
type RunRef struct {
	// N numbers the runs oldest first, from 1, as the page does.
	N      int           `json:"run"`
	Start  time.Time     `json:"start"`
	Board  string        `json:"board"`
	Status result.Status `json:"status"`
	// Image identifies what the run flashed (sha256, else path and size;
	// empty when it flashed nothing).
	Image string `json:"image,omitempty"`
	// Dir is the run's artifacts directory; Report its report.html
	// relative to the history page (empty when it has none).
	Dir    string `json:"dir"`
	Report string `json:"report,omitempty"`
}

// Verdicts of an item across runs, most alarming first.
const (
	// Regressed: it passed, then failed, and fails in the newest run.
	Regressed = "regressed"
	// Flaky: it failed and then passed again on the same image.
	Flaky = "flaky"
	// Failing: it never passed in these runs.
	Failing = "failing"
	// Fixed: it failed after passing, and passes again since an image
	// change.
	Fixed = "fixed"
	// Passing: it never failed.
	Passing = "passing"
)

var verdictRank = map[string]int{Regressed: 0, Flaky: 1, Failing: 2, Fixed: 3, Passing: 4}

// Item is one step or test case across the runs.
type Item struct {
	Plan string `json:"plan"`
	// Kind is "step" or "case"; Step is the step's index and name; Case
	// the test case's suite path and name.
	Kind    string `json:"kind"`
	Step    string `json:"step"`
	Case    string `json:"case,omitempty"`
	Verdict string `json:"verdict"`
	// Last is its status in the newest run that has it.
	Last result.Status `json:"last"`
	// LastPass is the newest run where it passed; FirstFailure the first
	// run after that where it failed (nil: none).
	LastPass     *RunRef `json:"last_pass,omitempty"`
	FirstFailure *RunRef `json:"first_failure,omitempty"`
	// Flips counts changes between pass and fail from one run to the
	// next on the same image; Passes and Failures the runs of each.
	Flips    int `json:"flips"`
	Passes   int `json:"passes"`
	Failures int `json:"failures"`
}

// Title is how the page names the item.
func (it *Item) Title() string {
	if it.Case != "" {
		return it.Step + " › " + it.Case
	}
	return it.Step
}

// Regressions is the analysis of a history of runs: every step and test
// case, what got worse first.
type Regressions struct {
	Runs  []*RunRef `json:"runs"`
	Items []*Item   `json:"items"`
	// Counts by verdict.
	Counts map[string]int `json:"counts"`
}

// imageOf identifies what a run flashed.
func imageOf(r *engine.Result) string {
	var ids []string
	for _, im := range r.Images {
		switch {
		case im.SHA256 != "":
			ids = append(ids, "sha256:"+im.SHA256)
		default:
			ids = append(ids, fmt.Sprintf("%s (%d bytes)", im.Path, im.Size))
		}
	}
	return strings.Join(ids, ", ")
}

// outcome turns a status into pass (true), fail (false) or nothing to say
// (ok false): skipped, not run, interrupted, allowed failures.
func stepOutcome(s *engine.StepResult) (pass, ok bool) {
	switch s.Status {
	case result.Passed:
		return true, true
	case result.Failed, result.Error:
		return false, !s.Ignored
	}
	return false, false
}

func caseOutcome(c *result.TestCase) (pass, ok bool) {
	switch c.Status {
	case result.Passed, result.XFail:
		return true, true
	case result.Failed, result.Error:
		return false, !c.Allowed
	}
	return false, false
}

type obs struct {
	run  int
	pass bool
}

// Analyze finds, for every step and test case of runs (oldest first), the
// last pass and the first failure after it, and which flip between pass
// and fail without a change of image. href gives a run's report link.
func Analyze(runs []*histRun) *Regressions {
	rg := &Regressions{Counts: map[string]int{}}
	for i, r := range runs {
		ref := &RunRef{N: i + 1, Start: r.Res.Start, Board: r.Res.Board, Status: r.Res.Status, Image: imageOf(r.Res), Dir: r.Dir, Report: string(r.Href)}
		rg.Runs = append(rg.Runs, ref)
	}
	byKey := map[string]*Item{}
	seen := map[string][]obs{}
	var order []string
	note := func(key string, mk func() *Item, run int, pass bool) {
		if byKey[key] == nil {
			byKey[key] = mk()
			order = append(order, key)
		}
		seen[key] = append(seen[key], obs{run, pass})
	}
	for ri, r := range runs {
		plan := r.Res.Plan
		var cases func(step string, list []*result.TestCase, prefix string)
		cases = func(step string, list []*result.TestCase, prefix string) {
			for _, c := range list {
				name := c.Name
				if prefix != "" {
					name = prefix + "/" + c.Name
				} else if c.Suite != "" {
					name = c.Suite + "/" + c.Name
				}
				if len(c.Children) > 0 {
					// A suite fails through its cases: count those.
					cases(step, c.Children, name)
					continue
				}
				if pass, ok := caseOutcome(c); ok {
					note(plan+"\x00"+step+"\x00"+name, func() *Item { return &Item{Plan: plan, Kind: "case", Step: step, Case: name} }, ri, pass)
				}
			}
		}
		var steps func(list []*engine.StepResult, prefix string)
		steps = func(list []*engine.StepResult, prefix string) {
			for _, s := range list {
				step := prefix + s.Index + " " + s.Name
				if pass, ok := stepOutcome(s); ok {
					note(plan+"\x00"+step, func() *Item { return &Item{Plan: plan, Kind: "step", Step: step} }, ri, pass)
				}
				cases(step, s.Tests, "")
				steps(s.Children, prefix)
			}
		}
		steps(r.Res.Steps, "")
		steps(r.Res.Finally, "finally ")
	}
	for _, key := range order {
		it, os := byKey[key], seen[key]
		judge(it, os, rg.Runs)
		rg.Items = append(rg.Items, it)
		rg.Counts[it.Verdict]++
	}
	sort.SliceStable(rg.Items, func(i, j int) bool {
		a, b := rg.Items[i], rg.Items[j]
		if verdictRank[a.Verdict] != verdictRank[b.Verdict] {
			return verdictRank[a.Verdict] < verdictRank[b.Verdict]
		}
		if a.FirstFailure != nil && b.FirstFailure != nil && a.FirstFailure.N != b.FirstFailure.N {
			return a.FirstFailure.N > b.FirstFailure.N // the newest breakage first
		}
		return a.Flips > b.Flips
	})
	return rg
}

// judge fills it's verdict from its observations (oldest first).
func judge(it *Item, os []obs, runs []*RunRef) {
	lastPass := -1
	recovered := false // a fail followed by a pass on the same image
	for i, o := range os {
		if o.pass {
			it.Passes++
			lastPass = i
		} else {
			it.Failures++
		}
		if i > 0 && os[i-1].pass != o.pass && runs[os[i-1].run].Image == runs[o.run].Image {
			it.Flips++
			if o.pass {
				recovered = true
			}
		}
	}
	last := os[len(os)-1]
	it.Last = result.Failed
	if last.pass {
		it.Last = result.Passed
	}
	if lastPass >= 0 {
		it.LastPass = runs[os[lastPass].run]
		if lastPass+1 < len(os) {
			it.FirstFailure = runs[os[lastPass+1].run]
		}
	}
	// The first failure after an earlier pass, for items passing now.
	if it.FirstFailure == nil && it.Failures > 0 && lastPass >= 0 {
		for i := lastPass; i > 0; i-- {
			if !os[i-1].pass {
				// i-1 failed, i passed: the failing stretch began after the
				// pass before it.
				j := i - 1
				for j > 0 && !os[j-1].pass {
					j--
				}
				it.FirstFailure = runs[os[j].run]
				break
			}
		}
	}
	switch {
	case recovered && (it.Flips >= 2 || last.pass):
		it.Verdict = Flaky
	case it.Failures == 0:
		it.Verdict = Passing
	case lastPass < 0:
		it.Verdict = Failing
	case !last.pass:
		it.Verdict = Regressed
	default:
		it.Verdict = Fixed
	}
}
