// Package dutlink drives a DUTLink test harness (formerly the Jumpstarter
// board): it switches the board's power, moves the boot medium between
// host and board, pulls the reset line and bridges the board's serial
// console. It registers as "dutlink" and provides power, console and, when
// `disk` is set, storage; it also resets the board (Resetter).
//
// The harness is found by its USB serial number (the chip id, stable
// across re-enumeration) or by an explicit port:
//
//	drivers:
//	  dutlink:
//	    serial-number: e6058905
//	    disk: /dev/disk/by-id/usb-SanDisk_Extreme_0101AA-0:0   # the medium, as the host sees it
//
// It speaks the firmware's text shell on its CDC-ACM port (see Client).
// The protocol cannot tell whether the board is powered, so the driver
// does not implement drivers.PowerStater.
package dutlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	bugserial "go.bug.st/serial"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/internal/devpath"
	"github.com/jsplan/jsplan/drivers/internal/serialport"
	"github.com/jsplan/jsplan/schema"
)

// Name is the driver's registry name.
const Name = "dutlink"

// Defaults.
const (
	DefaultReplyTimeout = 2 * time.Second
	DefaultPowerTimeout = 30 * time.Second
	DefaultResetHold    = time.Second
	DefaultDiskWait     = 30 * time.Second
	DefaultPowerOn      = "on"
	DefaultPowerOff     = "off"
)

func init() {
	drivers.Register(drivers.Info{
		Name:     Name,
		Summary:  "DUTLink test harness: power, reset, storage switch and serial console over its USB control port.",
		Schema:   configSchema(),
		New:      func() drivers.Device { return newDevice() },
		Discover: discover,
	})
}

func newDevice() *Device { return &Device{sysfs: "/sys", devDir: "/dev", byIDDir: serialport.ByIDDir} }

// firmware configuration keys and their sizes in flash (config.rs).
var firmwareKeys = map[string]int{
	"name": 64, "tags": 256, "json": 512, "usb_console": 64,
	"power_on": 32, "power_off": 32, "power_rescue": 32,
}

func configSchema() map[string]any {
	return schema.Object("DUTLink test harness.", map[string]any{
		"serial-number": map[string]any{
			"type": "string", "pattern": "^[^/\\s]+$",
			"description": "USB serial number of the harness (its chip id; see `jsplan boards discover`). Preferred over port.",
		},
		"port": schema.NonEmpty("The control port instead of serial-number: an absolute path or a name under /dev/serial/by-id."),
		"disk": map[string]any{
			"type": "string", "pattern": "^/",
			"description": "The storage device as the host sees it when switched to the host, a /dev/disk/by-id/... path. Required for storage.",
		},
		"disk-wait":     schema.Duration("How long to wait for the disk to appear after switching the storage to the host (and to go away after switching it off).", DefaultDiskWait),
		"console-port":  schema.NonEmpty("A separate serial adapter for the board's console (the firmware's usb_console), used instead of the harness's console pass-through: an absolute path or a name under /dev/serial/by-id."),
		"console-baud":  map[string]any{"type": "integer", "minimum": 50, "default": serialport.DefaultBaud, "description": "Baud rate of console-port."},
		"reply-timeout": schema.Duration("How long to wait for the harness to answer a command.", DefaultReplyTimeout),
		"power-timeout": schema.Duration("How long a power command (which runs the configured power sequence) may take.", DefaultPowerTimeout),
		"reset-hold":    schema.Duration("How long the reset line is held low.", DefaultResetHold),
		"power-on": map[string]any{
			"type": "string", "enum": []any{"on", "force-on", "rescue"}, "default": DefaultPowerOn,
			"description": "The firmware power command used to switch on: on (runs the power_on sequence), force-on (just the switch), rescue (the power_rescue sequence).",
		},
		"power-off": map[string]any{
			"type": "string", "enum": []any{"off", "force-off"}, "default": DefaultPowerOff,
			"description": "The firmware power command used to switch off: off (runs the power_off sequence) or force-off.",
		},
		"firmware-config": map[string]any{
			"type":                 "object",
			"description":          "Values to store in the harness's flash configuration when they differ (e.g. power_on: p1,bL,w5,bZ). Values cannot contain spaces.",
			"propertyNames":        map[string]any{"enum": []any{"name", "tags", "json", "usb_console", "power_on", "power_off", "power_rescue"}},
			"additionalProperties": map[string]any{"type": "string", "pattern": "^\\S*$"},
		},
	})
}

