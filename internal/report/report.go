// Package report writes a run's results: report.json and a JUnit XML file
// that CI systems read.
package report

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/artifact"
	"github.com/jsplan/jsplan/internal/shorten"
)

// WriteJSON writes res as indented JSON to path, atomically.
func WriteJSON(path string, res *engine.Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return artifact.WriteFile(filepath.Dir(path), filepath.Base(path), append(b, '\n'))
}

// JUnitSuites is the JUnit XML document jsplan writes (junit.xml), in
// the shape CI systems read: the plan's testsuite, one testcase per step.
// Tests read junit.xml back with it.
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is a testsuite: a plan run, its properties (status, board,
// attempts) and its steps.
type JUnitSuite struct {
	Name      string          `xml:"name,attr"`
	Tests     int             `xml:"tests,attr"`
	Failures  int             `xml:"failures,attr"`
	Errors    int             `xml:"errors,attr"`
	Skipped   int             `xml:"skipped,attr"`
	Time      string          `xml:"time,attr"`
	Timestamp string          `xml:"timestamp,attr"`
	Hostname  string          `xml:"hostname,attr,omitempty"`
	Props     []JUnitProperty `xml:"properties>property,omitempty"`
	Cases     []JUnitCase     `xml:"testcase"`
}

// JUnitProperty is a name and a value.
type JUnitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// JUnitCase is a testcase: a step, or a test case a step's results hold.
type JUnitCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	Time      string `xml:"time,attr"`
	// Props name the board the step ran on, in a run on several boards.
	Props     []JUnitProperty `xml:"properties>property,omitempty"`
	Failure   *JUnitProblem   `xml:"failure,omitempty"`
	Error     *JUnitProblem   `xml:"error,omitempty"`
	Skipped   *JUnitProblem   `xml:"skipped,omitempty"`
	SystemOut string          `xml:"system-out,omitempty"`
}

