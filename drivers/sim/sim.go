//go:build linux

package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/internal/ptyutil"
)

// Name is the name the driver is registered under.
const Name = "sim"

func init() {
	drivers.Register(drivers.Info{
		Name:    Name,
		Summary: "virtual board inside jsplan: boot log, login and a real shell on a pty console, a disk file as storage",
		Schema:  configSchema(),
		New:     func() drivers.Device { return new(Device) },
	})
}

// ErrPoweredOn is wrapped by the error AttachHost returns while the board is
// powered on.
var ErrPoweredOn = errors.New("refusing to attach storage to the host while the board is powered on")

// Device is a simulated board. Its exported fields are its configuration,
// decoded from the board's `sim:` entry in a Boards inventory.
type Device struct {
	// Hostname is shown in the boot log and the login prompt.
	Hostname string `yaml:"hostname"`
	// Username and Password are what the login prompt accepts.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Prompt is the shell's PS1.
	Prompt string `yaml:"prompt"`
	// BootDelay is the pause between boot log lines (a Go duration).
	BootDelay *cfg.Duration `yaml:"boot-delay"`
	// SSH, when set, is the board's network endpoint.
	SSH *SSH `yaml:"ssh"`
	// Share lists host directories bound read-write at the same path in
	// the board's file system (tests that watch what the board does).
	Share []string `yaml:"share"`
	// Faults are failures to simulate.
	Faults Faults `yaml:"faults"`

	env       drivers.Env
	bootDelay time.Duration
	dropAfter time.Duration
	disk      string   // absolute path of disk.img
	root      string   // absolute path of the root directory
	keyFile   string   // SSH key file, resolved
	shares    []string // Share, absolute

	sandboxOnce sync.Once // says once why the shell has no root of its own

	// power serializes Open, Close and power changes.
	power  sync.Mutex
	opened bool
	closed bool
	gen    *generation // the running board; nil when off

	// mu guards the console line below. It is never held while waiting.
	mu      sync.Mutex
	master  *os.File // board side; nil once the line is gone
	keep    int      // a slave fd the board holds so the line never hangs up; -1 when gone
	slave   string   // path of the slave (host side)
	dropped bool     // the line died (fault console-drop-after)
	hosts   map[*hostConsole]struct{}
}

var (
	_ drivers.Device      = (*Device)(nil)
	_ drivers.Validator   = (*Device)(nil)
	_ drivers.Power       = (*Device)(nil)
	_ drivers.Resetter    = (*Device)(nil)
	_ drivers.PowerStater = (*Device)(nil)
	_ drivers.Console     = (*Device)(nil)
	_ drivers.Storage     = (*Device)(nil)
	_ drivers.Network     = (*Device)(nil)
	_ drivers.Transient   = (*Device)(nil)
)

// Transient reports true: the simulated board lives inside the process that
// opened it and is off once it is closed.
func (d *Device) Transient() bool { return true }

