//go:build linux

package sim

import (
	"context"
	"crypto/subtle"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jsplan/jsplan/drivers/internal/ptyutil"
	"github.com/jsplan/jsplan/internal/procguard"
)

// generation is one power-on of the board: from On to Off.
type generation struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// in carries the bytes the host types, in order.
	in chan []byte

	// Input state, owned by whoever consumes in.
	pending []byte // received but not consumed yet
	prevCR  bool   // the last line ended with '\r' (a following '\n' is skipped)
}

func newGeneration() *generation {
	ctx, cancel := context.WithCancel(context.Background())
	return &generation{ctx: ctx, cancel: cancel, in: make(chan []byte, 64)}
}

// maxLine bounds a line typed at the login prompt.
const maxLine = 256

// run is the board's life after power on: boot, then getty and login, then
// a shell, and the login prompt again when the shell exits.
func (d *Device) run(g *generation, id string) {
	early := []string{
		"[    0.000000] Linux version 6.1.0-jsplan-sim (builder@jsplan) (gcc 12.2.0) #1 SMP PREEMPT",
		"[    0.000000] Command line: console=ttyS0,115200 root=/dev/mmcblk0p2 rootwait",
		"[    0.000000] Machine model: jsplan simulated board",
		"[    0.004000] sim: booting image " + id,
		"[    0.120000] Serial: 8250/16550 driver, 4 ports, IRQ sharing enabled",
		"[    0.480000] mmc0: new high speed SDHC card at address 0001",
		"[    0.512000] mmcblk0: mmc0:0001 SIM16G 14.8 GiB mmcblk0p1 mmcblk0p2",
	}
	panicked := []string{
		"[    0.600000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2)",
		"[    0.600000] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-jsplan-sim #1",
		"[    0.600000] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2) ]---",
	}
	late := []string{
		"[    0.700000] EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode. Quota mode: none.",
		"[    0.704000] VFS: Mounted root (ext4 filesystem) on device 179:2.",
		"[    0.720000] Run /sbin/init as init process",
	}
	if !d.lines(g, early) {
		return
	}
	if d.Faults.KernelPanic {
		if d.lines(g, panicked) {
			d.idle(g)
		}
		return
	}
	if !d.lines(g, late) {
		return
	}
	if d.Faults.BootHang {
		d.idle(g)
		return
	}
	for {
		if !d.login(g, id) {
			return
		}
		d.shell(g)
		if g.ctx.Err() != nil {
			return
		}
	}
}

// lines prints boot log lines with the boot delay before each one. It
// reports false once the board is off.
func (d *Device) lines(g *generation, lines []string) bool {
	klog, _ := os.OpenFile(filepath.Join(d.root, kernelLog), os.O_WRONLY|os.O_APPEND, 0)
	if klog != nil {
		defer klog.Close()
	}
	for _, l := range lines {
		if !d.pause(g, d.bootDelay) || d.tx(g, []byte(l+"\r\n")) != nil {
			return false
		}
		if klog != nil {
			_, _ = klog.WriteString(l + "\n")
		}
	}
	return true
}

// kernelLog is the board's kernel log (what dmesg prints on the board),
// relative to its root.
const kernelLog = "var/log/dmesg"

// pause waits for dur or until the board is off; it reports whether the
// board is still on.
func (d *Device) pause(g *generation, dur time.Duration) bool {
	if dur <= 0 {
		return g.ctx.Err() == nil
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-g.ctx.Done():
		return false
	}
}

// idle is a board that hangs: it ignores input until powered off.
func (d *Device) idle(g *generation) {
	for {
		select {
		case <-g.in:
		case <-g.ctx.Done():
			return
		}
	}
}

// login is getty and login on a serial line: it reports true once the user
// logged in, false when the board was powered off.
func (d *Device) login(g *generation, id string) bool {
	issue := fmt.Sprintf("\r\nJsplan Sim Linux 1.0 %s ttyS0\r\n\r\n", d.Hostname)
	if d.tx(g, []byte(issue)) != nil {
		return false
	}
	for {
		if d.tx(g, []byte(d.Hostname+" login: ")) != nil {
			return false
		}
		user, ok := d.readLine(g, true)
		if !ok {
			return false
		}
		if user == "" {
			continue
		}
		if d.tx(g, []byte("Password: ")) != nil {
			return false
		}
		pass, ok := d.readLine(g, false)
		if !ok {
			return false
		}
		userOK := subtle.ConstantTimeCompare([]byte(user), []byte(d.Username)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(d.Password)) == 1
		if userOK && passOK && !d.Faults.LoginRefused {
			motd := fmt.Sprintf("\r\nWelcome to the jsplan simulated board %s (image %s).\r\n\r\n", d.Hostname, id)
			return d.tx(g, []byte(motd)) == nil
		}
		// login(1) waits a while after a failure.
		if !d.pause(g, 2*d.bootDelay) || d.tx(g, []byte("\r\nLogin incorrect\r\n")) != nil {
			return false
		}
	}
}

// readByte returns the next byte the host typed; false when the board is off.
func (g *generation) readByte() (byte, bool) {
	for len(g.pending) == 0 {
		select {
		case p := <-g.in:
			g.pending = p
		case <-g.ctx.Done():
			return 0, false
		}
	}
	c := g.pending[0]
	g.pending = g.pending[1:]
	return c, true
}

