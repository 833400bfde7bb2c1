package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A /dev/kvm that opens is no proof that KVM can run a guest: under some
// nested hypervisors QEMU aborts at start ("failed to set MSR ...") or starts
// a guest that never executes an instruction. So before trusting KVM the
// driver boots a one-sector probe guest with the board's machine and CPU
// model; the guest writes to QEMU's isa-debug-exit port, which ends QEMU with
// a known status. Only that status proves KVM works.

const (
	kvmDevice      = "/dev/kvm"
	probeTimeout   = 10 * time.Second // a working probe takes about 0.2 s
	probeExitValue = 0x31             // written by the guest to port 0xf4
	probeExitCode  = probeExitValue<<1 | 1
)

// probeSector is a boot sector: mov al,0x31; out 0xf4,al; hlt; jmp to hlt.
var probeSector = func() []byte {
	b := make([]byte, 512)
	copy(b, []byte{0xB0, probeExitValue, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD})
	b[510], b[511] = 0x55, 0xAA
	return b
}()

// accelProbe finds out once per process and QEMU setup whether KVM runs a guest.
type accelProbe struct {
	device  string        // the KVM device node
	accel   string        // the accelerator probed: kvm (tests stand in other host shapes)
	timeout time.Duration // for the probe guest to run
	mu      sync.Mutex
	seen    map[string]error // binary, machine, cpu -> result (nil: KVM works)
}

// kvmProbe is shared by every qemu board of the process: the answer depends
// on the host, not the board.
var kvmProbe = &accelProbe{device: kvmDevice, accel: "kvm", timeout: probeTimeout}

// check reports nil when KVM runs a guest of this machine and CPU model with
// this QEMU binary, or why not. dir holds the probe's disk for the call.
func (p *accelProbe) check(ctx context.Context, binary, machine, cpu, dir string) error {
	key := binary + "\x00" + machine + "\x00" + cpu
	p.mu.Lock()
	defer p.mu.Unlock()
	if err, ok := p.seen[key]; ok {
		return err
	}
	err := p.run(ctx, binary, machine, cpu, dir)
	if ctx.Err() != nil {
		return err // interrupted: no verdict to keep
	}
	if p.seen == nil {
		p.seen = map[string]error{}
	}
	p.seen[key] = err
	return err
}

func (p *accelProbe) run(ctx context.Context, binary, machine, cpu, dir string) error {
	f, err := os.OpenFile(p.device, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%s is not usable: %v", p.device, err)
	}
	f.Close()
	disk := filepath.Join(dir, "kvm-probe.img")
	if err := os.WriteFile(disk, probeSector, 0o600); err != nil {
		return err
	}
	defer os.Remove(disk)
	if err := os.Truncate(disk, 1<<20); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, binary,
		"-machine", machine, "-accel", p.accel, "-cpu", cpu, "-m", "16",
		"-nodefaults", "-no-user-config", "-display", "none", "-net", "none",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-drive", "file="+optEscape(disk)+",format=raw,if=virtio")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == probeExitCode:
		return nil
	case ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("a KVM guest started but ran no code in %v (QEMU said: %s)", p.timeout, said(out.String()))
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case err == nil:
		return fmt.Errorf("the KVM probe guest ended without running (QEMU said: %s)", said(out.String()))
	default:
		return fmt.Errorf("QEMU cannot run a KVM guest: %v (QEMU said: %s)", err, said(out.String()))
	}
}

// said is the last lines QEMU printed, for a message.
func said(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	s := strings.Join(lines, " / ")
	if s == "" {
		return "nothing"
	}
	return s
}

// pickAccel chooses KVM or TCG for the board: tcg as asked; kvm only when the
// probe proves it runs (else an error naming the cause and the fix); auto
// falls back to TCG with one log line saying why.
func (d *Device) pickAccel(ctx context.Context) (string, error) {
	if d.Accel == "tcg" {
		return "tcg", nil
	}
	machine, cpu, _ := d.model()
	err := d.probe.check(ctx, d.binary, machine, cpu, d.runDir)
	switch {
	case err == nil:
		return "kvm", nil
	case ctx.Err() != nil:
		return "", err
	case d.Accel == "kvm":
		return "", fmt.Errorf("accel kvm: %v; fix: run on a host whose KVM works (check nested virtualisation), or set accel: auto or tcg on this board", err)
	default:
		d.env.Logf("qemu: using TCG (software emulation): KVM was not used: %v", err)
		return "tcg", nil
	}
}
