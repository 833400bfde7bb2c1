package cmd

// Running a lab: apply's health hook (bad boards are skipped, a named bad
// board refused without --allow-bad), its record of each run's outcome in
// the board's health, and --retry-infra (after an infrastructure error,
// the plan runs again on another matching board; every attempt stays in
// the reports).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/redact"
	"github.com/jsplan/jsplan/internal/artifact"
	"github.com/jsplan/jsplan/internal/health"
	"github.com/jsplan/jsplan/internal/shorten"
)

var (
	retryInfraFlag = &cli.IntFlag{Name: "retry-infra", Usage: "after an infrastructure error (exit 3), run the plan again up to `N` times, on another matching board when there is one (never after a test failure or an invalid plan)",
		EnvVars: []string{"JSPLAN_RETRY_INFRA"}}
	allowBadFlag = &cli.BoolFlag{Name: "allow-bad", Usage: "run on a board named with --board even when its health check failed (state bad)",
		EnvVars: []string{"JSPLAN_ALLOW_BAD"}}
)

// applyRun is one `jsplan apply`: the resolved plan and what every
// attempt shares.
type applyRun struct {
	ctx, hard context.Context
	c         *cli.Context
	res       *resolved
	l         *engine.Loader
	file      string
	values    map[string]engine.Value
	artifacts string
	format    string
	sink      engine.Sink
	red       *redact.Redactor
	// foreign are the artifacts directory's files that are not jsplan's:
	// they stay when an attempt's artifacts move aside.
	foreign []string
	// prior are the attempts before this one.
	prior []engine.Attempt
}

func (a *applyRun) say(msg string) {
	a.sink.Event(engine.Event{Time: time.Now(), Type: "log", Message: msg})
}

// exitCodeOf is the exit status err stands for (0 for nil).
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}

// withRetries leaves bad boards out, runs the plan, records the outcome in
// the board's health and, after an infrastructure error, runs it again on
// another board up to --retry-infra times.
func (a *applyRun) withRetries() error {
	store, err := health.Open(lockDirOf(a.c))
	if err != nil {
		a.say(fmt.Sprintf("board health unavailable (%v): no board is skipped for its health", err))
		store = nil
	}
	cands, err := a.healthy(store)
	if err != nil {
		writeFailure(a.artifacts, a.res, err, exitCodeOf(err), a.red)
		return err
	}
	retries := a.c.Int("retry-infra")
	if retries < 0 {
		return exit(2, "--retry-infra %d: give 0 or more retries", retries)
	}
	tried := map[string]bool{}
	for n := 1; ; n++ {
		var names []string
		for _, b := range cands {
			if !tried[b] {
				names = append(names, b)
			}
		}
		if len(names) == 0 {
			names = cands // no other board: the same one again
		}
		result, board, err := a.once(names)
		code := exitCodeOf(err)
		reason := ""
		if result != nil {
			reason = shorten.FirstLine(strings.TrimSpace(result.Error))
			if reason == "" && code != 0 {
				reason = result.Summary
			}
		}
		retry := code == diag.Infra.ExitCode() && board != "" && result != nil && n <= retries && a.ctx.Err() == nil
		dir := fmt.Sprintf("attempt-%d", n)
		where := a.artifacts
		if retry {
			where = filepath.Join(a.artifacts, dir)
		}
		if store != nil && board != "" {
			rec, herr := store.RecordRun(board, health.Run{Plan: a.res.plan.Name, ExitCode: code, Reason: reason, Artifacts: where})
			switch {
			case herr != nil:
				a.say(fmt.Sprintf("board health: %v", herr))
			case code == diag.Infra.ExitCode():
				a.say(fmt.Sprintf("board %s is now %s (%s in a row)", board, rec.State, plural(rec.InfraFailures, "infrastructure failure")))
			}
		}
		if !retry {
			if a.format == "text" {
				fmt.Fprintf(a.c.App.Writer, "Artifacts: %s\n", a.artifacts)
			}
			return err
		}
		tried[board] = true
		if merr := a.moveAside(dir); merr != nil {
			a.say(fmt.Sprintf("cannot keep attempt %d's artifacts apart (%v): not retrying", n, merr))
			return err
		}
		a.prior = append(a.prior, attemptOf(result, n, dir))
		next := "another board"
		var others []string
		for _, b := range cands {
			if !tried[b] {
				others = append(others, b)
			}
		}
		if len(others) == 0 {
			next = "the same board (no other matches)"
		} else {
			next = strings.Join(others, " or ")
		}
		a.say(fmt.Sprintf("attempt %d on board %s ended in an infrastructure error (%s); its artifacts are in %s/; retrying (%d of %d) on %s",
			n, board, reason, dir, n, retries, next))
	}
}

