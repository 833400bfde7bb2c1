package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
)

// The summary counts the steps that do something, not the group and use
// steps around them: one failure reads "1 failed", not once per level.
func TestSummaryCountsLeafSteps(t *testing.T) {
	p := loadRun(t, head+`steps:
  - log: one
  - group:
      steps:
        - log: inner
        - group:
            steps:
              - name: the failure
                local: exit 4
finally:
  - log: cleanup
`)
	res := engine.Execute(context.Background(), engine.RunConfig{Plan: p})
	if !strings.HasPrefix(res.Summary, "failed: 3 of 4 steps passed, 1 failed") {
		t.Errorf("summary %q, want 3 of 4 steps passed, 1 failed", res.Summary)
	}
}
