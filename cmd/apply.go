package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/redact"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/htmlreport"
	"github.com/jsplan/jsplan/internal/report"
)

// signalError is the cancel cause after SIGINT or SIGTERM.
type signalError struct{ sig os.Signal }

func (e *signalError) Error() string {
	if s, ok := e.sig.(syscall.Signal); ok && unix.SignalName(s) != "" {
		return "interrupted by " + unix.SignalName(s) // SIGINT, not "interrupt"
	}
	return fmt.Sprintf("interrupted by signal %v", e.sig)
}
func (e *signalError) Unwrap() error { return engine.ErrInterrupted }

// ExitCode is 128 + the signal number, as shells report it.
func (e *signalError) ExitCode() int {
	if s, ok := e.sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

func applyCommand() *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "run a plan on a board",
		ArgsUsage: "PLAN",
		Description: "Validates the plan, locks a matching board (waiting while it is busy), runs the steps and\n" +
			"then the finally steps, which always run: after a failure, a timeout or SIGINT/SIGTERM (a\n" +
			"second signal cuts finally short). The artifacts directory receives console.log,\n" +
			"report.json, junit.xml, report.html (open it in a browser), plan.rendered.yaml and\n" +
			"collected files, also when the run fails.\n\n" +
			"Exit status: 0 passed, 1 a step failed, 2 invalid plan or usage, 3 infrastructure error\n" +
			"(board busy past --lock-wait, a driver failed), 130/143 after SIGINT/SIGTERM.",
		Flags: []cli.Flag{setFlag, paramsFileFlag, boardsFlag, boardFlag, roleFlag, selectorFlag, outputFlag,
			&cli.StringFlag{Name: "artifacts", Value: "artifacts", Usage: "write console log, reports and collected files to `DIR`",
				EnvVars: []string{"JSPLAN_ARTIFACTS"}},
			lockDirFlag, lockWaitFlag, stateDirFlag,
			&cli.DurationFlag{Name: "finally-grace", Value: 5 * time.Minute,
				Usage: "after an interruption or timeout, give finally steps this long", EnvVars: []string{"JSPLAN_FINALLY_GRACE"}},
			&cli.Int64Flag{Name: "console-log-max", Value: console.DefaultLogMax,
				Usage:   "cap console.log at `BYTES`: past it, the middle is cut (a marker says how much) and the most recent output kept; 0: no cap",
				EnvVars: []string{"JSPLAN_CONSOLE_LOG_MAX"}},
			&cli.BoolFlag{Name: "console", Usage: "show what the board prints as it prints it (--console=false: never); --output json always carries it as \"console\" events",
				EnvVars: []string{"JSPLAN_CONSOLE"}, DefaultText: "on a terminal"},
			retryInfraFlag, allowBadFlag,
			&cli.IntFlag{Name: "console-window", Value: console.DefaultWindow,
				Usage:   "the console match window in `BYTES`: the longest text an expect or fail-on pattern can match",
				EnvVars: []string{"JSPLAN_CONSOLE_WINDOW"}},
		},
		Action: apply,
	}
}

func apply(c *cli.Context) error {
	format, err := outputFormat(c, "text", "json")
	if err != nil {
		return err
	}
	if c.NArg() != 1 {
		return exit(2, "apply needs exactly one plan\nRun 'jsplan apply --help' for usage.")
	}
	if w := c.Int("console-window"); w < 4096 {
		return exit(2, "--console-window %d: the match window must be at least 4096 bytes", w)
	}
	show := isTerminal(c.App.Writer)
	if c.IsSet("console") {
		show = c.Bool("console")
	}
	var sink engine.Sink = &humanView{w: c.App.Writer, console: show, colour: useColour(c.App.Writer)}
	if format == "json" {
		sink = newJSONView(c.App.Writer)
	}
	artifacts, err := filepath.Abs(c.String("artifacts"))
	if err != nil {
		return exit(2, "%v", err)
	}
	values, ds := paramValues(c)
	if ds.HasErrors() {
		printDiags(c.App.ErrWriter, ds, nil)
		return exit(2, "")
	}
	res, l := resolve(c, values, artifacts)
	if res == nil {
		printDiags(c.App.ErrWriter, l.Diagnostics(), l.Sources())
		return exit(2, "")
	}
	if d := assignedBoardMismatch(c, res); d != nil {
		printDiags(c.App.ErrWriter, diag.Diagnostics{d}, l.Sources())
		return exit(2, "")
	}
	file := c.Args().First()

	// Signals: the first cancels the run (finally still runs), the second
	// cuts finally short.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	hard, hardCancel := context.WithCancelCause(context.Background())
	defer hardCancel(nil)
	sigs := make(chan os.Signal, 2)
	// Not stopped when the run returns: a signal that arrives after the
	// reports are written, while the process exits, must not kill it by
	// the default action (exit 143 beside a report that says 0).
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		n := 0
		for s := range sigs {
			n++
			if n == 1 {
				fmt.Fprintf(c.App.ErrWriter, "jsplan: %v: stopping the run; finally steps still run (send it again to stop them)\n", s)
				cancel(&signalError{s})
			} else {
				hardCancel(&signalError{s})
			}
		}
	}()

	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return exit(3, "artifacts: %v", err)
	}
	// A run's artifacts are its own: what an earlier run left goes.
	owner, err := claimArtifacts(artifacts, func(msg string) {
		sink.Event(engine.Event{Time: time.Now(), Type: "log", Message: msg})
	})
	if err != nil {
		return exit(3, "artifacts: %v", err)
	}
	defer func() { _ = owner.done() }()
	red := &redact.Redactor{}
	red.Add(l.Secrets()...)
	if res.plan.Multi() {
		return applyMulti(ctx, hard, c, res, values, artifacts, sink, red, format)
	}

	run := &applyRun{ctx: ctx, hard: hard, c: c, res: res, l: l, file: file, values: values,
		artifacts: artifacts, format: format, sink: sink, red: red, foreign: owner.foreign}
	return run.withRetries()
}

