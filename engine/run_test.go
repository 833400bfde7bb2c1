package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// loadRun loads a plan for a run with no board.
func loadRun(t testing.TB, src string) *engine.Plan {
	t.Helper()
	dir := writeFiles(t, map[string]string{"plan.yaml": src})
	l := engine.NewLoader(engine.Options{Mode: engine.ModeRun, Env: func(string) (string, bool) { return "", false }, Artifacts: dir})
	p := l.LoadPlan(filepath.Join(dir, "plan.yaml"))
	if p == nil || l.Diagnostics().HasErrors() {
		t.Fatalf("load: %v", l.Diagnostics())
	}
	return p
}

// recorder is a Sink that keeps the events.
type recorder struct{ events []engine.Event }

func (r *recorder) Event(e engine.Event) { r.events = append(r.events, e) }

func TestExecuteStatusesAndEvents(t *testing.T) {
	p := loadRun(t, head+`steps:
  - log: one
  - name: ignored failure
    continue-on-error: true
    local: exit 3
  - group:
      steps:
        - log: inner
        - name: inner failure
          local: exit 4
        - log: never
      finally:
        - log: group cleanup
  - log: skipped
finally:
  - name: first cleanup fails
    local: exit 5
  - log: second cleanup runs
`)
	rec := &recorder{}
	res := engine.Execute(context.Background(), engine.RunConfig{Plan: p, Sink: rec})
	if res.Status != result.Failed || res.ExitCode != 1 {
		t.Errorf("status %q exit %d", res.Status, res.ExitCode)
	}
	var got []string
	var walk func(prefix string, rs []*engine.StepResult)
	walk = func(prefix string, rs []*engine.StepResult) {
		for _, r := range rs {
			got = append(got, prefix+r.Index+"="+string(r.Status))
			walk(prefix, r.Children)
		}
	}
	walk("", res.Steps)
	walk("", res.Finally)
	want := "1=passed 2=failed 3=failed 3.1=passed 3.2=failed 3.3=skipped 3.f.1=passed 4=skipped f.1=failed f.2=passed"
	if strings.Join(got, " ") != want {
		t.Errorf("results:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if !res.Steps[1].Ignored {
		t.Errorf("continue-on-error failure not marked ignored")
	}
	if !strings.Contains(res.Error, "status 4") {
		t.Errorf("run error %q should be the first failure", res.Error)
	}
	if len(rec.events) == 0 || rec.events[0].Type != "run-start" || rec.events[len(rec.events)-1].Type != "run-end" {
		t.Errorf("events do not start with run-start and end with run-end")
	}
	starts, ends := 0, 0
	for _, e := range rec.events {
		switch e.Type {
		case "step-start":
			starts++
		case "step-end":
			ends++
		}
	}
	if starts != ends || ends != 8 {
		t.Errorf("%d step-start and %d step-end events, want 8 each (skipped steps do not run)", starts, ends)
	}
}

func TestExecuteRetry(t *testing.T) {
	dir := t.TempDir()
	p := loadRun(t, head+`steps:
  - name: flaky
    retry: {attempts: 3, delay: 10ms}
    local:
      command: 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]'
      dir: `+dir+`
`)
	res := engine.Execute(context.Background(), engine.RunConfig{Plan: p})
	if res.Status != result.Passed || res.Steps[0].Attempts != 3 {
		t.Errorf("status %q after %d attempts: %s", res.Status, res.Steps[0].Attempts, res.Error)
	}
}

func TestExecutePlanTimeoutStillRunsFinally(t *testing.T) {
	p := loadRun(t, head+"timeout: 200ms\nsteps:\n  - log: first\n  - sleep: 30s\n  - log: never\nfinally:\n  - log: cleanup\n")
	res := engine.Execute(context.Background(), engine.RunConfig{Plan: p})
	if res.Status != result.Failed || !strings.Contains(res.Error, "plan timed out after 200ms") {
		t.Errorf("status %q error %q", res.Status, res.Error)
	}
	if res.Steps[0].Status != result.Passed || res.Steps[1].Status != result.Failed || res.Steps[2].Status != result.Skipped {
		t.Errorf("steps: %s %s %s", res.Steps[0].Status, res.Steps[1].Status, res.Steps[2].Status)
	}
	if res.Finally[0].Status != result.Passed {
		t.Errorf("finally after a plan timeout: %s", res.Finally[0].Status)
	}
}

func TestExecuteReportsAreJSON(t *testing.T) {
	p := loadRun(t, head+"steps:\n  - log: hi\n")
	res := engine.Execute(context.Background(), engine.RunConfig{Plan: p})
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil || back["status"] != "passed" {
		t.Errorf("report JSON: %s", b)
	}
}

// BenchmarkStepOverhead is the engine's cost per step: a plan of 1000 log
// steps with no board, with events encoded as the CLI's JSON view does.
func BenchmarkStepOverhead(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(head + "steps:\n")
	const steps = 1000
	for i := 0; i < steps; i++ {
		fmt.Fprintf(&sb, "  - log: step %d\n", i)
	}
	p := loadRun(b, sb.String())
	for _, bc := range []struct {
		name string
		sink engine.Sink
	}{
		{"no-sink", nil},
		{"json-sink", jsonSink{json.NewEncoder(io.Discard)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				res := engine.Execute(context.Background(), engine.RunConfig{Plan: p, Sink: bc.sink})
				if res.Status != result.Passed {
					b.Fatal(res.Error)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/steps, "µs/step")
		})
	}
}

type jsonSink struct{ enc *json.Encoder }

func (s jsonSink) Event(e engine.Event) { _ = s.enc.Encode(e) }

// Issue 11, item 14: a group's finally (and a used plan's) is cut off by
// the grace period after an interruption, and by a second signal (Hard),
// like the plan's own finally; the plan's finally then still runs.
func TestNestedFinallyHonoursGraceAndSecondSignal(t *testing.T) {
	p := loadRun(t, head+`steps:
  - group:
      steps:
        - name: long
          sleep: 1h
      finally:
        - name: slow cleanup
          sleep: 1h
finally:
  - log: plan cleanup
`)
	for _, how := range []string{"grace", "second signal"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			hard, hardCancel := context.WithCancelCause(context.Background())
			defer hardCancel(nil)
			cfg := engine.RunConfig{Plan: p, Hard: hard, FinallyGrace: time.Hour}
			if how == "grace" {
				cfg.FinallyGrace = 200 * time.Millisecond
			}
			rec := &waiter{started: make(chan string, 10)}
			cfg.Sink = rec
			done := make(chan *engine.Result)
			go func() { done <- engine.Execute(ctx, cfg) }()
			waitStarted(t, rec, "long")
			cancel(fmt.Errorf("test: %w", engine.ErrInterrupted))
			waitStarted(t, rec, "slow cleanup")
			if how == "second signal" {
				hardCancel(fmt.Errorf("second signal: %w", engine.ErrInterrupted))
			}
			var res *engine.Result
			select {
			case res = <-done:
			case <-time.After(time.Minute):
				t.Fatal("the group's finally was not cut off")
			}
			g := res.Steps[0]
			if len(g.Children) != 2 || g.Children[1].Status == result.Passed {
				t.Fatalf("group children: %+v", g.Children)
			}
			if len(res.Finally) != 1 {
				t.Fatalf("plan finally: %+v", res.Finally)
			}
			t.Logf("%s: slow cleanup %s: %s; plan cleanup %s", how, g.Children[1].Status, g.Children[1].Error, res.Finally[0].Status)
		})
	}
}