// healthy returns the names of the candidate boards apply may use: bad
// boards are left out (and said so); a bad board named explicitly is
// refused unless --allow-bad. Suspect boards come after the others.
func (a *applyRun) healthy(store *health.Store) ([]string, error) {
	var good, suspect []string
	named := a.c.String("board") != "" || a.res.plan.Board.Name != ""
	var skipped []string
	for _, b := range a.res.candidates {
		rec := health.Record{State: health.Unknown}
		if store != nil {
			r, err := store.Get(b.Name)
			if err != nil {
				a.say(fmt.Sprintf("board %s: %v", b.Name, err))
			} else {
				rec = r
			}
		}
		switch rec.State {
		case health.Bad:
			why := badReason(rec)
			if named {
				if a.c.Bool("allow-bad") {
					a.say(fmt.Sprintf("board %s is bad (%s); running on it: --allow-bad", b.Name, why))
					good = append(good, b.Name)
					continue
				}
				return nil, exit(3, "board %s is bad (%s): not running on it; pass --allow-bad to use it anyway, or run 'jsplan boards health --now %s'", b.Name, why, b.Name)
			}
			skipped = append(skipped, b.Name)
			a.say(fmt.Sprintf("skipping board %s: bad (%s)", b.Name, why))
		case health.Suspect:
			suspect = append(suspect, b.Name)
		default:
			good = append(good, b.Name)
		}
	}
	out := append(good, suspect...)
	if len(out) == 0 {
		return nil, exit(3, "every board matching %s is bad (skipped: %s); 'jsplan boards list' shows why", a.res.plan.Board, strings.Join(skipped, ", "))
	}
	return out, nil
}

// badReason says why a board is bad: its failing check.
func badReason(r health.Record) string {
	s := "since " + r.Since.Format(time.RFC3339)
	if r.LastCheck != nil && !r.LastCheck.Passed {
		s = "health check failed " + r.LastCheck.Time.Format(time.RFC3339)
		if r.LastCheck.Reason != "" {
			s += ": " + r.LastCheck.Reason
		}
	}
	return s
}

// attemptOf summarises a finished attempt.
func attemptOf(r *engine.Result, n int, dir string) engine.Attempt {
	reason := r.Error
	if reason == "" && r.ExitCode != 0 {
		reason = r.Summary
	}
	return engine.Attempt{N: n, Board: r.Board, Status: r.Status, ExitCode: r.ExitCode, Start: r.Start, Seconds: r.Seconds,
		Reason: shorten.FirstLine(strings.TrimSpace(reason)), Dir: dir}
}

// moveAside moves what the last attempt wrote into the subdirectory dir
// of the artifacts, so the next attempt starts clean and the reports can
// link to it. Files that are not jsplan's stay.
func (a *applyRun) moveAside(dir string) error {
	target := filepath.Join(a.artifacts, dir)
	if err := os.Mkdir(target, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(a.artifacts)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if name == ownFile || name == dir || strings.HasPrefix(name, "attempt-") && e.IsDir() || a.isForeign(name) {
			continue
		}
		if err := os.Rename(filepath.Join(a.artifacts, name), filepath.Join(target, name)); err != nil {
			return err
		}
	}
	return nil
}

