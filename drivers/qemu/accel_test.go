package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
)

// probeDevice is a Device set up only as far as pickAccel needs, logging into
// the returned function's result.
func probeDevice(t *testing.T, accel, binary string, p *accelProbe) (*Device, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var logs []string
	d := &Device{Config: Config{Accel: accel}, binary: binary, runDir: t.TempDir(), probe: p}
	d.env = drivers.Env{Log: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
	}}
	return d, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), logs...) }
}

// realQEMU is the path of the QEMU binary, or the test is skipped.
func realQEMU(t *testing.T) string {
	t.Helper()
	needQEMU(t)
	path, err := exec.LookPath(DefaultBinary)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// wrapper writes an executable script standing in for QEMU.
func wrapper(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qemu-wrapper")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// Host shape 1: no /dev/kvm.
func TestAccelNoKVMDevice(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kvm")
	p := &accelProbe{device: missing, accel: "kvm", timeout: time.Second}
	d, logs := probeDevice(t, "auto", "/nonexistent/qemu", p)
	accel, err := d.pickAccel(context.Background())
	if err != nil || accel != "tcg" {
		t.Fatalf("auto without a KVM device = %q, %v; want tcg", accel, err)
	}
	if l := logs(); len(l) != 1 || !strings.Contains(l[0], "TCG") || !strings.Contains(l[0], missing) {
		t.Errorf("want one log line naming TCG and the device, got %q", l)
	}
	d.Accel = "kvm"
	_, err = d.pickAccel(context.Background())
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "accel: auto or tcg") {
		t.Errorf("accel kvm without a device: want an error naming the device and the fix, got %v", err)
	}
	d.Accel = "tcg"
	if accel, err := d.pickAccel(context.Background()); accel != "tcg" || err != nil {
		t.Errorf("accel tcg = %q, %v", accel, err)
	}
}

// Host shape 2: an accelerator that runs the probe guest. The probe runs
// with TCG standing in for a working KVM: the same guest, port and exit
// status, so this proves the probe recognises a guest that ran.
func TestAccelProbeGuestRuns(t *testing.T) {
	q := realQEMU(t)
	p := &accelProbe{device: os.DevNull, accel: "tcg", timeout: 30 * time.Second}
	d, logs := probeDevice(t, "auto", q, p)
	accel, err := d.pickAccel(context.Background())
	if err != nil || accel != "kvm" {
		t.Fatalf("a working accelerator: got %q, %v (logs %q)", accel, err, logs())
	}
	if l := logs(); len(l) != 0 {
		t.Errorf("no log line expected when the accelerator works, got %q", l)
	}
	if _, err := os.Stat(filepath.Join(d.runDir, "kvm-probe.img")); !os.IsNotExist(err) {
		t.Errorf("probe disk left behind: %v", err)
	}
}

// Host shape 3: a KVM that opens but cannot run a guest, both ways seen on
// nested hosts: QEMU aborts at start, or the guest never runs.
func TestAccelBrokenKVM(t *testing.T) {
	q := realQEMU(t)
	cases := []struct {
		name, script, want string
	}{
		{"aborts", `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$`, "failed to set MSR"},
		// -S: QEMU starts with the CPU stopped, as a guest that never runs.
		{"silent", `exec ` + q + ` "$@" -S`, "ran no code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bin := wrapper(t, c.script)
			p := &accelProbe{device: os.DevNull, accel: "tcg", timeout: 3 * time.Second}
			d, logs := probeDevice(t, "auto", bin, p)
			accel, err := d.pickAccel(context.Background())
			if err != nil || accel != "tcg" {
				t.Fatalf("auto on a broken KVM = %q, %v; want tcg", accel, err)
			}
			if l := logs(); len(l) != 1 || !strings.Contains(l[0], c.want) {
				t.Errorf("want one log line with %q, got %q", c.want, l)
			}
			d.Accel = "kvm"
			_, err = d.pickAccel(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "fix:") {
				t.Errorf("accel kvm on a broken KVM: want the cause and the fix, got %v", err)
			}
		})
	}
}

// The verdict is kept per process: the probe QEMU runs once per setup.
func TestAccelProbeCached(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	bin := wrapper(t, `echo run >> `+count+`; exit 1`)
	p := &accelProbe{device: os.DevNull, accel: "kvm", timeout: time.Second}
	for i := 0; i < 3; i++ {
		d, _ := probeDevice(t, "auto", bin, p)
		if accel, _ := d.pickAccel(context.Background()); accel != "tcg" {
			t.Fatalf("got %q", accel)
		}
	}
	b, _ := os.ReadFile(count)
	if n := strings.Count(string(b), "run"); n != 1 {
		t.Errorf("probe ran %d times, want 1", n)
	}
	// Another CPU model is another question.
	d, _ := probeDevice(t, "auto", bin, p)
	d.CPU = "host"
	d.pickAccel(context.Background())
	b, _ = os.ReadFile(count)
	if n := strings.Count(string(b), "run"); n != 2 {
		t.Errorf("probe ran %d times after a new CPU model, want 2", n)
	}
}

// On a board with accel kvm, a failing KVM is an infrastructure error at
// power-on (exit 3 in a run), naming cause and fix.
func TestAccelKVMPowerOnFails(t *testing.T) {
	bin := wrapper(t, `echo "kvm_buf_set_msrs: Assertion failed" >&2; kill -ABRT $$`)
	d, _ := probeDevice(t, "kvm", bin, &accelProbe{device: os.DevNull, accel: "kvm", timeout: time.Second})
	d.opened = true
	d.disk = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(d.disk, probeSector, 0o600); err != nil {
		t.Fatal(err)
	}
	err := d.On(context.Background())
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "kvm_buf_set_msrs") || !strings.Contains(err.Error(), "fix:") {
		t.Fatalf("power on with a broken KVM: want a driver error with cause and fix, got %v", err)
	}
}