// Device is a configured DUTLink harness.
type Device struct {
	SerialNumber   string            `yaml:"serial-number"`
	Port           string            `yaml:"port"`
	Disk           string            `yaml:"disk"`
	DiskWait       cfg.Duration      `yaml:"disk-wait"`
	ConsolePort    string            `yaml:"console-port"`
	ConsoleBaud    int               `yaml:"console-baud"`
	ReplyTimeout   cfg.Duration      `yaml:"reply-timeout"`
	PowerTimeout   cfg.Duration      `yaml:"power-timeout"`
	ResetHold      cfg.Duration      `yaml:"reset-hold"`
	PowerOnMode    string            `yaml:"power-on"`
	PowerOffMode   string            `yaml:"power-off"`
	FirmwareConfig map[string]string `yaml:"firmware-config"`

	sysfs, devDir, byIDDir string // roots, replaced in tests

	env    drivers.Env
	mu     sync.Mutex
	client *Client
	path   string // the control port in use
}

var (
	_ drivers.Power     = (*Device)(nil)
	_ drivers.Resetter  = (*Device)(nil)
	_ drivers.Console   = (*Device)(nil)
	_ drivers.Storage   = (*Device)(nil)
	_ drivers.Validator = (*Device)(nil)
)

// Capabilities lists storage only when a disk is configured.
func (d *Device) Capabilities() []drivers.Capability {
	caps := []drivers.Capability{drivers.CapPower, drivers.CapConsole}
	if d.Disk != "" {
		caps = append(caps, drivers.CapStorage)
	}
	return caps
}

// Validate checks the configuration without touching the hardware.
func (d *Device) Validate() error {
	var errs *drivers.FieldError
	switch {
	case d.SerialNumber == "" && d.Port == "":
		errs = errs.Also(drivers.ErrField("", "serial-number or port: one is required").WithDetail("see `jsplan boards discover`"))
	case d.SerialNumber != "" && d.Port != "":
		errs = errs.Also(drivers.ErrField("port", "serial-number and port: give only one"))
	case strings.ContainsAny(d.SerialNumber, "/ \t\n"):
		errs = errs.Also(drivers.ErrField("serial-number", "%q is not a USB serial number", d.SerialNumber))
	}
	for _, c := range []struct{ key, p string }{{"port", d.Port}, {"console-port", d.ConsolePort}} {
		if strings.Contains(c.p, "/") && !filepath.IsAbs(c.p) {
			errs = errs.Also(drivers.ErrField(c.key, "%q must be an absolute path or a bare name under %s", c.p, serialport.ByIDDir))
		}
	}
	if d.Disk != "" && !filepath.IsAbs(d.Disk) {
		errs = errs.Also(drivers.ErrField("disk", "%q must be an absolute path such as /dev/disk/by-id/usb-<id>", d.Disk))
	}
	if d.ConsoleBaud != 0 && d.ConsoleBaud < 50 {
		errs = errs.Also(drivers.ErrField("console-baud", "%d is not a baud rate", d.ConsoleBaud))
	}
	if _, _, err := d.powerOn(); err != nil {
		errs = errs.Also(drivers.ErrField("power-on", "%v", err))
	}
	if _, _, err := d.powerOff(); err != nil {
		errs = errs.Also(drivers.ErrField("power-off", "%v", err))
	}
	for _, dur := range []struct {
		key string
		v   cfg.Duration
	}{{"disk-wait", d.DiskWait}, {"reply-timeout", d.ReplyTimeout}, {"power-timeout", d.PowerTimeout}} {
		if dur.v != 0 && dur.v.D() < 10*time.Millisecond {
			errs = errs.Also(drivers.ErrField(dur.key, "%s is too short", dur.v).WithDetail("at least 10ms"))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d.FirmwareConfig)) {
		if err := checkFirmwareValue(k, d.FirmwareConfig[k]); err != nil {
			errs = errs.Also(drivers.ErrField(k, "%v", err).ViaField("firmware-config"))
		}
	}
	return errs.Err()
}

