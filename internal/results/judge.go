package results

import (
	"fmt"
	"strings"

	"github.com/jsplan/jsplan/engine/result"
)

// Policy says which failing cases a plan accepts.
type Policy struct {
	// AllowFailures are glob patterns ('*' any text, '?' one byte)
	// matched against a case's path (its suites and its name, joined by
	// '/') and against its name alone.
	AllowFailures []string
	// MaxFailures is how many failing cases, beyond the allowed ones, the
	// step tolerates (0: none).
	MaxFailures int
}

// Verdict is the outcome of a step's test cases.
type Verdict struct {
	// Counts per status of the cases that have no subtests (the test
	// points), plus suites that failed on their own.
	Pass, Fail, Skip, XFail, Error int
	// Allowed are the failing cases the policy accepted, Failed the others
	// (paths).
	Allowed, Failed []string
}

// OK reports whether the step passes.
func (v *Verdict) OK(p Policy) bool { return len(v.Failed) <= p.MaxFailures }

// Summary is one line for the run log: "5 test cases: 3 passed, 1 failed
// (1 allowed), 1 skipped".
func (v *Verdict) Summary() string {
	total := v.Pass + v.Fail + v.Skip + v.XFail + v.Error
	parts := []string{fmt.Sprintf("%d passed", v.Pass)}
	if n := v.Fail + v.Error; n > 0 {
		s := fmt.Sprintf("%d failed", v.Fail)
		if v.Error > 0 {
			s = fmt.Sprintf("%d failed, %d error", v.Fail, v.Error)
		}
		if len(v.Allowed) > 0 {
			s += fmt.Sprintf(" (%d allowed)", len(v.Allowed))
		}
		parts = append(parts, s)
	}
	if v.Skip > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped", v.Skip))
	}
	if v.XFail > 0 {
		parts = append(parts, fmt.Sprintf("%d xfail", v.XFail))
	}
	noun := "test cases"
	if total == 1 {
		noun = "test case"
	}
	return fmt.Sprintf("%d %s: %s", total, noun, strings.Join(parts, ", "))
}

// Judge counts the cases and sorts the failing ones into allowed and not.
// A suite that failed because a subtest failed is not counted again: only
// its failing subtests are. An allowed failure keeps its status and is
// marked Allowed.
func Judge(cases []*result.TestCase, p Policy) *Verdict {
	v := &Verdict{}
	var visit func(list []*result.TestCase, prefix string)
	visit = func(list []*result.TestCase, prefix string) {
		for _, c := range list {
			path := c.Name
			if prefix != "" {
				path = prefix + "/" + c.Name
			}
			failing := c.Status.Failing()
			if len(c.Children) > 0 {
				visit(c.Children, path)
				if !failing || anyFailing(c.Children) {
					continue
				}
			}
			switch c.Status {
			case result.Passed:
				v.Pass++
			case result.Skipped:
				v.Skip++
			case result.XFail:
				v.XFail++
			case result.Error:
				v.Error++
			default:
				v.Fail++
				failing = true
			}
			if !failing {
				continue
			}
			if allowed(p.AllowFailures, path, c.Name) {
				v.Allowed = append(v.Allowed, path)
				c.Allowed = true
			} else {
				v.Failed = append(v.Failed, path)
			}
		}
	}
	visit(cases, "")
	return v
}

func anyFailing(list []*result.TestCase) bool {
	for _, c := range list {
		if c.Status.Failing() || anyFailing(c.Children) {
			return true
		}
	}
	return false
}

func allowed(patterns []string, path, name string) bool {
	for _, p := range patterns {
		if Glob(p, path) || Glob(p, name) {
			return true
		}
	}
	return false
}

// Glob matches s against pattern: '*' matches any text (slashes too), '?'
// one byte; everything else matches itself.
func Glob(pattern, s string) bool {
	// Iterative matching with one backtrack point: linear in practice,
	// never exponential.
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			starP, starS = px, sx
			px++
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case starP >= 0:
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
