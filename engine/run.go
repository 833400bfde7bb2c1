package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/jsplan/jsplan/internal/shorten"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/redact"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/engine/shell"
)

// ErrInterrupted is the cancel cause set when the run is stopped by a
// signal (the CLI wraps it with the signal's name).
var ErrInterrupted = errors.New("interrupted")

// StepTimeoutError is the cause of a step's context when its timeout fires.
type StepTimeoutError struct{ Timeout time.Duration }

func (e *StepTimeoutError) Error() string {
	return "step timed out after " + FormatDuration(e.Timeout)
}

// Class implements diag.Classer: a board that takes too long fails the test.
func (e *StepTimeoutError) Class() diag.Class { return diag.Failure }

// PlanTimeoutError is the cause of the plan's context when its timeout fires.
type PlanTimeoutError struct{ Timeout time.Duration }

func (e *PlanTimeoutError) Error() string {
	return "plan timed out after " + FormatDuration(e.Timeout)
}

// Class implements diag.Classer.
func (e *PlanTimeoutError) Class() diag.Class { return diag.Failure }

// StepResult is the outcome of one step.
type StepResult struct {
	Index    string        `json:"index"`
	Name     string        `json:"name"`
	ID       string        `json:"id,omitempty"`
	Type     string        `json:"type"`
	Path     string        `json:"path"`
	Status   result.Status `json:"status"`
	Attempts int           `json:"attempts"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"duration_seconds"`
	Error    string        `json:"error,omitempty"`
	Class    string        `json:"class,omitempty"`
	Ignored  bool          `json:"continue_on_error,omitempty"`
	Output   string        `json:"output,omitempty"`
	Children []*StepResult `json:"steps,omitempty"`
	// Board is the board the step ran on, in a run on several boards.
	Board string `json:"board,omitempty"`
	// Tests are the test cases the board reported during the step (KTAP, TAP,
	// JUnit), when the step declared that its output or a file holds results.
	Tests []*result.TestCase `json:"tests,omitempty"`

	mu        sync.Mutex
	rawOutput string // the end of the output, unmasked (Output is masked)
	outputCut bool   // rawOutput lost its beginning
}

