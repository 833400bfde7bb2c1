package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine/lock"
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
