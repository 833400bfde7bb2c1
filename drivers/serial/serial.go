// Package serial is a console driver for a serial port: a USB-UART
// adapter, an on-board UART, a board's own USB gadget console. It registers
// as "serial" and provides console.
//
// The console stream outlives the port: when the adapter vanishes (it is
// powered by the board, or the board's USB console re-enumerates after a
// power cycle), reads wait and the port is reopened by its path as soon as
// it is back. Name the port by its /dev/serial/by-id link, which survives
// re-enumeration, unlike /dev/ttyUSB0:
//
//	drivers:
//	  serial:
//	    port: usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0   # under /dev/serial/by-id
//	    baud: 115200
package serial

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"

	bugserial "go.bug.st/serial"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/internal/devpath"
	"github.com/jsplan/jsplan/drivers/internal/serialport"
	"github.com/jsplan/jsplan/schema"
)

// Name is the driver's registry name.
const Name = "serial"

// ByIDDir is where udev names serial ports by their USB identity.
const ByIDDir = serialport.ByIDDir

// ResolvePort turns a port setting into a path: a bare name is taken
// under byIDDir, an absolute path is kept.
func ResolvePort(port, byIDDir string) string { return serialport.ResolvePort(port, byIDDir) }

// Defaults.
const (
	DefaultBaud          = serialport.DefaultBaud
	DefaultDataBits      = serialport.DefaultDataBits
	DefaultParity        = "none"
	DefaultStopBits      = 1
	DefaultReopenTimeout = serialport.DefaultReopenTimeout
)

func init() {
	drivers.Register(drivers.Info{
		Name:     Name,
		Summary:  "Console on a serial port (USB-UART adapter, UART), reopened when it re-enumerates.",
		Schema:   configSchema(),
		New:      func() drivers.Device { return &Device{byIDDir: ByIDDir} },
		Discover: func(ctx context.Context) ([]drivers.Found, error) { return discover(ByIDDir) },
	})
}

func configSchema() map[string]any {
	return schema.Object("Console on a serial port.", map[string]any{
		"port": map[string]any{
			"type":        "string",
			"minLength":   1,
			"description": "The port: an absolute path, or a name under /dev/serial/by-id (preferred: it survives re-enumeration).",
		},
		"baud": map[string]any{
			"type": "integer", "minimum": 50, "maximum": 20000000, "default": DefaultBaud,
			"description": "Baud rate.",
		},
		"data-bits": map[string]any{
			"type": "integer", "enum": []any{5, 6, 7, 8}, "default": DefaultDataBits,
			"description": "Data bits per character.",
		},
		"parity": map[string]any{
			"type": "string", "enum": []any{"none", "odd", "even", "mark", "space"}, "default": DefaultParity,
			"description": "Parity.",
		},
		"stop-bits": map[string]any{
			"type": "number", "enum": []any{1, 1.5, 2}, "default": DefaultStopBits,
			"description": "Stop bits (1.5 is not supported by Linux).",
		},
		"lazy-open": map[string]any{
			"type": "boolean", "default": false,
			"description": "Accept a port that is absent when the console is opened (an adapter powered by the board) and open it when it appears. Without it an absent port is an error.",
		},
		"reopen-timeout": schema.Duration("How long a write waits for a vanished port to come back. Reads wait as long as the console is open.", DefaultReopenTimeout),
	}, "port")
}

// Device is a configured serial console.
type Device struct {
	Port          string       `yaml:"port"`
	Baud          int          `yaml:"baud"`
	DataBits      int          `yaml:"data-bits"`
	Parity        string       `yaml:"parity"`
	StopBits      float64      `yaml:"stop-bits"`
	LazyOpen      bool         `yaml:"lazy-open"`
	ReopenTimeout cfg.Duration `yaml:"reopen-timeout"`

	byIDDir string
	env     drivers.Env
}

var (
	_ drivers.Console   = (*Device)(nil)
	_ drivers.Validator = (*Device)(nil)
)

// Validate checks the configuration without opening the port.
func (d *Device) Validate() error {
	var errs *drivers.FieldError
	switch {
	case d.Port == "":
		errs = errs.Also(drivers.ErrMissingField("port").WithDetail("a /dev/serial/by-id name or an absolute path"))
	case strings.Contains(d.Port, "/") && !filepath.IsAbs(d.Port):
		errs = errs.Also(drivers.ErrField("port", "%q must be an absolute path or a bare name under %s", d.Port, ByIDDir))
	case strings.HasPrefix(d.Port, "/dev/ttyUSB") || strings.HasPrefix(d.Port, "/dev/ttyACM"):
		errs = errs.Also(drivers.WarnField("port", "%s is the name the kernel gave the adapter this boot: another USB serial adapter plugged first takes it", d.Port).
			WithDetail("name the port by its link under %s (jsplan boards discover lists them)", ByIDDir))
	}
	if _, err := d.mode(); err != nil {
		var fe *drivers.FieldError
		if !errors.As(err, &fe) {
			fe = drivers.ErrField("", "%v", err)
		}
		errs = errs.Also(fe)
	}
	return errs.Err()
}

// mode builds the serial mode from the configuration.
func (d *Device) mode() (*bugserial.Mode, error) {
	return serialport.Mode(d.Baud, d.DataBits, d.Parity, d.StopBits)
}

// Capabilities: the device serves console, whatever its configuration.
func (d *Device) Capabilities() []drivers.Capability {
	return []drivers.Capability{drivers.CapConsole}
}

// Open remembers the board's environment; the port is opened by
// OpenConsole.
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	d.env = env
	return nil
}

// Close does nothing; streams are closed by their holders.
func (d *Device) Close() error { return nil }

// OpenConsole opens the port and returns a stream that survives the port
// vanishing and coming back. ctx bounds the waits for the port to come
// back, for the stream's whole life.
func (d *Device) OpenConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	mode, err := d.mode()
	if err != nil {
		return nil, drivers.Errorf(Name, "open", "%w", err)
	}
	dir := d.byIDDir
	if dir == "" {
		dir = ByIDDir
	}
	s, err := serialport.OpenStream(ctx, serialport.StreamConfig{
		Path:          ResolvePort(d.Port, dir),
		Mode:          mode,
		Lazy:          d.LazyOpen,
		ReopenTimeout: d.ReopenTimeout.Or(DefaultReopenTimeout),
		Log:           d.env.Log,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// discover lists the serial ports under byID, leaving out DUTLink control
// ports (they belong to the dutlink driver).
func discover(byID string) ([]drivers.Found, error) {
	entries, err := devpath.List(byID)
	if err != nil {
		return nil, drivers.Errorf(Name, "discover", "%w", err)
	}
	var found []drivers.Found
	for _, e := range entries {
		if e.Target == "" || strings.Contains(e.Name, "_Jumpstarter_") {
			continue
		}
		found = append(found, drivers.Found{
			Driver:      Name,
			ID:          e.Name,
			Description: "serial port " + e.Target,
			Config:      map[string]any{"port": e.Name},
		})
	}
	return found, nil
}

// SetDefaults fills in the defaults the schema declares.
func (d *Device) SetDefaults() {
	if d.Baud == 0 {
		d.Baud = DefaultBaud
	}
	if d.DataBits == 0 {
		d.DataBits = DefaultDataBits
	}
	if d.Parity == "" {
		d.Parity = DefaultParity
	}
	if d.StopBits == 0 {
		d.StopBits = DefaultStopBits
	}
	if d.ReopenTimeout == 0 {
		d.ReopenTimeout = cfg.Duration(DefaultReopenTimeout)
	}
}