// Result is the outcome of a run.
type Result struct {
	Plan  string `json:"plan"`
	File  string `json:"file"`
	Board string `json:"board"`
	// Boards are the boards of a run on several, by role, and the
	// shared resources it held (multi.go).
	Boards    []RoleResult  `json:"boards,omitempty"`
	Resources []string      `json:"resources,omitempty"`
	Status    result.Status `json:"status"`
	Summary   string        `json:"summary"`
	Error     string        `json:"error,omitempty"`
	Class     string        `json:"class,omitempty"`
	ExitCode  int           `json:"exit_code"`
	Start     time.Time     `json:"start"`
	Duration  time.Duration `json:"-"`
	Seconds   float64       `json:"duration_seconds"`
	Steps     []*StepResult `json:"steps"`
	Finally   []*StepResult `json:"finally,omitempty"`

	// What ran, for the report's header: the jsplan version, its command
	// line (secrets masked) and the images steps wrote to the board.
	Version string  `json:"version,omitempty"`
	Command string  `json:"command,omitempty"`
	Images  []Image `json:"images,omitempty"`
	// Attempts lists every attempt of a run retried after infrastructure
	// errors (jsplan apply --retry-infra), this one last; empty when the
	// run had one attempt.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Image is an image a step wrote to the board's storage.
type Image struct {
	Step   string `json:"step"` // the step's index
	Path   string `json:"path"`
	Format string `json:"format,omitempty"`
	Size   int64  `json:"size,omitempty"`   // decoded size in bytes
	SHA256 string `json:"sha256,omitempty"` // of the image file, when it was checked
}

// Event is one entry of the run's event stream.
type Event struct {
	Time     time.Time     `json:"time"`
	Type     string        `json:"event"` // run-start, step-start, step-end, log, console, run-end
	Index    string        `json:"index,omitempty"`
	Step     string        `json:"step,omitempty"`
	StepType string        `json:"type,omitempty"`
	Status   result.Status `json:"status,omitempty"`
	Attempt  int           `json:"attempt,omitempty"`
	Seconds  float64       `json:"duration_seconds,omitempty"`
	Message  string        `json:"message,omitempty"`
	Result   *Result       `json:"result,omitempty"`
	// Board is the board of the step or console line, in a run on several.
	Board string `json:"board,omitempty"`
}

// Sink receives events; the CLI's human and JSON views implement it.
type Sink interface {
	Event(Event)
}

// RunConfig configures a run.
type RunConfig struct {
	Plan      *Plan
	Board     *Board
	Artifacts string
	Sink      Sink
	Redactor  *redact.Redactor
	// Hard is cancelled on a second signal: finally steps stop too.
	Hard context.Context
	// FinallyGrace bounds the finally steps after an interruption or a
	// plan timeout (default 5 minutes).
	FinallyGrace time.Duration
	// ConsoleLog receives the raw console bytes (already timestamped by
	// the caller's console.Log); may be nil.
	ConsoleLog *console.Log
	// ConsoleSilence is how long a console may stay silent after power on
	// before the log says so (DefaultConsoleSilence if 0, never if < 0).
	ConsoleSilence time.Duration
	// Version and Command are copied into the Result (Command already
	// masked).
	Version, Command string
	// Progress is how often a step that is still waiting says so in the
	// log: what it waits for, for how long, and the last line the board
	// printed (DefaultProgress if 0, never if < 0).
	Progress time.Duration
	// ConsoleWindow is the size of the console's match window: the
	// longest text an expect or fail-on pattern can match
	// (console.DefaultWindow if 0).
	ConsoleWindow int
	// Roles are the opened boards of a plan on several boards (or with
	// shared resources), in the plan's role order; Board and ConsoleLog
	// are then ignored. Resources names the resources held.
	Roles     []RoleBoard
	Resources []string
}

// DefaultConsoleSilence is RunConfig.ConsoleSilence's default.
const DefaultConsoleSilence = 30 * time.Second

// DefaultProgress is RunConfig.Progress's default.
const DefaultProgress = 30 * time.Second

// run is a plan being executed on one board (one of a run on several);
// the steps reach it through their StepRun.
type run struct {
	cfg     RunConfig
	board   *Board
	console *console.Session
	shell   *shell.Shell
	conErr  error
	cancel  context.CancelCauseFunc
	mu      *sync.Mutex
	secrets *redact.Redactor
	res     *Result
	// curStep is the index of the innermost step running ("" between
	// steps), for console events.
	curStep atomic.Value
	// stop ends every finally block, the plan's and the groups': on a
	// second signal (cfg.Hard), or when the grace period that starts when
	// the run is stopped (interrupted or timed out) is over.
	stop context.Context
	// roles are the runs of every board by role, shared by all of them,
	// in a run on several boards (nil for one).
	roles map[string]*run
	multi bool
}

// Execute runs the plan and its finally steps, and returns the result. It
// never panics on a step's panic: that becomes an error of the step.
func Execute(ctx context.Context, cfg RunConfig) *Result {
	if cfg.Redactor == nil {
		cfg.Redactor = &redact.Redactor{}
	}
	if cfg.FinallyGrace == 0 {
		cfg.FinallyGrace = 5 * time.Minute
	}
	if cfg.Hard == nil {
		cfg.Hard = context.Background()
	}
	if cfg.ConsoleSilence == 0 {
		cfg.ConsoleSilence = DefaultConsoleSilence
	}
	if cfg.Progress == 0 {
		cfg.Progress = DefaultProgress
	}
	p := cfg.Plan
	res := &Result{Plan: p.Name, File: p.File, Start: time.Now(), Version: cfg.Version, Command: cfg.Command}
	r := &run{cfg: cfg, board: cfg.Board, secrets: cfg.Redactor, res: res, mu: &sync.Mutex{}}
	if len(cfg.Roles) > 0 {
		r = r.withRoles(res)
	}
	if r.board != nil {
		res.Board = r.board.Spec.Name
	}
	r.emit(Event{Type: "run-start", Message: fmt.Sprintf("plan %s on %s", p.Name, r.boardsText())})

	runCtx, cancel := context.WithCancelCause(ctx)
	r.cancel = cancel
	defer cancel(nil)
	if p.Timeout.Known() && p.Timeout.Duration > 0 {
		var stop context.CancelFunc
		runCtx, stop = context.WithTimeoutCause(runCtx, p.Timeout.Duration, &PlanTimeoutError{p.Timeout.Duration})
		defer stop()
	}
	// Finally steps (the plan's and every group's) run on a fresh context,
	// bounded by the grace period once the run is interrupted or timed
	// out, and cut short by a second signal.
	stop, stopCancel := context.WithCancelCause(context.Background())
	defer stopCancel(nil)
	r.stop = stop
	stopHard := context.AfterFunc(cfg.Hard, func() { stopCancel(context.Cause(cfg.Hard)) })
	defer stopHard()
	var gmu sync.Mutex
	var grace *time.Timer
	stopGrace := context.AfterFunc(runCtx, func() {
		gmu.Lock()
		defer gmu.Unlock()
		grace = time.AfterFunc(cfg.FinallyGrace, func() {
			stopCancel(fmt.Errorf("finally steps cut off after the %s grace period", FormatDuration(cfg.FinallyGrace)))
		})
	})
	defer func() {
		stopGrace()
		gmu.Lock()
		if grace != nil {
			grace.Stop()
		}
		gmu.Unlock()
	}()
	r.openConsoles(runCtx)

	var mainErr error
	res.Steps, mainErr = r.runList(runCtx, p.Steps, "")

	// Finally always runs.
	fctx, fcancel := r.finallyContext(runCtx)
	if len(p.Finally) > 0 {
		r.emit(Event{Type: "log", Message: "running finally steps"})
	}
	var finErr error
	res.Finally, finErr = r.runFinally(fctx, p.Finally, "f")
	fcancel()

	r.closeConsoles()
	r.finish(ctx, res, mainErr, finErr)
	r.emit(Event{Type: "run-end", Status: res.Status, Seconds: res.Seconds, Message: res.Summary, Result: res})
	return res
}

func (r *run) finish(ctx context.Context, res *Result, mainErr, finErr error) {
	res.Duration = time.Since(res.Start)
	res.Seconds = res.Duration.Seconds()
	err := mainErr
	if err == nil {
		err = finErr
	}
	switch {
	case err == nil:
		res.Status, res.ExitCode = result.Passed, 0
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrInterrupted):
		res.Status, res.ExitCode = result.Interrupted, 130
		if s, ok := context.Cause(ctx).(interface{ ExitCode() int }); ok {
			res.ExitCode = s.ExitCode()
		}
	default:
		c := diag.ClassOf(err)
		res.Class = c.String()
		res.ExitCode = c.ExitCode()
		res.Status = result.Failed
		if c == diag.Infra || c == diag.Invalid {
			res.Status = result.Error
		}
	}
	if err != nil {
		res.Error = r.secrets.String(err.Error())
	}
	var total, passed, failed, stopped int
	count := func(s *StepResult) {
		if len(s.Children) > 0 {
			return // a use or group: its steps count, not the wrapper
		}
		total++
		switch s.Status {
		case result.Passed:
			passed++
		case result.Failed, result.Error:
			if !s.Ignored {
				failed++
			}
		case result.Interrupted:
			stopped++
		}
	}
	walkResults(res.Steps, count)
	walkResults(res.Finally, count)
	res.Summary = fmt.Sprintf("%s: %d of %d steps passed", res.Status, passed, total)
	if failed > 0 {
		res.Summary += fmt.Sprintf(", %d failed", failed)
	}
	if stopped > 0 {
		res.Summary += fmt.Sprintf(", %d interrupted", stopped)
	}
	res.Summary += testSummary(res)
	if res.Error != "" {
		res.Summary += " (" + shorten.Clip(shorten.FirstLine(res.Error), 197) + ")"
	}
	res.Summary += fmt.Sprintf(" in %.1fs", res.Seconds)
}

