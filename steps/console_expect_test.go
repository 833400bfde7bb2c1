package steps_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestConsoleExpectAfterSend runs README's pattern, a console step that sends
// Ctrl-C and expects the prompt, between two run steps, many times on the
// virtual board. The expect must match the prompt printed after the Ctrl-C,
// not the one already on screen: else the Ctrl-C lands while the next run's
// command is typed, the shell drops it, and that step waits for its timeout.
func TestConsoleExpectAfterSend(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	var b strings.Builder
	b.WriteString(head + login)
	for i := range n {
		fmt.Fprintf(&b, "  - {run: uname -a, timeout: 10s}\n")
		fmt.Fprintf(&b, "  - {console: {send: \"<CTRL-C>\", expect: [\"# $\", \"login:\"]}, timeout: 10s}\n")
		fmt.Fprintf(&b, "  - {run: {command: \"echo after-%d\", expect-output: \"^after-%d$\"}, timeout: 10s}\n", i, i)
	}
	r := execute(t, "", "", b.String(), true, nil)
	if r.res.Status != "passed" {
		for _, s := range r.res.Steps {
			if s.Status != "passed" && s.Status != "skipped" {
				t.Errorf("step %s: %s: %s", s.Name, s.Status, s.Error)
			}
		}
		t.Fatalf("run: %s", r.res.Status)
	}
}
