// Package result is the vocabulary of outcomes that the engine, the steps,
// the result parsers and the reports share: the statuses of steps and runs,
// and the test cases a board reports. It imports nothing of the project, so
// every package can use it.
package result

// Step and run statuses, as reports show them.
const (
	Passed      = "passed"
	Failed      = "failed"
	Error       = "error"
	Skipped     = "skipped"
	Interrupted = "interrupted"
)

// Test case statuses (TestCase.Status).
const (
	Pass      = "pass"
	Fail      = "fail"
	Skip      = "skip"
	XFail     = "xfail"
	CaseError = "error"
)

// TestCase is one test result reported by the board: a KTAP/TAP test point or
// a JUnit testcase. Suites nest through Children (KTAP subtests).
type TestCase struct {
	Suite    string      `json:"suite,omitempty"`
	Name     string      `json:"name"`
	Status   string      `json:"status"` // pass, fail, skip, xfail, error
	Seconds  float64     `json:"duration_seconds,omitempty"`
	Message  string      `json:"message,omitempty"`
	Output   string      `json:"output,omitempty"`
	Children []*TestCase `json:"tests,omitempty"`
	// Allowed marks a failing case (fail or error) that the plan accepts
	// (results.allow-failures): it keeps its status but fails nothing.
	Allowed bool `json:"allowed,omitempty"`
}