// testSummary counts the test cases the steps reported (test points: cases
// without subtests): "; test cases: 3 passed, 1 failed (1 allowed), 1 skipped".
func testSummary(res *Result) string {
	n := map[result.Status]int{}
	allowed := 0
	var leaves func([]*result.TestCase)
	leaves = func(list []*result.TestCase) {
		for _, c := range list {
			if len(c.Children) > 0 {
				leaves(c.Children)
				continue
			}
			n[c.Status]++
			if c.Allowed {
				allowed++
			}
		}
	}
	count := func(s *StepResult) { leaves(s.Tests) }
	walkResults(res.Steps, count)
	walkResults(res.Finally, count)
	if len(n) == 0 {
		return ""
	}
	var parts []string
	for _, st := range []result.Status{result.Passed, result.Failed, result.Error, result.Skipped, result.XFail} {
		if n[st] == 0 {
			continue
		}
		p := fmt.Sprintf("%d %s", n[st], st)
		if st == result.Failed && allowed > 0 {
			p += fmt.Sprintf(" (%d allowed)", allowed)
		}
		parts = append(parts, p)
	}
	return "; test cases: " + strings.Join(parts, ", ")
}

func walkResults(rs []*StepResult, fn func(*StepResult)) {
	for _, s := range rs {
		fn(s)
		walkResults(s.Children, fn)
	}
}

