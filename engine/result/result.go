// Package result is the vocabulary of outcomes that the engine, the steps,
// the result parsers and the reports share: one set of statuses, for runs,
// steps and the test cases a board reports, and the test case itself. It
// imports nothing of the project, so every package can use it.
package result

// Status is the outcome of a run, a step or a test case, as reports show it.
type Status string

// The statuses. A run or step is passed, failed (the board failed the
// test), error (the infrastructure or the plan broke), skipped (not run)
// or interrupted. A test case is passed, failed, error, skipped or xfail.
const (
	Passed      Status = "passed"
	Failed      Status = "failed"
	Error       Status = "error"
	Skipped     Status = "skipped"
	Interrupted Status = "interrupted"
	// XFail is a test case that failed as it was expected to (TAP TODO,
	// KTAP XFAIL): it passes.
	XFail Status = "xfail"
)

// UnmarshalText reads a status, including the test case statuses that
// report.json files written before jsplan had one vocabulary hold ("pass",
// "fail", "skip"), so history reports read old runs alike.
func (s *Status) UnmarshalText(b []byte) error {
	switch v := Status(b); v {
	case "pass":
		*s = Passed
	case "fail":
		*s = Failed
	case "skip":
		*s = Skipped
	default:
		*s = v
	}
	return nil
}

// Failing reports whether s fails what it belongs to (failed or error),
// unless allowed.
func (s Status) Failing() bool { return s == Failed || s == Error }

// TestCase is one test result reported by the board: a KTAP/TAP test point or
// a JUnit testcase. Suites nest through Children (KTAP subtests).
type TestCase struct {
	Suite    string      `json:"suite,omitempty"`
	Name     string      `json:"name"`
	Status   Status      `json:"status"` // passed, failed, error, skipped, xfail
	Seconds  float64     `json:"duration_seconds,omitempty"`
	Message  string      `json:"message,omitempty"`
	Output   string      `json:"output,omitempty"`
	Children []*TestCase `json:"tests,omitempty"`
	// Allowed marks a failing case (failed or error) that the plan accepts
	// (results.allow-failures): it keeps its status but fails nothing.
	Allowed bool `json:"allowed,omitempty"`
}
