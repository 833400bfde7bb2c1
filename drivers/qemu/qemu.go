// Package qemu is the jsplan driver of a virtual board: a QEMU x86_64 machine
// that boots from a raw disk file, as a real board boots from its SD card.
//
// It serves every capability: power (starting and stopping QEMU, a reset and
// the power state through QMP), the serial console (a relay that outlives
// each QEMU process), storage (the disk file, writable by the host only while
// the machine is off) and, when configured, the network (SSH forwarded from a
// port on 127.0.0.1 to the guest).
//
// A board in an inventory:
//
//	drivers:
//	  qemu:
//	    memory: 256
//	    network: {ssh-port: 2222}
//
// The driver registers itself as "qemu"; programs opt in with a blank import.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
)

const driverName = "qemu"

// Defaults of the configuration.
const (
	DefaultAccel            = "auto"
	DefaultMachine          = "q35"
	DefaultCPU              = "max"
	DefaultMemory           = 256 // MiB
	DefaultBinary           = "qemu-system-x86_64"
	DefaultPowerdownTimeout = 5 * time.Second
	defaultDiskName         = "disk.img"
	defaultSSHUser          = "root"
)

func init() {
	drivers.Register(drivers.Info{
		Name:    driverName,
		Summary: "virtual x86_64 board: QEMU booting a raw disk file (power, console, storage, network over 127.0.0.1)",
		Schema:  configSchema(),
		New:     func() drivers.Device { return new(Device) },
	})
}

// Config is the configuration of a qemu board in a Boards inventory.
type Config struct {
	// Disk is the raw disk image the machine boots from; relative paths are
	// relative to the inventory. Default: disk.img in the board's state dir.
	Disk string `yaml:"disk"`
	// Machine is the QEMU machine type (-machine). Default: q35.
	Machine string `yaml:"machine"`
	// CPU is the QEMU CPU model (-cpu). Default: max.
	CPU string `yaml:"cpu"`
	// Memory is the guest RAM in MiB. Default: 256.
	Memory int `yaml:"memory"`
	// Accel is auto (KVM when a probe guest runs under it, else TCG), kvm or tcg.
	Accel string `yaml:"accel"`
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string `yaml:"extra-args"`
	// Network, when set, forwards a port on 127.0.0.1 to the guest's SSH.
	Network *NetworkConfig `yaml:"network"`
	// QEMUBinary is the emulator to run. Default: qemu-system-x86_64.
	QEMUBinary string `yaml:"qemu-binary"`
	// PowerdownTimeout is how long Off waits for the guest to shut down after
	// the ACPI power button before it stops QEMU. "0" skips it. Default: 5s.
	PowerdownTimeout *cfg.Duration `yaml:"powerdown-timeout"`
}

// NetworkConfig is the SSH access to the guest.
type NetworkConfig struct {
	// SSHPort is the port on 127.0.0.1 forwarded to the guest's port 22.
	SSHPort int `yaml:"ssh-port"`
	// User is the SSH user. Default: root.
	User string `yaml:"user"`
	// KeyFile is the SSH private key; relative to the inventory.
	KeyFile string `yaml:"key-file"`
}

// Device is a qemu board. Its exported fields are the configuration.
type Device struct {
	Config `yaml:",inline"`

	env       drivers.Env
	disk      string
	keyFile   string
	binary    string
	runDir    string
	powerdown time.Duration
	console   *relay
	probe     *accelProbe // whether KVM runs a guest here

	mu     sync.Mutex // serialises power and storage operations
	vm     *vmProcess // the running QEMU, nil when off
	onHost bool       // the disk is attached to the host
	opened bool
}