// openConsole starts the console session when the board has a console.
func (r *run) openConsole(ctx context.Context) {
	if r.board == nil || !r.board.Spec.Has(drivers.CapConsole) {
		return
	}
	dev, err := r.board.ConsoleDevice()
	if err == nil {
		var rw io.ReadWriteCloser
		// The stream must outlive a cancelled run: finally steps use it.
		rw, err = dev.OpenConsole(context.WithoutCancel(ctx))
		if err == nil {
			var fail []*regexp.Regexp
			for _, p := range r.cfg.Plan.FailOn {
				if p.Re != nil {
					fail = append(fail, p.Re)
				}
			}
			opts := console.Options{Window: r.cfg.ConsoleWindow, FailOn: fail, OnFail: func(pattern, match string) {
				r.cancel(diag.Fail(&console.FailOnError{Pattern: pattern, Text: match}))
			}}
			if r.cfg.ConsoleLog != nil {
				opts.Log = r.cfg.ConsoleLog
			}
			if r.cfg.Sink != nil {
				// what the board prints, line by line, as events (masked)
				lines := &consoleLines{r: r}
				if opts.Log != nil {
					opts.Log = io.MultiWriter(opts.Log, lines)
				} else {
					opts.Log = lines
				}
			}
			r.console = console.New(rw, opts)
			r.shell = shell.New(r.console, r.secrets, r.secret)
			return
		}
	}
	r.conErr = diag.Infraf("cannot open the console: %v", err)
}

// StepRun is the handle of one step while its action runs, as a
// *testing.T is a test's: the action reaches the board, its console, the
// run log, the step's output and test cases, and the run's secrets
// through it. It is valid only during Action.Run (and the nested steps it
// runs get handles of their own).
type StepRun struct {
	r   *run
	res *StepResult
	// wait is what the step waits for, for its progress lines (nil for
	// actions that hold steps: their steps say what they wait for).
	wait *waiting
}

// Board returns the opened board the step runs on.
func (h *StepRun) Board() *Board { return h.r.board }

// Console returns the console session of the step's board.
func (h *StepRun) Console() (*console.Session, error) { return h.r.openedConsole() }

// Shell returns the login shell on the console of the step's board: how
// commands run there (run, collect), and what is known of it (a command
// ended it; its prompt).
func (h *StepRun) Shell() (*shell.Shell, error) {
	if _, err := h.r.openedConsole(); err != nil {
		return nil, err
	}
	return h.r.shell, nil
}

// WatchConsole is called after something that should make the board print
// (power on): while the console stays silent, the run log says so every
// RunConfig.ConsoleSilence, so a long wait for a login has its reason beside it.
func (h *StepRun) WatchConsole(what string) { h.r.watchConsole(what) }

// Artifacts is the artifacts directory.
func (h *StepRun) Artifacts() string { return h.r.cfg.Artifacts }

// Plan is the plan being run.
func (h *StepRun) Plan() *Plan { return h.r.cfg.Plan }

// Redactor is the run's redactor: it masks the secrets registered so far
// (plan secrets, Secret) in whatever the step reports.
func (h *StepRun) Redactor() *redact.Redactor { return h.r.secrets }

// Secret registers a value to mask everywhere. A value too short to mask
// (redact.MinLen) is not registered; the run log says so.
func (h *StepRun) Secret(v string) { h.r.secret(v) }

// SuppressConsoleLog leaves the console's bytes out of console.log until
// resume is called, which notes summary in the log instead: for transfers
// in encodings masking cannot see through (base64 of a collected file).
func (h *StepRun) SuppressConsoleLog() (resume func(summary string)) {
	if h.r.cfg.ConsoleLog == nil {
		return func(string) {}
	}
	return h.r.cfg.ConsoleLog.Suppress()
}

// Logf writes a line to the run log, attributed to the step.
func (h *StepRun) Logf(format string, args ...any) { h.r.logf(h.res, format, args...) }

