package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/internal/procguard"
)

// Timeouts of the power operations.
const (
	qmpConnectTimeout = 20 * time.Second // QEMU start to QMP ready
	quitTimeout       = 3 * time.Second  // QMP quit to process exit
	killTimeout       = 5 * time.Second  // SIGKILL to process exit
	resetEventTimeout = 5 * time.Second  // system_reset to its RESET event
	powerButtonRepeat = time.Second      // between ACPI power button presses
)

// vmProcess is one running QEMU.
type vmProcess struct {
	cmd    *exec.Cmd
	pid    int
	accel  string
	out    *tailBuffer
	qmp    *qmpClient
	exited chan struct{} // closed when the process has been reaped
	err    error         // from Wait; read after exited
}

func (vm *vmProcess) alive() bool {
	select {
	case <-vm.exited:
		return false
	default:
		return true
	}
}

// waitExit waits up to d (or until ctx ends) for the process to end.
func (vm *vmProcess) waitExit(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-vm.exited:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return !vm.alive()
}

// stop ends QEMU: the ACPI power button first (when graceful > 0), then a QMP
// quit, then SIGKILL to its PID. It returns once the process is reaped.
func (vm *vmProcess) stop(ctx context.Context, graceful time.Duration) (how string, err error) {
	defer func() {
		if vm.qmp != nil {
			vm.qmp.Close()
		}
	}()
	if !vm.alive() {
		return "already stopped", nil
	}
	if graceful > 0 && vm.qmp != nil && ctx.Err() == nil {
		// A guest still booting misses the button until its ACPI daemon
		// runs: press it again every powerButtonRepeat while waiting.
		gctx, cancel := context.WithTimeout(ctx, graceful)
		for gctx.Err() == nil {
			_, err := vm.qmp.Execute(gctx, "system_powerdown", nil)
			// An error may be QEMU closing the monitor as the guest ends.
			if vm.waitExit(gctx, powerButtonRepeat) {
				cancel()
				return "guest powered off", nil
			}
			if err != nil {
				break
			}
		}
		cancel()
	}
	if vm.qmp != nil {
		// Quit even when ctx has ended: it is quick and cleaner than a kill.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quitTimeout)
		// The reply may be lost as QEMU closes the socket: judge by the exit.
		vm.qmp.Execute(qctx, "quit", nil)
		if vm.waitExit(qctx, quitTimeout) {
			cancel()
			return "qmp quit", nil
		}
		cancel()
	}
	if err := vm.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return "", fmt.Errorf("kill pid %d: %v", vm.pid, err)
	}
	if !vm.waitExit(context.Background(), killTimeout) {
		return "", fmt.Errorf("pid %d did not exit after SIGKILL", vm.pid)
	}
	return "killed", nil
}

// runningLocked reports whether QEMU runs; d.mu is held. A QEMU that exited
// by itself (the guest powered off) is cleaned up.
func (d *Device) runningLocked() bool {
	if d.vm == nil {
		return false
	}
	if d.vm.alive() {
		return true
	}
	vm := d.vm
	d.vm = nil
	if vm.qmp != nil {
		vm.qmp.Close()
	}
	d.env.Logf("qemu: pid %d exited by itself (%v)", vm.pid, exitString(vm.err))
	return false
}

// On starts QEMU booting from the disk. It returns once QEMU runs and its
// monitor answers; the guest boots on its own. On a running board it does
// nothing.
func (d *Device) On(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.opened {
		return errors.New("qemu: device is not open")
	}
	if d.runningLocked() {
		return nil
	}
	if d.onHost {
		return errors.New("qemu: the disk is attached to the host: attach it to the board before powering on")
	}
	fi, err := os.Stat(d.disk)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return drivers.Errorf(driverName, "power on", "disk %s does not exist: flash an image first", d.disk)
	case err != nil:
		return drivers.Errorf(driverName, "power on", "%v", err)
	case !fi.Mode().IsRegular():
		return drivers.Errorf(driverName, "power on", "disk %s is not a regular file", d.disk)
	case fi.Size() == 0:
		return drivers.Errorf(driverName, "power on", "disk %s is empty: flash an image first", d.disk)
	}
	accel, err := d.pickAccel(ctx)
	if err != nil {
		return drivers.Errorf(driverName, "power on", "%v", err)
	}
	qmpPath := filepath.Join(d.runDir, "qmp.sock")
	os.Remove(qmpPath)
	out := &tailBuffer{max: 8 << 10}
	cmd := exec.Command(d.binary, d.args(accel, qmpPath)...)
	cmd.Dir = d.runDir
	cmd.Stdout = out
	cmd.Stderr = out
	// Own process group: a terminal's Ctrl-C reaches the engine, which
	// stops QEMU itself. Pdeathsig: no QEMU outlives a killed engine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return drivers.Errorf(driverName, "power on", "start %s: %v", d.binary, err)
	}
	vm := &vmProcess{cmd: cmd, pid: cmd.Process.Pid, accel: accel, out: out, exited: make(chan struct{})}
	_ = procguard.Watch(vm.pid)
	go func() {
		vm.err = cmd.Wait()
		procguard.Forget(vm.pid)
		close(vm.exited)
	}()
	qctx, cancel := context.WithTimeout(ctx, qmpConnectTimeout)
	defer cancel()
	vm.qmp, err = dialQMP(qctx, qmpPath, vm.alive)
	if err == nil {
		var st string
		st, err = vm.qmp.Status(qctx)
		if err == nil && st != "running" {
			err = fmt.Errorf("qemu is %q, not running", st)
		}
	}
	if err != nil {
		vm.stop(context.Background(), 0)
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = exitString(vm.err)
		}
		return drivers.Errorf(driverName, "power on", "%v; qemu said: %s", err, msg)
	}
	d.vm = vm
	d.env.Logf("qemu: powered on (pid %d, accel %s, disk %s)", vm.pid, accel, d.disk)
	return nil
}