func checkFirmwareValue(key, value string) error {
	size, ok := firmwareKeys[key]
	if !ok {
		return fmt.Errorf("unknown key %q (known: json, name, power_off, power_on, power_rescue, tags, usb_console)", key)
	}
	if strings.ContainsAny(value, " \t\r\n") {
		return errors.New("the value cannot contain white space")
	}
	if len(value) > size {
		return fmt.Errorf("the value is %d bytes; the firmware keeps %d", len(value), size)
	}
	// The shell's line editor holds 512 bytes: "set-config KEY VALUE".
	if n := len("set-config ") + len(key) + 1 + len(value); n > 511 {
		return fmt.Errorf("the command would be %d bytes; the firmware's line holds 511", n)
	}
	for _, r := range value {
		if r < 0x20 || r > 0x7e {
			return errors.New("the value must be printable ASCII")
		}
	}
	return nil
}

func (d *Device) powerOn() (cmd, reply string, err error) {
	switch d.PowerOnMode {
	case "", "on":
		return "power on", "Device powered on", nil
	case "force-on":
		return "power force-on", "Device forced on", nil
	case "rescue":
		return "power rescue", "Device powered on to rescue", nil
	}
	return "", "", fmt.Errorf("%q is not one of on, force-on, rescue", d.PowerOnMode)
}

func (d *Device) powerOff() (cmd, reply string, err error) {
	switch d.PowerOffMode {
	case "", "off":
		return "power off", "Device powered off", nil
	case "force-off":
		return "power force-off", "Device forced off", nil
	}
	return "", "", fmt.Errorf("%q is not one of off, force-off", d.PowerOffMode)
}

// Open finds the harness, opens its control port and brings it to a known
// state (out of console mode, monitor off), then stores firmware-config.
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	d.env = env
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.connectLocked(ctx); err != nil {
		return err
	}
	c := d.client
	version, err := c.Command(ctx, "open", "version", "", 0)
	if err != nil {
		return err
	}
	env.Logf("dutlink: %s on %s, firmware %s", d.ident(), d.path, strings.TrimSpace(version))
	if len(d.FirmwareConfig) > 0 {
		if err := d.applyFirmwareConfig(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (d *Device) ident() string {
	if d.SerialNumber != "" {
		return "harness " + d.SerialNumber
	}
	return "harness"
}

// connectLocked resolves the control port, opens it and syncs.
func (d *Device) connectLocked(ctx context.Context) error {
	path, err := d.resolvePort()
	if err != nil {
		return err
	}
	port, err := bugserial.Open(path, &bugserial.Mode{BaudRate: 115200, DataBits: 8})
	if err != nil {
		return drivers.Errorf(Name, "open", "%s: %w", path, err)
	}
	if err := port.SetReadTimeout(bugserial.NoTimeout); err != nil {
		port.Close()
		return drivers.Errorf(Name, "open", "%s: %w", path, err)
	}
	c := NewClient(port, ClientOptions{ReplyTimeout: d.ReplyTimeout.Or(DefaultReplyTimeout), Log: d.env.Log})
	if err := c.Sync(ctx); err != nil {
		c.Close()
		return drivers.Errorf(Name, "open", "%s on %s does not answer: %w", d.ident(), path, err)
	}
	d.client, d.path = c, path
	return nil
}

func (d *Device) resolvePort() (string, error) {
	if d.Port != "" {
		p := serialport.ResolvePort(d.Port, d.byIDDir)
		if _, err := os.Stat(p); err != nil {
			return "", drivers.Errorf(Name, "open", "control port %s: %w", p, err)
		}
		return p, nil
	}
	boards, err := scanSysfs(d.sysfs, d.devDir)
	if err != nil {
		return "", drivers.Errorf(Name, "open", "looking for harness %s: %w", d.SerialNumber, err)
	}
	var seen []string
	for _, b := range boards {
		if b.Serial == d.SerialNumber {
			if b.TTY == "" {
				return "", drivers.Errorf(Name, "open", "harness %s is attached (%s) but has no tty yet; is the cdc_acm module loaded?", d.SerialNumber, b.SysPath)
			}
			return b.TTY, nil
		}
		seen = append(seen, b.Serial)
	}
	if len(seen) == 0 {
		return "", drivers.Errorf(Name, "open", "harness %s not found: no DUTLink (USB 2b23:1012) is attached", d.SerialNumber)
	}
	return "", drivers.Errorf(Name, "open", "harness %s not found; attached: %s", d.SerialNumber, strings.Join(seen, ", "))
}

// cl returns the client, reconnecting when its port failed (the harness
// was unplugged and plugged back).
func (d *Device) cl(ctx context.Context) (*Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return nil, drivers.Errorf(Name, "command", "the device is not open")
	}
	if err := d.client.Err(); err != nil {
		d.env.Logf("dutlink: control port %s failed (%v); reconnecting", d.path, err)
		d.client.Close()
		d.client = nil
		if err := d.connectLocked(ctx); err != nil {
			return nil, err
		}
	}
	return d.client, nil
}

// Client returns the protocol client of an open device, for commands the
// capability interfaces do not cover (set-config, meter, pins).
func (d *Device) Client(ctx context.Context) (*Client, error) { return d.cl(ctx) }

// Close leaves console mode and closes the control port.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return nil
	}
	err := d.client.Close()
	d.client = nil
	return err
}