// isForeign reports whether name (a top-level entry) is or holds a file
// that was there before the run.
func (a *applyRun) isForeign(name string) bool {
	for _, f := range a.foreign {
		if f == name || strings.HasPrefix(f, name+"/") {
			return true
		}
	}
	return false
}

// once runs one attempt on one of the boards names (waiting while they
// are busy). It returns the attempt's result (nil when it never got that
// far), the board it ran on ("" when none was taken) and its exit error.
func (a *applyRun) once(names []string) (result *engine.Result, boardName string, err error) {
	ctx, hard, c, res, artifacts, sink, red := a.ctx, a.hard, a.c, a.res, a.artifacts, a.sink, a.red

	// Lock one of the matching boards, waiting while they are busy.
	lk, boardName, err := acquireBoard(ctx, c, names, res.plan.Name, func(msg string) {
		sink.Event(engine.Event{Time: time.Now(), Type: "log", Message: msg})
	})
	if err != nil {
		code := failureCode(ctx, err)
		r := writeFailure(artifacts, res, err, code, red, a.prior...)
		return r, "", exit(code, "%v", err)
	}
	defer lk.Release()
	if boardName != res.board.Name {
		l := res.loadFor(a.file, a.values, res.inv.Lookup(boardName), artifacts)
		if l.Diagnostics().HasErrors() {
			printDiags(c.App.ErrWriter, l.Diagnostics(), l.Sources())
			return nil, boardName, exit(2, "")
		}
		red.Add(l.Secrets()...)
	}

	// Console log, open from the first byte.
	start := time.Now()
	clogFile, err := artifact.Create(artifacts, "console.log")
	if err != nil {
		return nil, boardName, exit(3, "artifacts: %v", err)
	}
	// `jsplan console --watch BOARD` follows it from another terminal
	defer publishConsole(lockDirOf(c), res.board.Name, filepath.Join(artifacts, "console.log"))()
	clog, err := console.NewFileLog(clogFile, fmt.Sprintf("plan %s, board %s", res.plan.Name, res.board.Name), start, c.Int64("console-log-max"), red)
	if err != nil {
		clogFile.Close()
		return nil, boardName, exit(3, "artifacts: %v", err)
	}

	board, err := openBoard(ctx, c, res.board, red, func(msg string) {
		sink.Event(engine.Event{Time: time.Now(), Type: "log", Message: msg})
	})
	// Rendered once the drivers have registered their secrets (a board's
	// password), so those are masked too.
	_ = artifact.WriteFile(artifacts, "plan.rendered.yaml", engine.YAML(maskNode(engine.Render(res.plan, res.board), red)))
	if err != nil {
		clog.Close()
		clogFile.Close()
		code := diag.Infra.ExitCode()
		r := writeFailure(artifacts, res, err, code, red, a.prior...)
		return r, boardName, exit(code, "%v", err)
	}
	result = engine.Execute(ctx, engine.RunConfig{
		Plan: res.plan, Board: board, Artifacts: artifacts, Sink: sink, Redactor: red,
		Hard: hard, FinallyGrace: c.Duration("finally-grace"), ConsoleLog: clog, ConsoleWindow: c.Int("console-window"),
		Version: buildVersion(), Command: commandLine(red),
	})
	if err := board.Close(); err != nil {
		sink.Event(engine.Event{Time: time.Now(), Type: "log", Message: red.String("closing the board: " + err.Error())})
	}
	clog.Close()
	clogFile.Close()
	if len(a.prior) > 0 {
		result.Attempts = append(append([]engine.Attempt(nil), a.prior...), attemptOf(result, len(a.prior)+1, ""))
	}
	if err := writeReports(artifacts, result, red); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "jsplan: writing reports: %v\n", err)
		if result.ExitCode == 0 {
			// A pass nobody can read is no pass (disk full, artifacts
			// gone): an infrastructure error.
			result.ExitCode = diag.Infra.ExitCode()
		}
	}
	if result.ExitCode != 0 {
		return result, boardName, exit(result.ExitCode, "")
	}
	return result, boardName, nil
}