// readLine reads a line as a tty in canonical mode would: Enter is '\r' or
// '\n' (a '\n' right after a '\r' is skipped), backspace and ^U edit, other
// control bytes are ignored. With echo the board echoes what is typed; the
// Enter is always answered with "\r\n".
func (d *Device) readLine(g *generation, echo bool) (string, bool) {
	var line []byte
	for {
		c, ok := g.readByte()
		if !ok {
			return "", false
		}
		if c == '\n' && g.prevCR {
			g.prevCR = false
			continue
		}
		g.prevCR = c == '\r'
		var out []byte
		switch {
		case c == '\r' || c == '\n':
			if d.tx(g, []byte("\r\n")) != nil {
				return "", false
			}
			return string(line), true
		case c == 0x7f || c == 0x08: // backspace
			if len(line) > 0 {
				line = line[:len(line)-1]
				out = []byte("\b \b")
			}
		case c == 0x15: // ^U: kill the line
			for range line {
				out = append(out, "\b \b"...)
			}
			line = line[:0]
		case c < ' ':
		default:
			if len(line) < maxLine {
				line = append(line, c)
				out = []byte{c}
			}
		}
		if echo && len(out) > 0 && d.tx(g, out) != nil {
			return "", false
		}
	}
}

// shell runs /bin/sh -i on its own pty, bridged to the console, until it
// exits or the board is powered off. Everything it started is killed.
func (d *Device) shell(g *generation) {
	fail := func(err error) {
		d.env.Logf("sim: cannot start the shell: %v", err)
		_ = d.tx(g, []byte(fmt.Sprintf("sim: cannot start /bin/sh: %v\r\n", err)))
	}
	m, slaveName, err := ptyutil.OpenMaster()
	if err != nil {
		fail(err)
		return
	}
	defer m.Close()
	slave, err := os.OpenFile(slaveName, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		fail(err)
		return
	}
	cmd := exec.Command("/bin/sh", "-i")
	cmd.Dir = d.root
	home := d.root
	sandbox, err := sandboxCommand(d.root)
	if err == nil {
		cmd, home = sandbox, "/"
	} else {
		d.sandboxOnce.Do(func() {
			d.env.Logf("sim: %v: the shell runs in the host's file system (absolute paths are the host's)", err)
		})
	}
	cmd.Env = []string{
		"HOME=" + home,
		"PWD=" + home,
		"PATH=" + map[bool]string{true: simBin + ":", false: ""}[sandbox != nil] + "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"TERM=vt100",
		"PS1=" + d.Prompt,
		"USER=" + d.Username,
		"LOGNAME=" + d.Username,
		"SHELL=/bin/sh",
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session of its own with the pty as controlling terminal (Ctty is
	// the child's fd 0), as login gives a shell.
	cmd.SysProcAttr = procguard.SysProcAttr(true)
	cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, 0
	if sandbox != nil {
		sandboxAttr(cmd.SysProcAttr)
		cmd.Env = append(cmd.Env, sandboxEnv+"="+d.root, hostnameEnv+"="+d.Hostname)
		if len(d.shares) > 0 {
			cmd.Env = append(cmd.Env, shareEnv+"="+strings.Join(d.shares, string(filepath.ListSeparator)))
		}
	}
	// The tag passes the sandbox's init (it keeps the environment) to the
	// shell and everything it starts.
	tag := procguard.Tag(cmd)
	err = cmd.Start()
	slave.Close()
	if err != nil {
		fail(err)
		return
	}
	pid := cmd.Process.Pid
	// If jsplan dies, the guardian kills the session (the shell's jobs).
	_ = procguard.Watch(pid)

	// Shell output to the console.
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			if n > 0 && d.tx(g, buf[:n]) != nil {
				return
			}
			if err != nil {
				return // EIO once every holder of the slave is gone
			}
		}
	}()

	// Console input to the shell.
	stopIn := make(chan struct{})
	inDone := make(chan struct{})
	pending, skipLF := g.pending, g.prevCR
	g.pending, g.prevCR = nil, false
	go func() {
		defer close(inDone)
		write := func(p []byte) bool {
			if skipLF && len(p) > 0 {
				if p[0] == '\n' {
					p = p[1:]
				}
				skipLF = false
			}
			if len(p) == 0 {
				return true
			}
			_, err := m.Write(p)
			return err == nil
		}
		if !write(pending) {
			return
		}
		for {
			select {
			case p := <-g.in:
				if !write(p) {
					return
				}
			case <-stopIn:
				return
			case <-g.ctx.Done():
				return
			}
		}
	}()

	// Wait for the shell to exit without reaping it, so that its PID (its
	// process group and session ID) cannot be reused while the rest of its
	// session is killed.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var si unix.Siginfo
		for unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
	}()
	select {
	case <-exited:
		// Logout hangs the line up: no job outlives the session.
		killSession(pid)
	case <-g.ctx.Done():
		killSession(pid)
		<-exited
	}
	procguard.Forget(pid)
	procguard.KillTagged(tag) // what left the session
	_ = cmd.Wait()

	if g.ctx.Err() == nil {
		// Let the last output through before the login prompt. Every
		// holder of the pty is dead now, so the read ends at once; the
		// timer only guards against a stray holder outside the session.
		t := time.NewTimer(2 * time.Second)
		select {
		case <-outDone:
		case <-t.C:
		case <-g.ctx.Done():
		}
		t.Stop()
	}
	close(stopIn)
	m.Close()
	<-outDone
	<-inDone
}