func (d *Device) applyFirmwareConfig(ctx context.Context, c *Client) error {
	current, err := c.GetConfig(ctx)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(d.FirmwareConfig)) {
		want := d.FirmwareConfig[k]
		if current[k] == want {
			continue
		}
		if err := c.SetConfig(ctx, k, want); err != nil {
			return err
		}
		d.env.Logf("dutlink: stored %s=%q in the harness (was %q)", k, want, current[k])
	}
	return nil
}

// On switches the board on with the configured power command.
func (d *Device) On(ctx context.Context) error {
	cmd, reply, err := d.powerOn()
	if err != nil {
		return drivers.Errorf(Name, "on", "%w", err)
	}
	return d.power(ctx, "on", cmd, reply)
}

// Off switches the board off with the configured power command.
func (d *Device) Off(ctx context.Context) error {
	cmd, reply, err := d.powerOff()
	if err != nil {
		return drivers.Errorf(Name, "off", "%w", err)
	}
	return d.power(ctx, "off", cmd, reply)
}

// Rescue powers the board on with the firmware's power_rescue sequence
// (e.g. holding a recovery pin).
func (d *Device) Rescue(ctx context.Context) error {
	return d.power(ctx, "rescue", "power rescue", "Device powered on to rescue")
}

func (d *Device) power(ctx context.Context, op, cmd, reply string) error {
	c, err := d.cl(ctx)
	if err != nil {
		return err
	}
	_, err = c.Command(ctx, op, cmd, reply, d.PowerTimeout.Or(DefaultPowerTimeout))
	return err
}

// Reset pulls the reset line low for reset-hold, then lets it float. The
// line is released even when ctx ends or the first command fails, since
// the board may have acted on it without the reply arriving.
func (d *Device) Reset(ctx context.Context) error {
	c, err := d.cl(ctx)
	if err != nil {
		return err
	}
	hold := d.ResetHold.Or(DefaultResetHold)
	return c.Batch(ctx, func(b *Batch) error {
		_, lowErr := b.Command("reset", "set r l", "Set /RESET to LOW", 0)
		if lowErr == nil {
			t := time.NewTimer(hold)
			select {
			case <-t.C:
			case <-ctx.Done():
				lowErr = drivers.Errorf(Name, "reset", "interrupted while holding reset: %w", ctx.Err())
			}
			t.Stop()
		}
		rb := b
		if ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.Background(), 4*d.ReplyTimeout.Or(DefaultReplyTimeout))
			defer cancel()
			rb = &Batch{c: b.c, ctx: rctx}
		}
		_, relErr := rb.Command("reset", "set r z", "Set /RESET to HIGH IMPEDANCE", 0)
		if lowErr != nil {
			return lowErr
		}
		return relErr
	})
}

