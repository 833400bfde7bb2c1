package htmlreport

import (
	"regexp"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
)

// A failure the plan allows says so in the page, and is not marked as a
// plain failure.
func TestAllowedFailureSaysAllowed(t *testing.T) {
	dir := t.TempDir()
	res := sampleResult()
	res.Steps[1].Tests[0].Children = append(res.Steps[1].Tests[0].Children,
		&engine.TestCase{Name: "example_rtc_test", Status: "fail", Allowed: true, Message: "no rtc"})
	writeLog(t, dir, 0.1, "boot")
	page := render(t, dir, res, Options{})
	li := regexp.MustCompile(`<li class="tc t-fail allowed"><span class="tstat">fail</span> <span class="allowed"[^>]*>allowed</span> example_rtc_test`)
	if !li.MatchString(page) {
		i := strings.Index(page, "example_rtc_test")
		t.Errorf("the allowed failure is not marked allowed:\n%s", page[max(0, i-300):i+50])
	}
	if strings.Contains(page, `t-fail allowed"><span class="tstat">fail</span> example_fail_test`) {
		t.Errorf("a plain failure is marked allowed")
	}
}
