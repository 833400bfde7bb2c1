package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/health"
	"github.com/jsplan/jsplan/internal/htmlreport"
	"github.com/jsplan/jsplan/internal/shorten"
)

func boardsHealthCommand() *cli.Command {
	return &cli.Command{
		Name:      "health",
		Usage:     "run the boards' health checks that are due (all of them with --now)",
		ArgsUsage: "[BOARD...]",
		Description: "A board's health check is the plan its inventory names (health: {plan, every, after-failures},\n" +
			"on the board or, by labels, in the inventory's top-level health: list). A check is due when the\n" +
			"board was never checked, when its last check is older than every, or after after-failures runs\n" +
			"in a row ended in an infrastructure error. A passing check makes the board good, a failing one\n" +
			"bad: label selectors then never choose it. Each check runs as 'jsplan apply --board BOARD' with\n" +
			"its artifacts in --artifacts/BOARD, given --set and --params-file; the states live beside the\n" +
			"board locks (--lock-dir/health).\n\n" +
			"Exit status: 0 every check run passed (or none was due), 1 a check failed, 2 usage or an\n" +
			"invalid check plan, 3 the health directory could not be written.",
		Flags: []cli.Flag{boardsFlag, outputFlag, lockDirFlag, lockWaitFlag, stateDirFlag, setFlag, paramsFileFlag,
			&cli.BoolFlag{Name: "now", Usage: "run every check (of BOARD... or all boards), due or not"},
			&cli.StringFlag{Name: "artifacts", Value: "health-artifacts", Usage: "write each check's artifacts to `DIR`/BOARD",
				EnvVars: []string{"JSPLAN_HEALTH_ARTIFACTS"}},
		},
		Action: boardsHealth,
	}
}

// healthRow is one board's line of 'jsplan boards health'.
type healthRow struct {
	Board string `json:"board"`
	// Ran is whether a check ran; Due says why it was (or was not) due.
	Ran       bool          `json:"ran"`
	Due       string        `json:"due,omitempty"`
	Passed    bool          `json:"passed"`
	ExitCode  int           `json:"exit_code"`
	Reason    string        `json:"reason,omitempty"`
	State     health.State  `json:"state"`
	Artifacts string        `json:"artifacts,omitempty"`
	LastCheck *health.Check `json:"last_check,omitempty"`
}

