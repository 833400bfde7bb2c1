package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/health"
)

// A Prober checks the boards of an inventory. Boards it cannot judge now
// (busy with a run) are left out of the result.
type Prober interface {
	Probe(ctx context.Context, inventory string) (map[string]Health, error)
}

// JsplanProber runs `jsplan boards list --check --output json`, the check an
// operator runs by hand: the board's drivers open, the power state is read
// when the driver can tell, and the console is sent a newline. It takes each
// board's lock, so a board in use by a run is skipped, never disturbed.
type JsplanProber struct {
	// Jsplan is the jsplan binary (default: "jsplan" on PATH).
	Jsplan string
	// LockDir and StateDir are passed as --lock-dir and --state-dir: the
	// lock directory must be the one the runs use.
	LockDir, StateDir string
}

// boardRow is the part of `jsplan boards list --output json` read here.
type boardRow struct {
	Name   string `json:"name"`
	Locked bool   `json:"locked"`
	Check  string `json:"check"`
}

// Probe implements Prober.
func (p JsplanProber) Probe(ctx context.Context, inventory string) (map[string]Health, error) {
	bin := p.Jsplan
	if bin == "" {
		bin = "jsplan"
	}
	args := []string{"boards", "list", "--check", "--output", "json", "--boards", inventory}
	if p.LockDir != "" {
		args = append(args, "--lock-dir", p.LockDir)
	}
	if p.StateDir != "" {
		args = append(args, "--state-dir", p.StateDir)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	var rows []boardRow
	if err := json.Unmarshal(stdout.Bytes(), &rows); err != nil {
		return nil, fmt.Errorf("jsplan boards list: %v", err)
	}
	out := map[string]Health{}
	for _, r := range rows {
		if h, ok := Classify(r.Locked, r.Check); ok {
			out[r.Name] = h
		}
	}
	return out, nil
}

// Classify reads the check column of `jsplan boards list --check`. A board
// is unhealthy when its drivers do not open, its lock cannot be taken for a
// reason other than a run holding it, or its console cannot be opened. A
// silent console is healthy: the board may simply be off, and a plan powers
// it on. A busy board (locked, or "busy" from the check) gives no verdict.
func Classify(locked bool, check string) (Health, bool) {
	switch {
	case locked || check == "" || strings.HasPrefix(check, "busy"):
		return Health{}, false
	case strings.HasPrefix(check, "cannot open"), strings.HasPrefix(check, "lock:"):
		return Health{Healthy: false, Reason: check}, true
	case strings.Contains(check, "console cannot open"), strings.Contains(check, "console error"):
		return Health{Healthy: false, Reason: check}, true
	}
	return Health{Healthy: true, Reason: check}, true
}

// ratedHealth reads the board health records runs and health checks keep
// in the node's lock directory (`jsplan boards health`, `apply`): a board
// whose last health check failed is unhealthy, with the check's reason.
// A board that becomes good again is simply absent from the result.
func ratedHealth(lockDir string, inv *engine.Inventory) (map[string]Health, error) {
	out := map[string]Health{}
	if inv == nil {
		return out, nil
	}
	st := health.OpenReadOnly(lockDir)
	for _, b := range inv.Boards {
		r, err := st.Get(b.Name)
		if err != nil || r.State != health.Bad {
			continue
		}
		reason := "health check failed"
		if r.LastCheck != nil && r.LastCheck.Reason != "" {
			reason += ": " + r.LastCheck.Reason
		}
		out[b.Name] = Health{Reason: reason}
	}
	return out, nil
}

// harvestRuns carries the outcome of the runs a claim's pod made on its
// boards into the node's health records: the pod's jsplan recorded them in
// its own lock directory (claimLocks/health), which goes with the claim.
// Only runs are taken, and only for the claim's own boards: a pod cannot
// say a health check passed, nor touch another board's record.
func harvestRuns(claimLocks, nodeLocks string, boards []string) error {
	if fi, err := os.Lstat(health.Dir(claimLocks)); err != nil || !fi.IsDir() {
		return nil // no run recorded anything (or not a directory: ignored)
	}
	own := health.OpenReadOnly(claimLocks)
	node, err := health.Open(nodeLocks)
	if err != nil {
		return err
	}
	for _, b := range boards {
		r, err := own.Get(b)
		if err != nil {
			continue
		}
		for _, ev := range r.History {
			if ev.Kind != "run" {
				continue
			}
			if _, err := node.RecordRun(b, health.Run{Plan: ev.Plan, ExitCode: ev.ExitCode, Reason: ev.Reason, Time: ev.Time}); err != nil {
				return err
			}
		}
	}
	return nil
}
