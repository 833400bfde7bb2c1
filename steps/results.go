package steps

import (
	"fmt"
	"github.com/jsplan/jsplan/internal/shorten"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/results"
)

// resultsSpec is the `results:` option of run, local, console and collect:
// the step's output (or the collected files) hold test results, and the
// step's outcome follows from them.
type resultsSpec struct {
	Format        string     `yaml:"format"`
	AllowFailures any        `yaml:"allow-failures,omitempty"`
	MaxFailures   engine.Int `yaml:"max-failures,omitempty"`
	policy        results.Policy
}

// resultsSchema is the schema of the option; what says where the results
// are, for its description.
func resultsSchema(what string) obj {
	formats := make([]any, len(results.Formats))
	for i, f := range results.Formats {
		formats[i] = f
	}
	return described(shortOr(obj{"enum": formats}, object(obj{
		"format": obj{"enum": formats, "description": "ktap (kselftest, KUnit), tap (TAP 13/14) or junit (JUnit XML)."},
		"allow-failures": described(ref("stringList"),
			"Failing test cases that do not fail the step: globs ('*' any text, '?' one byte) matched against the case's path (suite/.../name) or its name."),
		"max-failures": obj{"type": []any{"integer", "string"}, "minimum": 0, "pattern": `^\s*\$\{\{[^}]*\}\}\s*$`,
			"description": "How many other failing cases the step tolerates (default 0)."},
	}, "format")), what+" holds test results: each case is reported, and any failing case fails the step unless allowed. A format, or {format, allow-failures, max-failures}.")
}

// decodeResults reads the option from n's `results` child; ok is false
// after an error.
func decodeResults(dc *engine.DecodeContext, n *yaml.Node) (spec *resultsSpec, ok bool) {
	c := dc.Child(n, "results")
	if c == nil {
		return nil, true
	}
	s := &resultsSpec{}
	if c.Kind == yaml.ScalarNode {
		s.Format = c.Value
	} else if !dc.Decode(c, s) {
		return nil, false
	}
	if _, err := results.New(s.Format, results.Limits{}); err != nil {
		dc.Errorf(c, "results", "%v", err)
		return nil, false
	}
	s.policy.AllowFailures = stringList(s.AllowFailures)
	s.policy.MaxFailures = int(s.MaxFailures.Value)
	return s, true
}

// parser starts a parser for the step's output.
func (s *resultsSpec) parser() results.Parser {
	p, _ := results.New(s.Format, results.Limits{})
	return p
}

// judge records the cases in the step's result, logs a summary and
// returns the verdict and the step's error: none when every failing case
// is allowed or within max-failures, else a failure naming them.
func (s *resultsSpec) judge(r *engine.StepRun, cases []*result.TestCase) (*results.Verdict, error) {
	v := results.Judge(cases, s.policy)
	r.Tests(cases)
	if len(cases) == 0 {
		return v, diag.Failf("no %s test results found", s.Format)
	}
	r.Logf("%s", v.Summary())
	logged := 0
	var walk func(list []*result.TestCase, prefix string)
	walk = func(list []*result.TestCase, prefix string) {
		for _, c := range list {
			path := c.Name
			if prefix != "" {
				path = prefix + "/" + c.Name
			}
			if len(c.Children) > 0 {
				walk(c.Children, path)
				// A suite that failed because a subtest did is not news.
				if c.Status == result.Passed || c.Status == result.Skipped || failingIn(c.Children) {
					continue
				}
			}
			if c.Status == result.Passed {
				continue
			}
			if logged++; logged <= 20 {
				st := c.Status
				if c.Allowed {
					st += " (allowed)"
				}
				msg := ""
				if c.Message != "" {
					msg = ": " + firstLineOf(c.Message)
				}
				r.Logf("  %-5s %s%s", st, path, msg)
			}
		}
	}
	walk(cases, "")
	if logged > 20 {
		r.Logf("  ... and %d more", logged-20)
	}
	if !v.OK(s.policy) {
		names := v.Failed
		more := ""
		if len(names) > 5 {
			names, more = names[:5], fmt.Sprintf(" and %d more", len(v.Failed)-5)
		}
		what := "test case failed"
		if len(v.Failed) > 1 {
			what = "test cases failed"
		}
		limit := ""
		if s.policy.MaxFailures > 0 {
			limit = fmt.Sprintf(" (max-failures %d)", s.policy.MaxFailures)
		}
		return v, diag.Failf("%d %s%s: %s%s", len(v.Failed), what, limit, strings.Join(names, ", "), more)
	}
	return v, nil
}

func failingIn(list []*result.TestCase) bool {
	for _, c := range list {
		if c.Status.Failing() || failingIn(c.Children) {
			return true
		}
	}
	return false
}

func firstLineOf(s string) string { return shorten.FirstLine(strings.TrimSpace(s)) }
