package htmlreport

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine/result"
)

// A failure the plan allows says so in the page, and is not marked as a
// plain failure.
func TestAllowedFailureSaysAllowed(t *testing.T) {
	dir := t.TempDir()
	res := sampleResult()
	res.Steps[1].Tests[0].Children = append(res.Steps[1].Tests[0].Children,
		&result.TestCase{Name: "example_rtc_test", Status: result.Failed, Allowed: true, Message: "no rtc"})
	writeLog(t, dir, 0.1, "boot")
	page := render(t, dir, res, Options{})
	li := regexp.MustCompile(`<li class="tc t-failed allowed"><span class="tstat">failed</span> <span class="allowed"[^>]*>allowed</span> example_rtc_test`)
	if !li.MatchString(page) {
		i := strings.Index(page, "example_rtc_test")
		t.Errorf("the allowed failure is not marked allowed:\n%s", page[max(0, i-300):i+50])
	}
	if strings.Contains(page, `t-failed allowed"><span class="tstat">failed</span> example_fail_test`) {
		t.Errorf("a plain failure is marked allowed")
	}
}

// A run far longer than the others does not flatten them: the trend plot
// turns logarithmic, and 2 s and 3 s stay apart.
func TestHistoryLogScale(t *testing.T) {
	root := t.TempDir()
	for i, secs := range []int{2, 3, 600} {
		start := t0.Add(time.Duration(i) * time.Hour).Format(time.RFC3339Nano)
		dir := filepath.Join(root, fmt.Sprintf("run-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b := fmt.Sprintf(`{"plan":"nightly","board":"rig-3","status":"passed","start":%q,"duration_seconds":%d,"steps":[{"index":"1","name":"log in","type":"wait-for-login","status":"passed","start":%q,"duration_seconds":%d}]}`,
			start, secs, start, secs)
		if err := os.WriteFile(filepath.Join(dir, JSONFile), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(root, "h.html")
	if _, err := WriteHistory(out, []string{root}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	page := string(b)
	cy := func(run int) float64 {
		m := regexp.MustCompile(fmt.Sprintf(`cy="([\d.]+)" r="3.5"><title>1 log in: #%d `, run)).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no point for run %d", run)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	if !strings.Contains(page, "log scale") {
		t.Errorf("no log scale for runs of 2 s, 3 s and 10 min")
	}
	if d := cy(1) - cy(2); d < 10 { // about 0.5 px on a linear scale
		t.Errorf("2 s and 3 s are %.1f px apart: flattened", d)
	}
}