// Open prepares the board's state directory (disk.img, root/) and its
// console line. The board starts powered off.
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	if err := drivers.Fatal(d.Validate()); err != nil {
		return fmt.Errorf("sim: invalid configuration: %w", err)
	}
	d.power.Lock()
	defer d.power.Unlock()
	if d.opened {
		return drivers.Errorf(Name, "open", "device is already open")
	}
	if env.Secret != nil {
		env.Secret(d.Password)
	}
	d.env = env
	d.bootDelay = cfg.OrDefault(d.BootDelay, DefaultBootDelay)
	d.dropAfter = d.Faults.ConsoleDropAfter.D()
	if env.StateDir == "" {
		return drivers.Errorf(Name, "open", "no state directory")
	}
	state, err := filepath.Abs(env.StateDir)
	if err != nil {
		return drivers.Errorf(Name, "open", "state directory: %v", err)
	}
	d.disk = filepath.Join(state, "disk.img")
	d.root = filepath.Join(state, "root")
	if err := os.MkdirAll(filepath.Join(d.root, "etc"), 0o755); err != nil {
		return drivers.Errorf(Name, "open", "create root directory: %v", err)
	}
	d.shares = nil
	for _, p := range d.Share {
		if !filepath.IsAbs(p) && env.BaseDir != "" {
			p = filepath.Join(env.BaseDir, p)
		}
		if p, err = filepath.Abs(p); err == nil {
			err = os.MkdirAll(p, 0o755)
		}
		if err == nil {
			err = linkShare(d.root, p)
		}
		if err != nil {
			return drivers.Errorf(Name, "open", "share: %v", err)
		}
		d.shares = append(d.shares, p)
	}
	if d.SSH != nil && d.SSH.KeyFile != "" {
		d.keyFile = d.SSH.KeyFile
		if !filepath.IsAbs(d.keyFile) && env.BaseDir != "" {
			d.keyFile = filepath.Join(env.BaseDir, d.keyFile)
		}
	}

	master, slave, err := ptyutil.OpenMaster()
	if err != nil {
		return drivers.Errorf(Name, "open", "console: %v", err)
	}
	keep, err := unix.Open(slave, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = ptyutil.MakeRawFD(keep)
		if err != nil {
			unix.Close(keep)
		}
	}
	if err != nil {
		master.Close()
		return drivers.Errorf(Name, "open", "console %s: %v", slave, err)
	}
	d.mu.Lock()
	d.master, d.keep, d.slave = master, keep, slave
	d.hosts = map[*hostConsole]struct{}{}
	d.mu.Unlock()
	d.opened = true
	env.Logf("sim: board %s: console %s, storage %s", env.Board, slave, d.disk)
	return nil
}

// Close powers the board off, kills every process it started, and closes
// the console line (host consoles still open read EOF or an error).
func (d *Device) Close() error {
	d.power.Lock()
	defer d.power.Unlock()
	if d.closed || !d.opened {
		d.closed = true
		return nil
	}
	d.closed = true
	d.off()
	d.mu.Lock()
	m, keep, hosts := d.master, d.keep, d.hosts
	d.master, d.keep, d.hosts = nil, -1, nil
	d.mu.Unlock()
	if m != nil {
		m.Close()
	}
	if keep >= 0 {
		unix.Close(keep)
	}
	for c := range hosts {
		c.close()
	}
	return nil
}

// usable reports whether the device may be used. The caller holds d.power.
func (d *Device) usable(op string) error {
	switch {
	case d.closed:
		return drivers.Errorf(Name, op, "device is closed")
	case !d.opened:
		return drivers.Errorf(Name, op, "device is not open")
	}
	return nil
}

// On powers the board on: it boots and offers a login prompt on the
// console. On when already on does nothing.
func (d *Device) On(ctx context.Context) error {
	d.power.Lock()
	defer d.power.Unlock()
	return d.on(ctx)
}

func (d *Device) on(ctx context.Context) error {
	if err := d.usable("power on"); err != nil {
		return err
	}
	if d.gen != nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.Faults.PowerFail {
		return drivers.Errorf(Name, "power on", "the power switch does not respond (fault power-fail)")
	}
	id, err := imageID(d.disk)
	if err != nil {
		return drivers.Errorf(Name, "power on", "read image id: %v", err)
	}
	// The shell may have removed the directory: a board's /etc is always there.
	err = os.MkdirAll(filepath.Join(d.root, "etc"), 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(d.root, "etc", "image-id"), []byte(id+"\n"), 0o644)
	}
	if err == nil {
		// the kernel log of this boot (the board's dmesg)
		if err = os.MkdirAll(filepath.Join(d.root, "var", "log"), 0o755); err == nil {
			err = os.WriteFile(filepath.Join(d.root, kernelLog), nil, 0o644)
		}
	}
	if err != nil {
		return drivers.Errorf(Name, "power on", "write image id: %v", err)
	}
	g := newGeneration()
	d.gen = g
	d.mu.Lock()
	m := d.master
	d.mu.Unlock()
	if m != nil {
		// What the host typed while the board was off is lost.
		_ = control(m, flushInput)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			d.receive(g, m)
		}()
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		d.run(g, id)
	}()
	if d.dropAfter > 0 {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			t := time.NewTimer(d.dropAfter)
			defer t.Stop()
			select {
			case <-t.C:
				d.dropLine()
			case <-g.ctx.Done():
			}
		}()
	}
	d.env.Logf("sim: power on, image %s", id)
	return nil
}

