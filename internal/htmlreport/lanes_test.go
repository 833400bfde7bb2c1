package htmlreport

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// TestLanesOnePerBoard checks a run on two boards draws one lane per
// board, each with the bars of the steps that ran on it, and a run on one
// board none.
func TestLanesOnePerBoard(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	step := func(idx, name, board string, at, secs float64, kids ...*engine.StepResult) *engine.StepResult {
		return &engine.StepResult{Index: idx, Name: name, Type: "run", Board: board, Status: result.Passed,
			Start: start.Add(time.Duration(at * float64(time.Second))), Seconds: secs, Children: kids}
	}
	res := &engine.Result{Plan: "pair", Board: "node-a", Status: result.Passed, Start: start, Seconds: 10,
		Boards: []engine.RoleResult{{Role: "sender", Board: "node-a"}, {Role: "receiver", Board: "node-b"}},
		Steps: []*engine.StepResult{step("1", "both", "node-a", 0, 8,
			step("1.1", "send", "node-a", 0, 3), step("1.2", "receive", "node-b", 1, 7))},
		Finally: []*engine.StepResult{step("f.1", "off", "node-b", 8, 1)}}
	var buf bytes.Buffer
	if err := Render(&buf, t.TempDir(), res, Options{}); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	parts := strings.Split(html, `class="tlrow lane"`)
	if len(parts) != 3 {
		t.Fatalf("%d lanes, want 2", len(parts)-1)
	}
	a, b := parts[1][:strings.Index(parts[1], "</div>")], parts[2][:strings.Index(parts[2], "</div>")]
	if !strings.Contains(a, "node-a (sender)") || strings.Count(a, `class="bar`) != 1 || !strings.Contains(a, `data-step="1.1"`) {
		t.Errorf("lane of node-a: %s", a)
	}
	if !strings.Contains(b, "node-b (receiver)") || strings.Count(b, `class="bar`) != 2 || !strings.Contains(b, `data-step="f.1"`) {
		t.Errorf("lane of node-b: %s", b)
	}
	if !strings.Contains(html, "<title>pair on node-a, node-b: passed") {
		t.Errorf("the title does not name both boards")
	}

	res.Boards = nil
	buf.Reset()
	if err := Render(&buf, t.TempDir(), res, Options{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), `class="tlrow lane"`) {
		t.Error("a run on one board has lanes")
	}
}
