package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
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