// waiter is a Sink that reports step starts.
type waiter struct{ started chan string }

func (w *waiter) Event(e engine.Event) {
	if e.Type == "step-start" {
		w.started <- e.Step
	}
}

func waitStarted(t *testing.T, w *waiter, name string) {
	t.Helper()
	for {
		select {
		case s := <-w.started:
			if s == name {
				return
			}
		case <-time.After(time.Minute):
			t.Fatalf("step %q never started", name)
		}
	}
}

// Each action writes through the handle of its own step: log lines and
// output land on the step that wrote them, however deep in groups, and not
// on the group around it.
func TestStepRunAttributesToItsStep(t *testing.T) {
	p := loadRun(t, head+`steps:
  - log: one
  - group:
      steps:
        - log: inner
        - group:
            steps:
              - log: deepest
      finally:
        - log: group cleanup
finally:
  - log: last
`)
	rec := &recorder{}
	res := engine.Execute(context.Background(), engine.RunConfig{Plan: p, Sink: rec})
	if res.Status != result.Passed {
		t.Fatalf("status %q: %s", res.Status, res.Error)
	}
	logs := map[string]string{}
	for _, e := range rec.events {
		if e.Type == "log" && e.Index != "" {
			logs[e.Message] = e.Index
		}
	}
	for msg, idx := range map[string]string{"one": "1", "inner": "2.1", "deepest": "2.2.1", "group cleanup": "2.f.1", "last": "f.1"} {
		if logs[msg] != idx {
			t.Errorf("log %q attributed to step %q, want %q (all: %v)", msg, logs[msg], idx, logs)
		}
	}
	group := res.Steps[1]
	if group.Output != "" || len(group.Children) != 3 || group.Children[0].Output != "inner" ||
		group.Children[1].Children[0].Output != "deepest" || group.Children[2].Output != "group cleanup" {
		t.Errorf("outputs: group %q, children %+v", group.Output, group.Children)
	}
}