// Off stops the board: ACPI power button, then QMP quit, then SIGKILL. On a
// board that is off it does nothing.
func (d *Device) Off(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.runningLocked() {
		return nil
	}
	vm := d.vm
	how, err := vm.stop(ctx, d.powerdown)
	if err != nil {
		return drivers.Errorf(driverName, "power off", "%v", err)
	}
	d.vm = nil
	d.env.Logf("qemu: powered off (pid %d: %s)", vm.pid, how)
	return nil
}

// Cycle powers the board off and on again. A virtual machine has nothing to
// discharge, so the pause only keeps a running machine off for delay, as the
// plan asked; a machine that is already off starts at once (a plan usually
// powers off before flashing and then cycles to boot).
func (d *Device) Cycle(ctx context.Context, delay time.Duration) error {
	d.mu.Lock()
	wasOn := d.runningLocked()
	d.mu.Unlock()
	if wasOn {
		if err := d.Off(ctx); err != nil {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
	}
	return d.On(ctx)
}

// Reset resets the machine without stopping QEMU (QMP system_reset).
func (d *Device) Reset(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.runningLocked() {
		return errors.New("qemu: cannot reset: the board is off")
	}
	q := d.vm.qmp
	q.DrainEvents()
	if _, err := q.Execute(ctx, "system_reset", nil); err != nil {
		return drivers.Errorf(driverName, "reset", "%v", err)
	}
	ectx, cancel := context.WithTimeout(ctx, resetEventTimeout)
	defer cancel()
	if _, err := q.WaitEvent(ectx, "RESET"); err != nil {
		return drivers.Errorf(driverName, "reset", "%v", err)
	}
	d.env.Logf("qemu: reset (pid %d)", d.vm.pid)
	return nil
}

// PowerState reports whether QEMU runs.
func (d *Device) PowerState(ctx context.Context) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runningLocked(), nil
}

// PID returns the process id of the running QEMU, 0 when the board is off.
func (d *Device) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.runningLocked() {
		return 0
	}
	return d.vm.pid
}

// model is the machine type, CPU model and memory (MiB), defaults filled in.
func (d *Device) model() (machine, cpu string, mem int) {
	machine, cpu, mem = d.Machine, d.CPU, d.Memory
	if machine == "" {
		machine = DefaultMachine
	}
	if cpu == "" {
		cpu = DefaultCPU
	}
	if mem == 0 {
		mem = DefaultMemory
	}
	return machine, cpu, mem
}

// args is the QEMU command line.
func (d *Device) args(accel, qmpPath string) []string {
	machine, cpu, mem := d.model()
	name := "jsplan"
	if d.env.Board != "" {
		name = "jsplan-" + d.env.Board
	}
	args := []string{
		"-name", optEscape(name),
		"-machine", machine,
		"-accel", accel,
		"-cpu", cpu,
		"-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none",
		// The console: QEMU connects to the relay's socket.
		"-chardev", "socket,id=console0,path=" + optEscape(d.console.path),
		"-serial", "chardev:console0",
		"-qmp", "unix:" + optEscape(qmpPath) + ",server=on,wait=off",
		"-drive", "file=" + optEscape(d.disk) + ",format=raw,if=virtio",
	}
	if n := d.Network; n != nil {
		// restrict=on: the guest reaches nothing; only the forward from
		// 127.0.0.1 comes in.
		args = append(args,
			"-netdev", fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", n.SSHPort),
			"-device", "virtio-net-pci,netdev=net0")
	} else {
		args = append(args, "-net", "none")
	}
	return append(args, d.ExtraArgs...)
}

// optEscape escapes a value inside a QEMU option list (commas double).
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