// Image records an image the step wrote to the board, for the report's
// header.
func (h *StepRun) Image(img Image) {
	img.Step = h.res.Index
	img.Path = h.r.secrets.String(img.Path)
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.res.Images = append(h.r.res.Images, img)
}

// Output records output of the step for the reports (the last 4 KiB are
// kept).
func (h *StepRun) Output(text string) {
	sr, red := h.res, h.r.secrets
	sr.mu.Lock()
	defer sr.mu.Unlock()
	// Masked as one text: a secret split between two calls is masked too.
	sr.rawOutput += text
	if keep := 4096 + red.MaxLen(); len(sr.rawOutput) > keep {
		sr.rawOutput = sr.rawOutput[len(sr.rawOutput)-keep:]
		sr.outputCut = true
	}
	sr.Output = red.String(sr.rawOutput)
	if sr.outputCut || len(sr.Output) > 4096 {
		sr.Output = "..." + red.Tail(sr.rawOutput, 4093)
	}
}

// Tests records test cases the board reported during the step (parsed
// from its output or a collected file), secrets masked. A retried step
// keeps those of its last attempt.
func (h *StepRun) Tests(cases []*result.TestCase) {
	if len(cases) == 0 {
		return
	}
	red := h.r.secrets
	var mask func([]*result.TestCase)
	mask = func(list []*result.TestCase) {
		for _, c := range list {
			c.Suite, c.Name = red.String(c.Suite), red.String(c.Name)
			c.Message, c.Output = red.String(c.Message), red.String(c.Output)
			mask(c.Children)
		}
	}
	mask(cases)
	h.res.mu.Lock()
	h.res.Tests = append(h.res.Tests, cases...)
	h.res.mu.Unlock()
}

// Waiting says what the step waits for from now on ("the login prompt"):
// the progress lines a long wait prints name it. By default they name the
// step.
func (h *StepRun) Waiting(what string) {
	if w := h.wait; w != nil {
		w.mu.Lock()
		w.what = what
		w.mu.Unlock()
	}
}

// RunSteps runs nested steps (a group's) as children of the step. It stops
// at the first failure not marked continue-on-error.
func (h *StepRun) RunSteps(ctx context.Context, steps []*Step) error {
	kids, err := h.r.runList(ctx, steps, h.res.Index)
	h.res.addChildren(kids...)
	return err
}

// RunFinally runs nested finally steps as children of the step: every one
// is attempted, even after the run was interrupted (within the grace
// period).
func (h *StepRun) RunFinally(ctx context.Context, steps []*Step) error {
	fctx, cancel := h.r.finallyContext(ctx)
	defer cancel()
	kids, err := h.r.runFinally(fctx, steps, h.res.Index+".f")
	h.res.addChildren(kids...)
	return err
}

func (sr *StepResult) addChildren(kids ...*StepResult) {
	sr.mu.Lock()
	sr.Children = append(sr.Children, kids...)
	sr.mu.Unlock()
}

// Console returns the run's console session.
func (r *run) openedConsole() (*console.Session, error) {
	if r.console == nil {
		if r.conErr != nil {
			return nil, r.conErr
		}
		return nil, diag.Infraf("the board has no console")
	}
	if err := r.console.Err(); err != nil {
		return nil, diag.Infraf("%v", err)
	}
	return r.console, nil
}

func (r *run) watchConsole(what string) {
	if r.console == nil {
		return
	}
	r.console.WatchSilence(r.cfg.ConsoleSilence, func(silent time.Duration) {
		r.logf(nil, "warning: no console output for %s after %s: check the console's wiring and speed, and that the board boots",
			FormatDuration(silent), what)
	})
}

func (r *run) secret(v string) {
	if redact.TooShort(v) {
		r.emit(Event{Type: "log", Message: fmt.Sprintf("warning: a secret shorter than %d characters (a password?) is not masked", redact.MinLen)})
		return
	}
	r.secrets.Add(v)
}

// logf writes a line to the run log, attributed to step sr (nil: none).
func (r *run) logf(sr *StepResult, format string, args ...any) {
	msg := r.secrets.String(fmt.Sprintf(format, args...))
	ev := Event{Type: "log", Message: msg}
	if sr != nil {
		ev.Index, ev.Step = sr.Index, sr.Name
	}
	if r.cfg.ConsoleLog != nil {
		r.cfg.ConsoleLog.Note("%s", msg)
	}
	r.emit(ev)
}

