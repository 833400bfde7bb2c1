package result_test

import (
	"encoding/json"
	"testing"

	"github.com/jsplan/jsplan/engine/result"
)

// A report.json written before the statuses were one vocabulary reads
// alike: a test case's "pass", "fail" and "skip" are passed, failed and
// skipped; the statuses that did not change stay.
func TestStatusReadsOldReports(t *testing.T) {
	for in, want := range map[string]result.Status{
		"pass": result.Passed, "fail": result.Failed, "skip": result.Skipped,
		"passed": result.Passed, "failed": result.Failed, "skipped": result.Skipped,
		"error": result.Error, "xfail": result.XFail, "interrupted": result.Interrupted,
	} {
		var c result.TestCase
		if err := json.Unmarshal([]byte(`{"name":"x","status":"`+in+`"}`), &c); err != nil {
			t.Fatal(err)
		}
		if c.Status != want {
			t.Errorf("%q reads as %q, want %q", in, c.Status, want)
		}
	}
	b, err := json.Marshal(result.TestCase{Name: "x", Status: result.Passed})
	if err != nil || string(b) != `{"name":"x","status":"passed"}` {
		t.Fatalf("written as %s (%v)", b, err)
	}
}

// Failing is failed or error, nothing else.
func TestStatusFailing(t *testing.T) {
	for _, s := range []result.Status{result.Passed, result.Failed, result.Error, result.Skipped, result.Interrupted, result.XFail} {
		if got, want := s.Failing(), s == result.Failed || s == result.Error; got != want {
			t.Errorf("%s.Failing() = %v", s, got)
		}
	}
}
