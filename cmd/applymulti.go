package cmd

// apply for plans on several boards (boards: roles) or with shared
// resources: every board and resource share locked together, each board
// opened with its own console log, one run over all of them.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/redact"
	"github.com/jsplan/jsplan/internal/artifact"
	"github.com/jsplan/jsplan/internal/health"
	"github.com/jsplan/jsplan/internal/lock"
	"github.com/jsplan/jsplan/internal/shorten"
)

// resolveMulti is resolve for a plan on several boards: every way it can
// run, and the plan loaded for the first.
func resolveMulti(pre *engine.Loader, p *engine.Plan, inv *engine.Inventory, sel engine.BoardSelector, pins map[string]string, file string,
	values map[string]engine.Value, artifacts string) (*resolved, *engine.Loader) {
	as := pre.CheckBoardsPinned(p, inv, sel, pins)
	if pre.Diagnostics().HasErrors() || len(as) == 0 {
		return nil, pre
	}
	r := &resolved{inv: inv, assigns: as}
	for _, a := range as {
		r.candidates = append(r.candidates, a.Boards[0])
	}
	if l := r.loadAssigned(file, values, as[0], artifacts); l.Diagnostics().HasErrors() {
		return nil, l
	} else {
		return r, l
	}
}

// loadAssigned loads the plan for a run on the boards of a.
func (r *resolved) loadAssigned(file string, values map[string]engine.Value, a *engine.Assignment, artifacts string) *engine.Loader {
	l := engine.NewLoader(engine.Options{Mode: engine.ModeRun, Values: values, Board: a.Boards[0].Info(), Roles: a.Infos(), Artifacts: artifacts})
	r.assign, r.board = a, a.Boards[0]
	r.plan = l.LoadPlan(file)
	return l
}

// renderResolved renders the plan with its board or boards.
func renderResolved(res *resolved) *yaml.Node {
	if res.plan.Multi() {
		return engine.RenderAssigned(res.plan, res.assign)
	}
	return engine.Render(res.plan, res.board)
}

// wants lists what a run on the boards of a locks.
func wants(a *engine.Assignment) []lock.Want {
	var out []lock.Want
	for _, b := range a.Boards {
		out = append(out, lock.Want{Name: b.Name})
	}
	for _, r := range a.Resources {
		out = append(out, lock.Want{Name: r.Name, Capacity: r.Capacity})
	}
	return out
}