func boardsHealth(c *cli.Context) error {
	format, err := outputFormat(c, "text", "json")
	if err != nil {
		return err
	}
	inv, err := validInventory(c)
	if err != nil {
		return err
	}
	boards := inv.Boards
	if c.NArg() > 0 {
		boards = nil
		for _, name := range c.Args().Slice() {
			b := inv.Lookup(name)
			if b == nil {
				return exit(2, "no board %q in the inventory (boards: %s)", name, strings.Join(inv.Names(), ", "))
			}
			if b.Health == nil {
				return exit(2, "board %q has no health check: give it health: {plan: ...} in the inventory, or a top-level health: entry whose labels match it", name)
			}
			boards = append(boards, b)
		}
	}
	store, err := health.Open(lockDirOf(c))
	if err != nil {
		return exit(3, "%v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return exit(3, "cannot find the jsplan executable to run the checks: %v", err)
	}
	root, err := filepath.Abs(c.String("artifacts"))
	if err != nil {
		return exit(2, "%v", err)
	}
	ctx, cancel := signalContext()
	defer cancel()
	var rows []healthRow
	failed, broken := 0, 0
	for _, b := range boards {
		if b.Health == nil {
			continue
		}
		rec, err := store.Get(b.Name)
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "jsplan: %v (the check runs and replaces it)\n", err)
		}
		row := healthRow{Board: b.Name, State: rec.State, LastCheck: rec.LastCheck}
		due, why := health.Due(rec, health.Policy{Every: b.Health.Every, AfterFailures: b.Health.AfterFailures}, time.Now())
		if c.Bool("now") {
			due, why = true, "--now"
		}
		row.Due = why
		if !due {
			row.Due = "not due"
			rows = append(rows, row)
			continue
		}
		if format == "text" {
			fmt.Fprintf(c.App.Writer, "checking %s (%s): %s\n", b.Name, why, b.Health.Plan)
		}
		row.Ran = true
		row.Artifacts = filepath.Join(root, b.Name)
		row.ExitCode, row.Reason = runCheck(ctx, c, self, b, row.Artifacts)
		if ctx.Err() != nil {
			return exit(130, "interrupted: the check of %s did not finish; its state is unchanged", b.Name)
		}
		row.Passed = row.ExitCode == 0
		if row.ExitCode == 2 {
			// The check plan itself is invalid: it says nothing about the
			// board.
			broken++
			rows = append(rows, row)
			continue
		}
		if !row.Passed {
			failed++
		}
		rec, err = store.RecordCheck(b.Name, health.Check{Passed: row.Passed, ExitCode: row.ExitCode, Plan: b.Health.Plan,
			Reason: row.Reason, Artifacts: row.Artifacts})
		if err != nil {
			return exit(3, "%v", err)
		}
		row.State, row.LastCheck = rec.State, rec.LastCheck
		rows = append(rows, row)
	}
	if format == "json" {
		if rows == nil {
			rows = []healthRow{}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "BOARD\tCHECK\tSTATE\tWHY")
		for _, r := range rows {
			check := "not due"
			switch {
			case r.Ran && r.ExitCode == 2:
				check = "invalid check plan"
			case r.Ran && r.Passed:
				check = "passed"
			case r.Ran:
				check = fmt.Sprintf("FAILED (exit %d)", r.ExitCode)
			}
			why := r.Due
			if r.Ran && r.Reason != "" {
				why += "; " + r.Reason
			}
			if r.Ran {
				why += "; " + r.Artifacts + "/report.html"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Board, check, r.State, why)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	switch {
	case broken > 0:
		return exit(2, "%s could not run: the check plan is invalid", plural(broken, "check"))
	case failed > 0:
		return exit(1, "%s failed", plural(failed, "health check"))
	}
	return nil
}

// runCheck applies b's health plan on b (jsplan apply --board, as its own
// process: a check is an ordinary run, with its lock, finally and reports)
// and returns its exit status and why it failed.
func runCheck(ctx context.Context, c *cli.Context, self string, b *engine.BoardSpec, artifacts string) (int, string) {
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return 3, err.Error()
	}
	args := []string{"apply", b.Health.Plan, "--board", b.Name, "--allow-bad", "--artifacts", artifacts,
		"--lock-dir", lockDirOf(c), "--state-dir", stateDirOf(c), "--lock-wait", c.Duration("lock-wait").String(), "--console=false"}
	for _, f := range c.StringSlice("boards") {
		args = append(args, "--boards", f)
	}
	// The checks' parameters (a password, from --params-file for a secret):
	// a check plan that does not declare one is refused, as apply refuses it.
	if f := c.String("params-file"); f != "" {
		args = append(args, "--params-file", f)
	}
	for _, kv := range setValues(c) {
		args = append(args, "--set", kv)
	}
	log, err := os.Create(filepath.Join(filepath.Dir(artifacts), b.Name+".log"))
	if err != nil {
		return 3, err.Error()
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "JSPLAN_BOARD=", "JSPLAN_SELECTOR=", "JSPLAN_RETRY_INFRA=")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // its finally still runs
	cmd.WaitDelay = 10 * time.Minute
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return 3, err.Error()
	}
	reason := ""
	if res, rerr := htmlreport.ReadResult(artifacts); rerr == nil && code != 0 {
		reason = shorten.FirstLine(strings.TrimSpace(res.Error))
		if reason == "" {
			reason = res.Summary
		}
	} else if code != 0 {
		reason = fmt.Sprintf("exit %d; see %s", code, log.Name())
	}
	return code, reason
}

// labRow is a board's health in 'jsplan boards list': its condition
// (good, suspect, bad, unknown) and last check.
type labRow struct {
	Condition      health.State  `json:"condition"`
	ConditionSince *time.Time    `json:"condition_since,omitempty"`
	LastCheck      *health.Check `json:"last_check,omitempty"`
	// HealthCheck is the board's check plan; CheckDue says why a check is
	// due ("" when it is not, or the board has no check).
	HealthCheck string `json:"health_check,omitempty"`
	CheckDue    string `json:"check_due,omitempty"`
}

func labRowOf(lockDir string, b *engine.BoardSpec) labRow {
	r := labRow{Condition: health.Unknown}
	store, err := health.Open(lockDir)
	if err != nil {
		return r
	}
	rec, err := store.Get(b.Name)
	if err != nil {
		return r
	}
	r.Condition, r.LastCheck = rec.State, rec.LastCheck
	if !rec.Since.IsZero() {
		r.ConditionSince = &rec.Since
	}
	if b.Health != nil {
		r.HealthCheck = b.Health.Plan
		if due, why := health.Due(rec, health.Policy{Every: b.Health.Every, AfterFailures: b.Health.AfterFailures}, time.Now()); due {
			r.CheckDue = why
		}
	}
	return r
}

// text is the row's CONDITION and LAST CHECK columns.
func (r labRow) text() string {
	cond := string(r.Condition)
	if r.CheckDue != "" {
		cond += " (check due)"
	}
	last := "never"
	if r.HealthCheck == "" {
		last = "no check"
	}
	if c := r.LastCheck; c != nil {
		verdict := "passed"
		if !c.Passed {
			verdict = "failed"
			if c.Reason != "" {
				verdict += ": " + c.Reason
			}
		}
		last = c.Time.Local().Format("2006-01-02 15:04") + " " + verdict
	}
	return cond + "\t" + last
}