// OpenConsole returns the board's console: the harness's pass-through, or
// the console-port adapter when configured.
func (d *Device) OpenConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	if d.ConsolePort != "" {
		baud := d.ConsoleBaud
		if baud == 0 {
			baud = 115200
		}
		mode, err := serialport.Mode(baud, 8, "none", 1)
		if err != nil {
			return nil, drivers.Errorf(Name, "console", "%w", err)
		}
		// The adapter is often powered by the board: accept it absent.
		return serialport.OpenStream(ctx, serialport.StreamConfig{
			Path: serialport.ResolvePort(d.ConsolePort, d.byIDDir),
			Mode: mode,
			Lazy: true,
			Log:  d.env.Log,
		})
	}
	c, err := d.cl(ctx)
	if err != nil {
		return nil, err
	}
	return c.OpenConsole(ctx)
}

// AttachHost switches the storage off, waits for the disk to go away,
// switches it to the host and waits for the disk to appear and open.
func (d *Device) AttachHost(ctx context.Context) (string, error) {
	if d.Disk == "" {
		return "", drivers.Errorf(Name, "attach-host", "no disk configured (set disk: /dev/disk/by-id/...)")
	}
	c, err := d.cl(ctx)
	if err != nil {
		return "", err
	}
	wait := d.DiskWait.Or(DefaultDiskWait)
	if err := c.Storage(ctx, "off"); err != nil {
		return "", err
	}
	if err := devpath.WaitGone(ctx, d.Disk, wait); err != nil {
		if errors.Is(err, devpath.ErrTimeout) {
			return "", drivers.Errorf(Name, "attach-host", "%s is still present %s after switching the storage off: is it really this harness's storage device?", d.Disk, wait)
		}
		return "", drivers.Errorf(Name, "attach-host", "%w", err)
	}
	if err := c.Storage(ctx, "host"); err != nil {
		return "", err
	}
	start := time.Now()
	if err := devpath.WaitOpenable(ctx, d.Disk, wait); err != nil {
		return "", drivers.Errorf(Name, "attach-host", "after switching the storage to the host: %w", err)
	}
	d.env.Logf("dutlink: %s ready after %s", d.Disk, time.Since(start).Round(time.Millisecond))
	return d.Disk, nil
}

// AttachBoard flushes the host's caches, then switches the storage off and
// to the board.
func (d *Device) AttachBoard(ctx context.Context) error {
	c, err := d.cl(ctx)
	if err != nil {
		return err
	}
	syscall.Sync()
	return c.Batch(ctx, func(b *Batch) error {
		if _, err := b.Command("attach-board", "storage off", "storage disconnected", 0); err != nil {
			return err
		}
		_, err := b.Command("attach-board", "storage dut", "storage connected to device under test", 0)
		return err
	})
}

// SetDefaults fills in the defaults the schema declares.
func (d *Device) SetDefaults() {
	for _, f := range []struct {
		v   *cfg.Duration
		def time.Duration
	}{{&d.DiskWait, DefaultDiskWait}, {&d.ReplyTimeout, DefaultReplyTimeout}, {&d.PowerTimeout, DefaultPowerTimeout}, {&d.ResetHold, DefaultResetHold}} {
		if *f.v == 0 {
			*f.v = cfg.Duration(f.def)
		}
	}
	if d.ConsoleBaud == 0 {
		d.ConsoleBaud = serialport.DefaultBaud
	}
	if d.PowerOnMode == "" {
		d.PowerOnMode = DefaultPowerOn
	}
	if d.PowerOffMode == "" {
		d.PowerOffMode = DefaultPowerOff
	}
}