func (r *run) emit(e Event) {
	if r.cfg.Sink == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Message = r.secrets.String(e.Message)
	e.Step = r.secrets.String(e.Step)
	if r.multi && r.board != nil && e.Board == "" && e.Type != "run-start" && e.Type != "run-end" {
		e.Board = r.board.Spec.Name
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.Sink.Event(e)
}

// finallyContext is the context of finally steps: ctx's values, not its
// cancellation, but ended by the run's stop (second signal, grace period).
func (r *run) finallyContext(ctx context.Context) (context.Context, func()) {
	fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	if r.stop == nil {
		return fctx, func() { cancel(nil) }
	}
	stop := context.AfterFunc(r.stop, func() { cancel(context.Cause(r.stop)) })
	return fctx, func() { stop(); cancel(nil) }
}

func index(prefix string, i int) string {
	if prefix == "" {
		return fmt.Sprint(i + 1)
	}
	return fmt.Sprintf("%s.%d", prefix, i+1)
}

func (r *run) runList(ctx context.Context, steps []*Step, prefix string) ([]*StepResult, error) {
	var out []*StepResult
	var first error
	for i, s := range steps {
		idx := index(prefix, i)
		if first != nil || ctx.Err() != nil {
			out = append(out, &StepResult{Index: idx, Name: r.secrets.String(s.Title()), ID: s.ID, Type: s.Type, Path: s.Path, Status: result.Skipped})
			continue
		}
		sr, err := r.runStep(ctx, s, idx)
		out = append(out, sr)
		if err != nil && !s.ContinueOnError.Value {
			first = err
		}
	}
	if first == nil && ctx.Err() != nil {
		first = context.Cause(ctx)
	}
	return out, first
}

func (r *run) runFinally(ctx context.Context, steps []*Step, prefix string) ([]*StepResult, error) {
	var out []*StepResult
	var all error
	for i, s := range steps {
		sr, err := r.runStep(ctx, s, index(prefix, i))
		out = append(out, sr)
		if err != nil && !s.ContinueOnError.Value {
			all = appendErr(all, err)
		}
	}
	return out, all
}

func (r *run) runStep(ctx context.Context, s *Step, idx string) (*StepResult, error) {
	if rr := r.roles[s.On]; s.On != "" && rr != nil && rr != r {
		return rr.runStep(ctx, s, idx)
	}
	sr := &StepResult{Index: idx, Name: r.secrets.String(s.Title()), ID: s.ID, Type: s.Type, Path: s.Path, Start: time.Now()}
	if r.multi && r.board != nil {
		sr.Board = r.board.Spec.Name
	}
	r.emit(Event{Type: "step-start", Index: idx, Step: sr.Name, StepType: s.Type})
	// console events name the innermost step running
	prev, _ := r.curStep.Swap(idx).(string)
	defer r.curStep.Store(prev)
	if r.cfg.ConsoleLog != nil {
		r.cfg.ConsoleLog.Step(idx, sr.Name)
	}
	attempts := s.Retry.Count()
	var err error
	for a := 1; a <= attempts; a++ {
		sr.Attempts = a
		err = r.attempt(ctx, s, sr)
		if err == nil || ctx.Err() != nil {
			break
		}
		if a < attempts {
			r.emit(Event{Type: "log", Index: idx, Step: sr.Name, Attempt: a,
				Message: fmt.Sprintf("attempt %d of %d failed: %v; retrying in %s", a, attempts, err, FormatDuration(s.Retry.Delay.Duration))})
			select {
			case <-ctx.Done():
			case <-time.After(s.Retry.Delay.Duration):
			}
			if ctx.Err() != nil {
				break
			}
			sr.mu.Lock()
			sr.Children, sr.Tests = nil, nil
			sr.mu.Unlock()
		}
	}
	sr.Duration = time.Since(sr.Start)
	sr.Seconds = sr.Duration.Seconds()
	switch {
	case err == nil:
		sr.Status = result.Passed
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrInterrupted):
		sr.Status = result.Interrupted
	default:
		c := diag.ClassOf(err)
		sr.Class = c.String()
		sr.Status = result.Failed
		if c == diag.Infra {
			sr.Status = result.Error
		}
	}
	if err != nil {
		sr.Error = r.secrets.String(err.Error())
		sr.Ignored = s.ContinueOnError.Value
	}
	msg := sr.Error
	if sr.Ignored {
		msg += " (continue-on-error)"
	}
	r.emit(Event{Type: "step-end", Index: idx, Step: sr.Name, StepType: s.Type, Status: sr.Status, Attempt: sr.Attempts, Seconds: sr.Seconds, Message: msg})
	return sr, err
}

