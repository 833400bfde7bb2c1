package steps_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
)

// A board whose console stays silent after power on gets a warning in the run
// log while the plan keeps waiting; a board that talks gets none.
func TestPowerOnSilentConsoleWarns(t *testing.T) {
	silent := strings.Replace(simBoards, "boot-delay: 1ms", "boot-delay: 3s", 1)
	plan := head + "steps:\n  - power: on\n  - sleep: 1s\n  - power: off\n"
	quick := withConfig(func(c *engine.RunConfig) { c.ConsoleSilence = 300 * time.Millisecond })

	r := execute(t, "", "", plan, true, nil, withBoards(silent), quick)
	if r.res.Status != "passed" {
		t.Fatalf("run %s: %s", r.res.Status, r.res.Error)
	}
	log := r.consoleLog(t)
	if !strings.Contains(log, "warning: no console output for 300ms after power on") {
		t.Errorf("no silence warning in the console log:\n%s", log)
	}
	if !strings.Contains(log, "no console output for 600ms") {
		t.Errorf("the warning is not repeated while the console stays silent:\n%s", log)
	}

	r = execute(t, "", "", head+login+"  - sleep: 1s\n  - power: off\n", true, nil, quick)
	if r.res.Status != "passed" {
		t.Fatalf("run %s: %s", r.res.Status, r.res.Error)
	}
	if log := r.consoleLog(t); strings.Contains(log, "no console output") {
		t.Errorf("a board that printed got a silence warning:\n%s", log)
	}
}

// A step that waits long says so every RunConfig.Progress: what it waits
// for, how long it has waited of its bound, and the last line the board
// printed.
func TestWaitingStepReportsProgress(t *testing.T) {
	quick := withConfig(func(c *engine.RunConfig) { c.Progress = 300 * time.Millisecond })
	plan := head + login + "  - run: echo last-words-$((6*7)); sleep 1\n" +
		"  - {console: {expect: never-printed}, timeout: 1s, continue-on-error: true}\n  - power: off\n"
	r := execute(t, "", "", plan, true, nil, quick)
	if r.res.Status != "passed" {
		t.Fatalf("run %s: %s", r.res.Status, r.res.Error)
	}
	log := r.consoleLog(t)
	for _, want := range []string{
		` of 10m) for the command "echo last-words-$((6*7)); sleep 1" to finish; the board last printed "last-words-42"`,
		` of 1s) for the console to print "never-printed"; the board last printed "root@sim:~#"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the console log:\n%s", want, log)
		}
	}
	// a step that ends quickly prints none
	if n := strings.Count(log, "still waiting"); n > 8 {
		t.Errorf("%d progress lines for 2 s of waiting at 300 ms", n)
	}
}

// Every step type that waits on something outside jsplan has a default
// bound: no step waits forever because its plan set no timeout. sleep is
// its own bound; log does not wait; use, group and parallel hold steps that
// have theirs.
func TestEveryWaitingStepHasADefaultBound(t *testing.T) {
	own := map[string]bool{"sleep": true, "log": true, "use": true, "group": true, "parallel": true}
	for _, st := range engine.StepTypes() {
		if !own[st.Name] && st.DefaultTimeout <= 0 {
			t.Errorf("step type %s has no default timeout", st.Name)
		}
	}
}

// syncRecorder is a Sink that keeps the events (emit serialises calls).
type syncRecorder struct{ events []engine.Event }

func (r *syncRecorder) Event(e engine.Event) { r.events = append(r.events, e) }

// The run's Sink gets what the board prints as console events, one per
// line, masked, naming the step that ran.
func TestConsoleLinesAreEvents(t *testing.T) {
	rec := &syncRecorder{}
	plan := head + login + "  - run: echo line-$((6*7)); echo sim-password\n  - power: off\n"
	r := execute(t, "", "", plan, true, nil, withConfig(func(c *engine.RunConfig) { c.Sink = rec }))
	if r.res.Status != "passed" {
		t.Fatalf("run %s: %s", r.res.Status, r.res.Error)
	}
	var got, leaked bool
	for _, e := range rec.events {
		if e.Type != "console" {
			continue
		}
		if e.Message == "line-42" && e.Index == "3" {
			got = true
		}
		if strings.Contains(e.Message, "sim-password") {
			leaked = true
		}
	}
	if !got || leaked {
		t.Errorf("console events: line-42 of step 3 seen=%v, secret shown=%v", got, leaked)
	}
}
