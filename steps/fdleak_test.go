package steps_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine/result"
)

// openFDs lists this process's open file descriptors and what they are.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	out := map[string]string{}
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out[e.Name()] = l
	}
	return out
}

// Issue 11 (fault soak): runs on the board, with commands that finish,
// fail and time out (the cancel paths), leave no file descriptor behind in
// the process that ran them.
func TestNoFDLeakAcrossRuns(t *testing.T) {
	plan := head + login +
		"  - run: echo hello\n" +
		"  - {run: 'sleep 30', timeout: 1s, continue-on-error: true}\n" +
		"  - local: 'sleep 100 & echo bg'\n" +
		"  - {local: 'sleep 30', timeout: 1s, continue-on-error: true}\n" +
		"  - {local: 'exit 3', continue-on-error: true}\n" +
		"  - collect: {paths: [/proc/version], to: x}\n" +
		"finally:\n  - power: off\n"
	once := func() {
		r := execute(t, "", "", plan, true, nil)
		if r.res.Status != result.Passed {
			t.Fatalf("run: %s %s", r.res.Status, r.res.Error)
		}
	}
	once() // warm up: the guardian's pipe, the runtime's own descriptors
	before := openFDs(t)
	for range 3 {
		once()
	}
	var after map[string]string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if after = openFDs(t); len(after) <= len(before) {
			return
		}
	}
	var extra []string
	for fd, l := range after {
		if before[fd] != l {
			extra = append(extra, fd+" -> "+l)
		}
	}
	t.Fatalf("%d descriptors open before, %d after three runs: %s", len(before), len(after), strings.Join(extra, ", "))
}