// Off powers the board off: the boot stops, the shell and everything it
// started are killed, and nothing more is printed. Off when off does nothing.
func (d *Device) Off(ctx context.Context) error {
	d.power.Lock()
	defer d.power.Unlock()
	if err := d.usable("power off"); err != nil {
		return err
	}
	d.off()
	return nil
}

// off stops the running board and waits until all its goroutines and
// processes are gone. The caller holds d.power.
func (d *Device) off() {
	g := d.gen
	if g == nil {
		return
	}
	d.gen = nil
	d.mu.Lock()
	m := d.master
	d.mu.Unlock()
	g.cancel()
	// A past deadline ends the console receiver's read and a console
	// write blocked because the host does not read.
	if m != nil {
		_ = m.SetDeadline(time.Now())
	}
	g.wg.Wait()
	if m != nil {
		_ = m.SetDeadline(time.Time{})
	}
	d.env.Logf("sim: power off")
}

// Reset reboots the board: off, then on.
func (d *Device) Reset(ctx context.Context) error {
	d.power.Lock()
	defer d.power.Unlock()
	if err := d.usable("reset"); err != nil {
		return err
	}
	d.off()
	return d.on(ctx)
}

// PowerState reports whether the board is powered on.
func (d *Device) PowerState(ctx context.Context) (bool, error) {
	d.power.Lock()
	defer d.power.Unlock()
	if err := d.usable("power state"); err != nil {
		return false, err
	}
	return d.gen != nil, nil
}

// AttachHost returns the absolute path of the board's disk image, creating
// an empty one if there is none. It refuses while the board is powered on.
func (d *Device) AttachHost(ctx context.Context) (string, error) {
	d.power.Lock()
	defer d.power.Unlock()
	if err := d.usable("attach storage to host"); err != nil {
		return "", err
	}
	if d.gen != nil {
		return "", &drivers.Error{Driver: Name, Op: "attach storage to host", Err: ErrPoweredOn}
	}
	f, err := os.OpenFile(d.disk, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", drivers.Errorf(Name, "attach storage to host", "%v", err)
	}
	if err := f.Close(); err != nil {
		return "", drivers.Errorf(Name, "attach storage to host", "%v", err)
	}
	return d.disk, nil
}

// AttachBoard gives the disk back to the board; the simulated disk needs
// nothing done.
func (d *Device) AttachBoard(ctx context.Context) error {
	d.power.Lock()
	defer d.power.Unlock()
	return d.usable("attach storage to board")
}

// Endpoint returns the configured SSH endpoint.
func (d *Device) Endpoint(ctx context.Context) (drivers.Endpoint, error) {
	if d.SSH == nil {
		return drivers.Endpoint{}, drivers.Errorf(Name, "network endpoint", "no ssh endpoint is configured for this board")
	}
	key := d.keyFile
	if key == "" {
		key = d.SSH.KeyFile
	}
	return drivers.Endpoint{
		Host:    d.SSH.Host,
		Port:    d.SSH.Port,
		User:    d.SSH.User,
		KeyFile: key,
		Options: slices.Clone(d.SSH.Options),
	}, nil
}

// Capabilities lists what the board serves: network only with ssh set.
func (d *Device) Capabilities() []drivers.Capability {
	caps := []drivers.Capability{drivers.CapPower, drivers.CapConsole, drivers.CapStorage}
	if d.SSH != nil {
		caps = append(caps, drivers.CapNetwork)
	}
	return caps
}