var (
	machineRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._=,-]*$`)
	cpuRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._=,+-]*$`)
	userRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9._-]*$`)
)

// Validate checks the configuration without starting anything.
func (d *Device) Validate() error {
	var errs *drivers.FieldError
	bad := func(path, format string, args ...any) { errs = errs.Also(drivers.ErrField(path, format, args...)) }
	if d.Machine != "" && !machineRE.MatchString(d.Machine) {
		bad("machine", "%q: want a QEMU machine type such as q35", d.Machine)
	}
	if d.CPU != "" && !cpuRE.MatchString(d.CPU) {
		bad("cpu", "%q: want a QEMU CPU model such as max", d.CPU)
	}
	if d.Memory != 0 && (d.Memory < 16 || d.Memory > 1<<20) {
		bad("memory", "%d: want MiB from 16 to 1048576", d.Memory)
	}
	switch d.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		bad("accel", "%q: want auto, kvm or tcg", d.Accel)
	}
	for i, a := range d.ExtraArgs {
		switch a {
		case "":
			bad(fmt.Sprintf("extra-args[%d]", i), "is empty")
		case "-daemonize", "--daemonize":
			bad(fmt.Sprintf("extra-args[%d]", i), "%s is not allowed: the driver must own the QEMU process", a)
		}
	}
	if n := d.Network; n != nil {
		if n.SSHPort < 1 || n.SSHPort > 65535 {
			bad("network.ssh-port", "%d: want a port from 1 to 65535", n.SSHPort)
		}
		if n.User != "" && !userRE.MatchString(n.User) {
			bad("network.user", "%q is not a user name", n.User)
		}
	}
	if t := d.PowerdownTimeout; t != nil && t.D() > 10*time.Minute {
		bad("powerdown-timeout", "%s: want a duration from 0 to 10m, e.g. 5s", t)
	}
	return errs.Err()
}

// Capabilities lists what the board serves: network only when configured.
func (d *Device) Capabilities() []drivers.Capability {
	caps := []drivers.Capability{drivers.CapPower, drivers.CapConsole, drivers.CapStorage}
	if d.Network != nil {
		caps = append(caps, drivers.CapNetwork)
	}
	return caps
}

// Open resolves paths and starts the console relay. QEMU itself starts with On.
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opened {
		return errors.New("qemu: device is already open")
	}
	if err := drivers.Fatal(d.Validate()); err != nil {
		return err
	}
	d.env = env
	d.disk = d.Disk
	if d.disk == "" {
		if env.StateDir == "" {
			return errors.New("qemu: no disk configured and no state dir")
		}
		d.disk = filepath.Join(env.StateDir, defaultDiskName)
	} else {
		d.disk = resolve(env.BaseDir, d.disk)
	}
	if d.Network != nil && d.Network.KeyFile != "" {
		d.keyFile = resolve(env.BaseDir, d.Network.KeyFile)
	}
	// QEMU runs in the run dir and ssh wherever its caller is: relative
	// paths (a relative state dir) would name other files there.
	for _, p := range []*string{&d.disk, &d.keyFile} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	bin := d.QEMUBinary
	if bin == "" {
		bin = DefaultBinary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return drivers.Errorf(driverName, "open", "%s not found (Debian package qemu-system-x86): %v", bin, err)
	}
	d.binary = path
	if d.probe == nil {
		d.probe = kvmProbe
	}
	d.powerdown = cfg.OrDefault(d.PowerdownTimeout, DefaultPowerdownTimeout)
	// Unix socket paths are short (108 bytes): keep them in a short temp dir.
	d.runDir, err = os.MkdirTemp("", "jsplan-qemu-")
	if err != nil {
		return drivers.Errorf(driverName, "open", "%v", err)
	}
	d.console, err = newRelay(filepath.Join(d.runDir, "console.sock"), env.Logf)
	if err != nil {
		os.RemoveAll(d.runDir)
		return drivers.Errorf(driverName, "open", "console socket: %v", err)
	}
	d.opened = true
	return nil
}

// Close stops QEMU if it runs and releases the console.
func (d *Device) Close() error {
	d.mu.Lock()
	opened := d.opened
	d.mu.Unlock()
	if !opened {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.powerdown+15*time.Second)
	defer cancel()
	var errs *multierror.Error
	if err := d.Off(ctx); err != nil {
		errs = multierror.Append(errs, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.console.close(); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("console: %w", err))
	}
	if err := os.RemoveAll(d.runDir); err != nil {
		errs = multierror.Append(errs, err)
	}
	d.opened = false
	return errs.ErrorOrNil()
}

// OpenConsole returns the serial console. The stream stays valid while the
// board is powered off and on again; a new call ends the previous stream.
func (d *Device) OpenConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.opened {
		return nil, errors.New("qemu: device is not open")
	}
	return d.console.open()
}

// AttachHost gives the disk file to the host for writing and returns its
// path. It refuses while the machine runs. A missing disk file is created
// empty.
func (d *Device) AttachHost(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.opened {
		return "", errors.New("qemu: device is not open")
	}
	if d.runningLocked() {
		return "", fmt.Errorf("qemu: cannot attach the disk to the host while the board is powered on (pid %d): power it off first", d.vm.pid)
	}
	if err := os.MkdirAll(filepath.Dir(d.disk), 0o755); err != nil {
		return "", drivers.Errorf(driverName, "attach host", "%v", err)
	}
	f, err := os.OpenFile(d.disk, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", drivers.Errorf(driverName, "attach host", "%v", err)
	}
	f.Close()
	d.onHost = true
	return d.disk, nil
}

// AttachBoard gives the disk back to the board.
func (d *Device) AttachBoard(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onHost = false
	return nil
}

// Endpoint returns the SSH endpoint of the guest: 127.0.0.1 and the
// forwarded port. The guest's host key changes with each image, so host key
// checking is off.
func (d *Device) Endpoint(ctx context.Context) (drivers.Endpoint, error) {
	if d.Network == nil {
		return drivers.Endpoint{}, errors.New("qemu: no network configured (set network.ssh-port)")
	}
	user := d.Network.User
	if user == "" {
		user = defaultSSHUser
	}
	return drivers.Endpoint{
		Host:    "127.0.0.1",
		Port:    d.Network.SSHPort,
		User:    user,
		KeyFile: d.keyFile,
		Options: []string{"StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"},
	}, nil
}

// Transient reports true: QEMU is a child of the process that opened the
// board and is stopped when it is closed.
func (d *Device) Transient() bool { return true }

// DiskPath returns the resolved path of the disk file (after Open).
func (d *Device) DiskPath() string { return d.disk }

func resolve(base, p string) string {
	if filepath.IsAbs(p) || base == "" {
		return p
	}
	return filepath.Join(base, p)
}

// SetDefaults fills in the defaults the schema declares.
func (d *Device) SetDefaults() {
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&d.Machine, DefaultMachine}, {&d.CPU, DefaultCPU}, {&d.Accel, DefaultAccel}, {&d.QEMUBinary, DefaultBinary},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	if d.Memory == 0 {
		d.Memory = DefaultMemory
	}
	if d.PowerdownTimeout == nil {
		t := cfg.Duration(DefaultPowerdownTimeout)
		d.PowerdownTimeout = &t
	}
	if d.Network != nil && d.Network.User == "" {
		d.Network.User = defaultSSHUser
	}
}