// assignedBoardMismatch checks a board assigned by name (--board, or
// JSPLAN_BOARD as a Kubernetes ResourceClaim sets it) against the plan's own
// selector: the assignment picks the board, it does not waive what the plan
// needs. --selector, given explicitly, still replaces the plan's labels.
func assignedBoardMismatch(c *cli.Context, res *resolved) *diag.Diagnostic {
	if c.String("board") == "" || c.String("selector") != "" || res.board.Matches(res.plan.Board) {
		return nil
	}
	b, sel := res.board, res.plan.Board
	var why []string
	if sel.Name != "" && sel.Name != b.Name {
		why = append(why, fmt.Sprintf("the plan names board %q", sel.Name))
	}
	for _, k := range sortStrings(keysOf(sel.Labels)) {
		if have, ok := b.Labels[k]; !ok {
			why = append(why, fmt.Sprintf("label %s: the plan wants %q, the board has none", k, sel.Labels[k]))
		} else if have != sel.Labels[k] {
			why = append(why, fmt.Sprintf("label %s: the plan wants %q, the board has %q", k, sel.Labels[k], have))
		}
	}
	return diag.Errorf(res.plan.BoardRange, "board", "board %q (from --board/JSPLAN_BOARD) does not satisfy the plan's selector %s: %s",
		b.Name, sel, strings.Join(why, "; ")).
		WithDetail("the assigned board must match the plan; override the plan's labels explicitly with --selector")
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// writeReports writes report.json, junit.xml and report.html.
func writeReports(dir string, r *engine.Result, red *redact.Redactor) error {
	if err := report.WriteJSON(filepath.Join(dir, "report.json"), r); err != nil {
		return err
	}
	if err := report.WriteJUnit(filepath.Join(dir, "junit.xml"), r); err != nil {
		return err
	}
	return htmlreport.Write(dir, r, htmlreport.Options{Redact: red.String})
}

// invocation is the command line jsplan was started with.
var invocation []string

// commandLine is the command line as a shell would take it, secrets masked.
func commandLine(red *redact.Redactor) string {
	var b strings.Builder
	for i, a := range invocation {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(red.String(a)))
	}
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeFailure records a run that never started (board busy, board failed
// to open), so CI still finds a report.
func writeFailure(dir string, res *resolved, err error, code int, red *redact.Redactor, prior ...engine.Attempt) *engine.Result {
	r := &engine.Result{Plan: res.plan.Name, File: res.plan.File, Board: res.board.Name, Status: result.Error,
		Class: diag.Infra.String(), Error: red.String(err.Error()), ExitCode: code, Start: time.Now(),
		Version: buildVersion(), Command: commandLine(red)}
	if code >= 128 {
		r.Status = result.Interrupted
	}
	r.Summary = fmt.Sprintf("%s: the run did not start (%s)", r.Status, err)
	if len(prior) > 0 {
		r.Attempts = append(append([]engine.Attempt(nil), prior...), attemptOf(r, len(prior)+1, ""))
	}
	_ = writeReports(dir, r, red)
	return r
}

func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "jsplan")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "jsplan")
	}
	return filepath.Join(os.TempDir(), "jsplan-state")
}

// isTerminal tells whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