// OpenConsole opens the host side of the console: the pty slave in raw mode.
// Bytes the board sends while no host side is open are lost, as on a UART,
// so open the console before powering on to see the whole boot log.
func (d *Device) OpenConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	d.mu.Lock()
	dropped, gone, slave := d.dropped, d.master == nil, d.slave
	d.mu.Unlock()
	switch {
	case dropped:
		return nil, drivers.Errorf(Name, "open console", "the console adapter is gone (fault console-drop-after)")
	case gone:
		return nil, drivers.Errorf(Name, "open console", "device is not open")
	}
	f, err := os.OpenFile(slave, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, drivers.Errorf(Name, "open console", "%v", err)
	}
	if err := control(f, ptyutil.MakeRawFD); err != nil {
		f.Close()
		return nil, drivers.Errorf(Name, "open console", "raw mode on %s: %v", slave, err)
	}
	c := &hostConsole{File: f, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.master == nil {
		f.Close()
		return nil, drivers.Errorf(Name, "open console", "the console line closed while opening it")
	}
	if len(d.hosts) == 0 {
		_ = flushInput(d.keep) // nothing was received while the port was closed
	}
	d.hosts[c] = struct{}{}
	return c, nil
}

// hostConsole is the host side of the console. It is an *os.File (so read
// and write deadlines work) whose Close also tells the board.
type hostConsole struct {
	*os.File
	d    *Device
	once sync.Once
	err  error
}

// Close closes the console; closing it again returns nil.
func (c *hostConsole) Close() error {
	c.close()
	return c.err
}

func (c *hostConsole) close() {
	c.once.Do(func() {
		c.err = c.File.Close()
		d := c.d
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, ok := d.hosts[c]; !ok {
			return
		}
		delete(d.hosts, c)
		if len(d.hosts) == 0 && d.keep >= 0 {
			// Unread bytes would reach the next opener: drop them,
			// which also releases a board write blocked on a full line.
			_ = flushInput(d.keep)
		}
	})
}

// receive hands what the host types to the running board g, until the
// board is off or the line is gone. While the board is off nobody reads the
// line; On discards what was typed meanwhile.
func (d *Device) receive(g *generation, m *os.File) {
	buf := make([]byte, 4096)
	for {
		n, err := m.Read(buf)
		if g.ctx.Err() != nil {
			return
		}
		if n > 0 {
			select {
			case g.in <- slices.Clone(buf[:n]):
			case <-g.ctx.Done():
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// tx sends p on the console, as the board. It fails only when the board
// powered off; when no host listens or the line is gone, p is lost.
func (d *Device) tx(g *generation, p []byte) error {
	if err := g.ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	m, listening := d.master, len(d.hosts) > 0
	d.mu.Unlock()
	if m == nil || !listening {
		return nil
	}
	if _, err := m.Write(p); err != nil && g.ctx.Err() != nil {
		return g.ctx.Err()
	}
	return nil
}

// dropLine closes the console line for good, as a dying USB serial adapter.
func (d *Device) dropLine() {
	d.mu.Lock()
	m, keep := d.master, d.keep
	d.master, d.keep, d.dropped = nil, -1, true
	d.mu.Unlock()
	if m != nil {
		m.Close()
	}
	if keep >= 0 {
		unix.Close(keep)
	}
	d.env.Logf("sim: console line dropped (fault console-drop-after)")
}

// linkShare makes the shared directory p reachable in the board as
// /mnt/BASENAME too, a fixed place plans can name (a bus's device).
func linkShare(root, p string) error {
	link := filepath.Join(root, "mnt", filepath.Base(p))
	if cur, err := os.Readlink(link); err == nil && cur == p {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	_ = os.Remove(link)
	return os.Symlink(p, link)
}