// attempt runs the action once under the step's timeout, turning a panic
// into an error and a timeout into a StepTimeoutError.
func (r *run) attempt(ctx context.Context, s *Step, sr *StepResult) (err error) {
	timeout := s.Timeout.Duration
	if !s.Timeout.IsSet() {
		if st, ok := LookupStep(s.Type); ok {
			timeout = st.DefaultTimeout
		}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, &StepTimeoutError{timeout})
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			err = diag.Infraf("internal error in step %s: %v", s.Type, p)
		}
	}()
	h := &StepRun{r: r, res: sr}
	if _, parent := s.Action.(Parent); !parent {
		h.wait = &waiting{what: s.Title()}
		defer h.watchProgress(ctx, timeout)()
	}
	err = s.Action.Run(ctx, h)
	if err != nil && ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = cause
		} else if !errors.Is(err, cause) {
			var te *StepTimeoutError
			var pe *PlanTimeoutError
			if errors.As(cause, &te) || errors.As(cause, &pe) || errors.Is(cause, ErrInterrupted) {
				err = fmt.Errorf("%w (while: %v)", cause, err)
			} else if ds := diag.ClassOf(cause); ds == diag.Failure {
				err = cause
			}
		}
	}
	return err
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// waiting is what a step waits for now, for its progress lines.
type waiting struct {
	mu   sync.Mutex
	what string
}

// watchProgress logs, every RunConfig.Progress while the step runs, what it
// waits for, how long it has waited (and its bound), and the last line the
// board printed: nobody waits in silence. It returns the function that stops
// it.
func (h *StepRun) watchProgress(ctx context.Context, timeout time.Duration) (stop func()) {
	r, w := h.r, h.wait
	every := r.cfg.Progress
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w.mu.Lock()
			what := w.what
			w.mu.Unlock()
			waited := FormatDuration(time.Since(start).Round(time.Second))
			if timeout > 0 {
				waited += " of " + FormatDuration(timeout)
			}
			h.Logf("still waiting (%s) for %s; %s", waited, what, r.lastConsoleLine())
		}
	}()
	return func() { close(done) }
}

// lastConsoleLine says what the board printed last, masked, for a progress
// line.
func (r *run) lastConsoleLine() string {
	if r.console == nil {
		return "the board has no console"
	}
	const window = 4096
	tail := r.console.Tail(window)
	lines := strings.Split(strings.ReplaceAll(tail, "\r", ""), "\n")
	first := 0
	if len(tail) == window {
		first = 1 // cut: it may hold a piece of a secret no mask recognises
	}
	for i := len(lines) - 1; i >= first; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			l = r.secrets.String(l)
			if len(l) > 200 {
				l = "..." + trimRuneStart(l[len(l)-200:])
			}
			return fmt.Sprintf("the board last printed %q", l)
		}
	}
	return "the board has printed nothing"
}

func trimRuneStart(s string) string {
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return s
}

// maxConsoleLine bounds a console event: a longer line is cut in pieces.
const maxConsoleLine = 4096

// consoleLines turns what the board prints into "console" events, one per
// line (without its line break), masked: the views show the board as it
// happens (apply --console, --output json).
type consoleLines struct {
	r   *run
	buf []byte
}

func (c *consoleLines) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 && len(c.buf) <= maxConsoleLine {
			break
		}
		var line string
		if i < 0 {
			// cut a long line, never inside a secret
			cut := maxConsoleLine
			for _, sp := range c.r.secrets.Spans(string(c.buf)) {
				if sp[0] < cut && cut < sp[1] && sp[0] > 0 {
					cut = sp[0]
				}
			}
			line, c.buf = string(c.buf[:cut]), c.buf[cut:]
		} else {
			line, c.buf = string(c.buf[:i]), c.buf[i+1:]
		}
		step, _ := c.r.curStep.Load().(string)
		c.r.emit(Event{Type: "console", Index: step, Message: strings.TrimSuffix(line, "\r")})
	}
	if len(c.buf) == 0 {
		c.buf = nil // do not keep a large array
	}
	return len(p), nil
}