// applyMulti runs a plan on several boards. The caller has claimed the
// artifacts directory and set up the signals.
func applyMulti(ctx, hard context.Context, c *cli.Context, res *resolved, values map[string]engine.Value,
	artifacts string, sink engine.Sink, red *redact.Redactor, format string) error {
	say := func(msg string) { sink.Event(engine.Event{Time: time.Now(), Type: "log", Message: msg}) }
	file := c.Args().First()
	store, err := health.Open(lockDirOf(c))
	if err != nil {
		say(fmt.Sprintf("board health unavailable (%v): no board is skipped for its health", err))
		store = nil
	}
	if err := skipBad(c, res, store, say); err != nil {
		writeFailure(artifacts, res, err, exitCodeOf(err), red)
		return err
	}
	options := make([][]lock.Want, len(res.assigns))
	for i, a := range res.assigns {
		options[i] = wants(a)
	}
	wait := c.Duration("lock-wait")
	stopNotes := waitingNotes(wait, say, func() string {
		return fmt.Sprintf("%s (jsplan boards list shows the holders)", res.assigns[0])
	})
	set, chosen, err := lock.AcquireAll(ctx, lockDirOf(c), options, holderFor(res.plan.Name), wait, func(what string, h *lock.Holder) {
		say(lock.Describe(what, h) + fmt.Sprintf("; waiting (up to %s) until everything the plan needs is free", wait))
	})
	stopNotes()
	if err != nil {
		code := failureCode(ctx, err)
		writeFailure(artifacts, res, err, code, red)
		return exit(code, "%v", err)
	}
	defer set.Release()
	a := res.assigns[chosen]
	if a != res.assign { // the plan was loaded for another set of boards

		l := res.loadAssigned(file, values, a, artifacts)
		if l.Diagnostics().HasErrors() {
			printDiags(c.App.ErrWriter, l.Diagnostics(), l.Sources())
			return exit(2, "")
		}
		red.Add(l.Secrets()...)
	}
	res.assign, res.board = a, a.Boards[0]
	say(fmt.Sprintf("locked %s", a))

	runStart := time.Now()
	var roles []engine.RoleBoard
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		closers = nil
	}
	defer closeAll()
	fail := func(err error) error {
		closeAll()
		code := diag.Infra.ExitCode()
		writeFailure(artifacts, res, err, code, red)
		return exit(code, "%v", err)
	}
	for i, b := range a.Boards {
		name := engine.ConsoleLogName(len(a.Boards), b.Name)
		f, err := artifact.Create(artifacts, name)
		if err != nil {
			return fail(fmt.Errorf("artifacts: %v", err))
		}
		role := a.Roles[i]
		what := "board " + b.Name
		if role != "" {
			what = fmt.Sprintf("board %s (role %s)", b.Name, role)
		}
		unpublish := publishConsole(lockDirOf(c), b.Name, filepath.Join(artifacts, name))
		clog, err := console.NewFileLog(f, "plan "+res.plan.Name+", "+what, runStart, c.Int64("console-log-max"), red)
		if err != nil {
			f.Close()
			unpublish()
			return fail(fmt.Errorf("artifacts: %v", err))
		}
		closers = append(closers, func() { clog.Close(); f.Close(); unpublish() })
		board, err := openBoard(ctx, c, b, red, say)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, func() {
			if err := board.Close(); err != nil {
				say(red.String("closing board " + b.Name + ": " + err.Error()))
			}
		})
		roles = append(roles, engine.RoleBoard{Role: role, Board: board, ConsoleLog: clog})
	}
	_ = artifact.WriteFile(artifacts, "plan.rendered.yaml", engine.YAML(maskNode(engine.RenderAssigned(res.plan, a), red)))
	var held []string
	for _, r := range a.Resources {
		held = append(held, r.Name)
	}
	result := engine.Execute(ctx, engine.RunConfig{
		Plan: res.plan, Roles: roles, Resources: held, Artifacts: artifacts, Sink: sink, Redactor: red,
		Hard: hard, FinallyGrace: c.Duration("finally-grace"), ConsoleWindow: c.Int("console-window"),
		Version: buildVersion(), Command: commandLine(red),
	})
	closeAll()
	if store != nil {
		for _, b := range a.Boards {
			if _, err := store.RecordRun(b.Name, health.Run{Plan: res.plan.Name, ExitCode: result.ExitCode, Reason: shorten.FirstLine(strings.TrimSpace(result.Error)), Artifacts: artifacts}); err != nil {
				say(fmt.Sprintf("board health: %v", err))
			}
		}
	}
	if err := writeReports(artifacts, result, red); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "jsplan: writing reports: %v\n", err)
		if result.ExitCode == 0 {
			result.ExitCode = diag.Infra.ExitCode()
		}
	}
	if format == "text" {
		fmt.Fprintf(c.App.Writer, "Artifacts: %s\n", artifacts)
	}
	if result.ExitCode != 0 {
		return exit(result.ExitCode, "")
	}
	return nil
}

// skipBad leaves out the ways to run that need a bad board (issue 24's
// health: as apply does for one board), unless --allow-bad.
func skipBad(c *cli.Context, res *resolved, store *health.Store, say func(string)) error {
	if store == nil || c.Bool("allow-bad") {
		return nil
	}
	bad := map[string]bool{}
	var kept []*engine.Assignment
	for _, a := range res.assigns {
		ok := true
		for _, b := range a.Boards {
			rec, err := store.Get(b.Name)
			if err != nil || rec.State != health.Bad {
				continue
			}
			ok = false
			if !bad[b.Name] {
				bad[b.Name] = true
				say(fmt.Sprintf("skipping board %s: bad (%s)", b.Name, badReason(rec)))
			}
		}
		if ok {
			kept = append(kept, a)
		}
	}
	if len(kept) == 0 {
		return exit(3, "every set of boards for the plan has a bad board; 'jsplan boards list' shows why (--allow-bad runs anyway)")
	}
	res.assigns = kept
	return nil
}
