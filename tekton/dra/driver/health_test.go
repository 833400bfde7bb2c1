package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/jsplan/jsplan/internal/health"
	"github.com/jsplan/jsplan/internal/lock"
)

// TestJsplanProber runs the real `jsplan boards list --check` (built from
// this repository) over an inventory with a healthy virtual board, a board
// whose console adapter is not there and a board held by a run, and reads
// its verdicts as the driver does.
func TestJsplanProber(t *testing.T) {
	dir := t.TempDir()
	bin := buildJsplan(t)
	inv := filepath.Join(dir, "boards.yaml")
	if err := os.WriteFile(inv, []byte(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    drivers:
      sim: {password: x, boot-delay: 5ms}
  - name: unplugged
    drivers:
      serial: {port: `+filepath.Join(dir, "no-such-tty")+`}
  - name: in-use
    drivers:
      sim: {password: x}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	locks := filepath.Join(dir, "locks")
	held, _, err := lock.TryAcquire(locks, "in-use", lock.Holder{Plan: "a run", PID: os.Getpid(), Since: time.Now()})
	if err != nil || held == nil {
		t.Fatalf("taking the lock: %v", err)
	}
	defer held.Release()

	p := JsplanProber{Jsplan: bin, LockDir: locks, StateDir: filepath.Join(dir, "state")}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := p.Probe(ctx, inv)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := got["sim-1"]; !ok || !h.Healthy {
		t.Errorf("sim-1: %+v, want healthy", h)
	}
	if h, ok := got["unplugged"]; !ok || h.Healthy || !strings.Contains(h.Reason, "console cannot open") {
		t.Errorf("unplugged: %+v, want unhealthy: the console cannot open", h)
	}
	if h, ok := got["in-use"]; ok {
		t.Errorf("in-use: %+v, want no verdict while a run holds the board", h)
	}

	// Through the driver's devices: the unplugged board is tainted.
	loaded, err := LoadInventory(inv)
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := Devices(loaded, got, true)
	if len(devs) != 3 || len(devs[1].Taints) != 1 || len(devs[0].Taints)+len(devs[2].Taints) != 0 {
		t.Errorf("devices after the check: %+v", devs)
	}
}

// TestHealthRecordsTaint: a board whose health check failed (the record
// `jsplan boards health` keeps in the node's lock directory) is tainted
// with the check's reason, and untainted once a check passes; what a
// claim's runs recorded in its own lock directory reaches the node's
// records at unprepare, for its own board only and never as a check.
func TestHealthRecordsTaint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	d := n.start(ctx)
	defer d.Stop()
	tainted := func(s *resourceapi.ResourceSlice, board string) string {
		for _, dev := range s.Spec.Devices {
			if dev.Name == board {
				for _, tt := range dev.Taints {
					if tt.Key == UnhealthyTaintKey {
						return tt.Value
					}
				}
			}
		}
		return ""
	}
	n.slice(ctx, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 2 && tainted(s, "sim-1") == "" })

	store, err := health.Open(n.locks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.RecordCheck("sim-1", health.Check{Passed: false, ExitCode: 3, Reason: "no login prompt"}); err != nil {
		t.Fatal(err)
	}
	s := n.slice(ctx, func(s *resourceapi.ResourceSlice) bool { return tainted(s, "sim-1") != "" })
	if v := tainted(s, "sim-1"); v != "health-check-failed-no-login-prompt" || tainted(s, "orin-nx-1") != "" {
		t.Fatalf("taints: sim-1 %q, orin-nx-1 %q", v, tainted(s, "orin-nx-1"))
	}
	if _, err := store.RecordCheck("sim-1", health.Check{Passed: true}); err != nil {
		t.Fatal(err)
	}
	n.slice(ctx, func(s *resourceapi.ResourceSlice) bool { return tainted(s, "sim-1") == "" })

	// A claim on sim-1 whose pod's run failed for the lab's reasons (exit
	// 3), and which also wrote a passing "check" and a record of another
	// board in its own lock directory.
	c := allocatedClaim("run", n.name, "sim-1", false, nil)
	if _, err := prepareOne(t, d, c); err != nil {
		t.Fatal(err)
	}
	own, err := health.Open(filepath.Join(d.claimDir(c.UID), "locks"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.RecordRun("sim-1", health.Run{Plan: "smoke.yaml", ExitCode: 3, Reason: "console died"}); err != nil {
		t.Fatal(err)
	}
	if _, err := own.RecordCheck("sim-1", health.Check{Passed: true, Reason: "forged"}); err != nil {
		t.Fatal(err)
	}
	if _, err := own.RecordRun("orin-nx-1", health.Run{ExitCode: 3}); err != nil {
		t.Fatal(err)
	}
	if err := unprepareOne(t, d, c.UID); err != nil {
		t.Fatal(err)
	}
	r, err := store.Get("sim-1")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != health.Suspect || r.InfraFailures != 1 || r.LastCheck == nil || !r.LastCheck.Passed || r.LastCheck.Reason == "forged" {
		t.Fatalf("sim-1 after the claim: %+v", r)
	}
	if o, _ := store.Get("orin-nx-1"); o.State != health.Unknown || o.InfraFailures != 0 {
		t.Fatalf("another board's record taken from the claim: %+v", o)
	}
}