// JUnitProblem is a testcase's failure, error or skip.
type JUnitProblem struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// Property is the value of the suite's property name ("" when absent).
func (s JUnitSuite) Property(name string) string {
	for _, p := range s.Props {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// WriteJUnit writes res as JUnit XML: one testsuite for the plan, one
// testcase per step (nested steps flattened, named by their index), and
// for a step that reported test results one testsuite per suite of them,
// named "PLAN / INDEX STEP[ / SUITE/...]" so CI shows them under the step.
// An expected failure and a failure the plan allows are written as skipped
// (as pytest writes its xfail), with the reason in the message.
func WriteJUnit(path string, res *engine.Result) error {
	s := JUnitSuite{Name: res.Plan, Time: secs(res.Seconds), Timestamp: res.Start.UTC().Format("2006-01-02T15:04:05"),
		Props: []JUnitProperty{{"board", res.Board}, {"status", string(res.Status)}, {"file", res.File}}}
	for _, rb := range res.Boards {
		s.Props = append(s.Props, JUnitProperty{"board." + rb.Role, rb.Board})
	}
	for _, r := range res.Resources {
		s.Props = append(s.Props, JUnitProperty{"resource", r})
	}
	var extra []JUnitSuite
	add := func(prefix string, list []*engine.StepResult) {}
	add = func(prefix string, list []*engine.StepResult) {
		for _, st := range list {
			c := JUnitCase{Name: fmt.Sprintf("%s%s %s", prefix, st.Index, st.Name), Classname: res.Plan + "." + st.Type,
				Time: secs(st.Seconds), SystemOut: st.Output}
			if st.Board != "" {
				c.Props = []JUnitProperty{{"board", st.Board}}
			}
			switch st.Status {
			case result.Failed:
				if !st.Ignored {
					c.Failure = &JUnitProblem{Message: shorten.FirstLine(st.Error), Type: st.Class, Text: st.Error}
					s.Failures++
				} else {
					c.SystemOut = strings.TrimSpace(c.SystemOut + "\nignored failure (continue-on-error): " + st.Error)
				}
			case result.Error, result.Interrupted:
				if !st.Ignored {
					c.Error = &JUnitProblem{Message: shorten.FirstLine(st.Error), Type: string(st.Status), Text: st.Error}
					s.Errors++
				}
			case result.Skipped:
				c.Skipped = &JUnitProblem{Message: "not run: an earlier step failed or the run was stopped"}
				s.Skipped++
			}
			s.Cases = append(s.Cases, c)
			s.Tests++
			if len(st.Tests) > 0 {
				extra = append(extra, testSuites(fmt.Sprintf("%s / %s%s %s", res.Plan, prefix, st.Index, st.Name), st)...)
			}
			add(prefix, st.Children)
		}
	}
	add("", res.Steps)
	add("finally ", res.Finally)
	// Earlier attempts (--retry-infra): one case each, skipped with the
	// reason, so CI sees them without counting a retried error as one.
	for _, a := range res.Attempts {
		if a.Dir == "" {
			continue
		}
		s.Cases = append(s.Cases, JUnitCase{Name: fmt.Sprintf("attempt %d on board %s", a.N, a.Board), Classname: res.Plan + ".attempt",
			Time: secs(a.Seconds), Skipped: &JUnitProblem{Message: fmt.Sprintf("%s (exit %d), retried on another board: %s", a.Status, a.ExitCode, shorten.FirstLine(a.Reason))},
			SystemOut: "artifacts: " + a.Dir + "/"})
		s.Tests++
		s.Skipped++
	}
	for _, a := range res.Attempts {
		s.Props = append(s.Props, JUnitProperty{fmt.Sprintf("attempt.%d", a.N), fmt.Sprintf("board %s: %s (exit %d)", a.Board, a.Status, a.ExitCode)})
	}
	h, _ := os.Hostname()
	s.Hostname = h
	doc := JUnitSuites{Name: res.Plan, Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Skipped: s.Skipped,
		Time: s.Time, Suites: []JUnitSuite{s}}
	for _, x := range extra {
		x.Hostname = h
		doc.Tests += x.Tests
		doc.Failures += x.Failures
		doc.Errors += x.Errors
		doc.Skipped += x.Skipped
		doc.Suites = append(doc.Suites, x)
	}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return artifact.WriteFile(filepath.Dir(path), filepath.Base(path), append([]byte(xml.Header), append(b, '\n')...))
}

// testSuites turns a step's test cases into test suites: the cases at one
// place in the tree form one suite. A case with subtests is a suite; it is
// also a testcase of its parent's suite when it failed on its own (no
// failing subtest explains it).
func testSuites(name string, st *engine.StepResult) []JUnitSuite {
	var out []JUnitSuite
	stamp := st.Start.UTC().Format("2006-01-02T15:04:05")
	var visit func(suiteName string, list []*result.TestCase, secs float64)
	visit = func(suiteName string, list []*result.TestCase, total float64) {
		s := JUnitSuite{Name: suiteName, Timestamp: stamp, Props: []JUnitProperty{{"step", st.Index}}}
		var nested []func()
		sum := 0.0
		for _, tc := range list {
			sum += tc.Seconds
			if len(tc.Children) > 0 {
				child := tc
				nested = append(nested, func() { visit(suiteName+" / "+child.Name, child.Children, child.Seconds) })
				if !failing(tc) || anyFailing(tc.Children) {
					continue
				}
			}
			s.Cases = append(s.Cases, testCase(suiteName, tc, &s))
			s.Tests++
		}
		if total == 0 {
			total = sum
		}
		s.Time = secs(total)
		if s.Tests > 0 {
			out = append(out, s)
		}
		for _, f := range nested {
			f()
		}
	}
	visit(name, st.Tests, 0)
	return out
}

func testCase(suite string, tc *result.TestCase, s *JUnitSuite) JUnitCase {
	c := JUnitCase{Name: tc.Name, Classname: suite, Time: secs(tc.Seconds), SystemOut: tc.Output}
	if tc.Suite != "" && !strings.HasSuffix(suite, " / "+tc.Suite) {
		c.Classname = suite + " / " + tc.Suite
	}
	switch {
	case failing(tc) && tc.Allowed:
		c.Skipped = &JUnitProblem{Message: strings.TrimSpace("allowed failure (" + string(tc.Status) + "): " + tc.Message)}
		s.Skipped++
	case tc.Status == result.Failed:
		c.Failure = &JUnitProblem{Message: shorten.FirstLine(tc.Message), Type: "fail", Text: tc.Message}
		s.Failures++
	case tc.Status == result.Error:
		c.Error = &JUnitProblem{Message: shorten.FirstLine(tc.Message), Type: "error", Text: tc.Message}
		s.Errors++
	case tc.Status == result.Skipped:
		c.Skipped = &JUnitProblem{Message: tc.Message}
		s.Skipped++
	case tc.Status == result.XFail:
		c.Skipped = &JUnitProblem{Message: strings.TrimSpace("expected failure: " + tc.Message)}
		s.Skipped++
	}
	return c
}

func failing(tc *result.TestCase) bool { return tc.Status.Failing() }

func anyFailing(list []*result.TestCase) bool {
	for _, c := range list {
		if failing(c) || anyFailing(c.Children) {
			return true
		}
	}
	return false
}

func secs(s float64) string { return fmt.Sprintf("%.3f", s) }
