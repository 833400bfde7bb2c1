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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	bugserial "go.bug.st/serial"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/internal/devpath"
	"github.com/jsplan/jsplan/schema"
)

// Name is the driver's registry name.
const Name = "serial"

// ByIDDir is where udev names serial ports by their USB identity.
const ByIDDir = "/dev/serial/by-id"

// Defaults.
const (
	DefaultBaud          = 115200
	DefaultDataBits      = 8
	DefaultParity        = "none"
	DefaultStopBits      = 1
	DefaultReopenTimeout = 30 * time.Second
)

func init() {
	drivers.Register(drivers.Info{
		Name:     Name,
		Summary:  "Console on a serial port (USB-UART adapter, UART), reopened when it re-enumerates.",
		Provides: []drivers.Capability{drivers.CapConsole},
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
	return Mode(d.Baud, d.DataBits, d.Parity, d.StopBits)
}

// Mode builds a port mode; zero values take the defaults (115200 8N1).
func Mode(baud, dataBits int, parity string, stopBits float64) (*bugserial.Mode, error) {
	m := &bugserial.Mode{BaudRate: baud, DataBits: dataBits}
	if m.BaudRate == 0 {
		m.BaudRate = DefaultBaud
	}
	if m.BaudRate < 50 {
		return nil, drivers.ErrField("baud", "%d is not a baud rate", baud)
	}
	if m.DataBits == 0 {
		m.DataBits = DefaultDataBits
	}
	if m.DataBits < 5 || m.DataBits > 8 {
		return nil, drivers.ErrField("data-bits", "%d is not one of 5, 6, 7, 8", dataBits)
	}
	switch parity {
	case "", "none":
		m.Parity = bugserial.NoParity
	case "odd":
		m.Parity = bugserial.OddParity
	case "even":
		m.Parity = bugserial.EvenParity
	case "mark":
		m.Parity = bugserial.MarkParity
	case "space":
		m.Parity = bugserial.SpaceParity
	default:
		return nil, drivers.ErrField("parity", "%q is not one of none, odd, even, mark, space", parity)
	}
	switch stopBits {
	case 0, 1:
		m.StopBits = bugserial.OneStopBit
	case 1.5:
		m.StopBits = bugserial.OnePointFiveStopBits
	case 2:
		m.StopBits = bugserial.TwoStopBits
	default:
		return nil, drivers.ErrField("stop-bits", "%v is not one of 1, 1.5, 2", stopBits)
	}
	return m, nil
}

// ResolvePort turns a port setting into a path: a bare name is taken
// under byIDDir, an absolute path is kept.
func ResolvePort(port, byIDDir string) string {
	if strings.Contains(port, "/") {
		return port
	}
	return filepath.Join(byIDDir, port)
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
	s, err := OpenStream(ctx, StreamConfig{
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

// StreamConfig configures OpenStream.
type StreamConfig struct {
	// Path of the port.
	Path string
	// Mode of the port (see Mode).
	Mode *bugserial.Mode
	// Lazy accepts an absent port at open time.
	Lazy bool
	// ReopenTimeout bounds how long a Write waits for a vanished port.
	ReopenTimeout time.Duration
	// Log, when set, receives messages about the port going and coming.
	Log func(format string, args ...any)
}

// Stream is a serial port that reopens itself by path when it vanishes.
// Read waits for the port to come back for as long as the stream is open
// (and the context given to OpenStream lasts); Write waits up to
// ReopenTimeout. Read, Write and Close may be called from different
// goroutines; one reader and one writer at a time.
type Stream struct {
	cfg StreamConfig
	ctx context.Context

	mu       sync.Mutex // guards port, gen, closed, lastErr
	port     bugserial.Port
	gen      int
	closed   bool
	closedCh chan struct{}
	lastErr  error

	wmu sync.Mutex // held while writing to or closing a port
}

// OpenStream opens the port at cfg.Path. When the port is absent it fails,
// listing the ports that are present, unless cfg.Lazy is set.
func OpenStream(ctx context.Context, cfg StreamConfig) (*Stream, error) {
	if cfg.Mode == nil {
		cfg.Mode = &bugserial.Mode{BaudRate: DefaultBaud}
	}
	if cfg.ReopenTimeout <= 0 {
		cfg.ReopenTimeout = DefaultReopenTimeout
	}
	if ctx == nil {
		ctx = context.Background()
	}
	s := &Stream{cfg: cfg, ctx: ctx, closedCh: make(chan struct{})}
	p, err := s.tryOpen()
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, drivers.Errorf(Name, "open", "%s: %w", cfg.Path, err)
		}
		if !cfg.Lazy {
			return nil, drivers.Errorf(Name, "open", "%s does not exist%s", cfg.Path, presentHint(filepath.Dir(cfg.Path)))
		}
		s.logf("serial: %s is absent; it will be opened when it appears", cfg.Path)
		return s, nil
	}
	s.port = p
	s.gen = 1
	return s, nil
}

func presentHint(dir string) string {
	entries, _ := devpath.List(dir)
	if len(entries) == 0 {
		return fmt.Sprintf(" (no ports in %s)", dir)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name
	}
	return fmt.Sprintf(" (present in %s: %s)", dir, strings.Join(names, ", "))
}

func (s *Stream) logf(format string, args ...any) {
	if s.cfg.Log != nil {
		s.cfg.Log(format, args...)
	}
}

func (s *Stream) tryOpen() (bugserial.Port, error) {
	if _, err := os.Stat(s.cfg.Path); err != nil {
		return nil, err
	}
	p, err := bugserial.Open(s.cfg.Path, s.cfg.Mode)
	if err != nil {
		return nil, err
	}
	if err := p.SetReadTimeout(bugserial.NoTimeout); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// errStreamClosed is returned by Write after Close.
var errStreamClosed = errors.New("serial stream closed")

// current returns the open port, opening it (polling until it appears)
// when needed. limit bounds the wait; zero waits until Close or the
// stream's context ends.
func (s *Stream) current(limit time.Duration) (bugserial.Port, int, error) {
	var deadline <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(devpath.Interval)
	defer tick.Stop()
	start := time.Now()
	var lastErr error
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, 0, errStreamClosed
		}
		if s.port != nil {
			p, g := s.port, s.gen
			s.mu.Unlock()
			return p, g, nil
		}
		s.mu.Unlock()

		p, err := s.tryOpen()
		if err == nil {
			s.mu.Lock()
			if s.closed || s.port != nil {
				// Closed meanwhile, or another goroutine reopened first.
				s.mu.Unlock()
				p.Close()
				continue
			}
			s.port = p
			s.gen++
			g := s.gen
			s.mu.Unlock()
			s.logf("serial: %s is back after %s", s.cfg.Path, time.Since(start).Round(time.Millisecond))
			return p, g, nil
		}
		if !errors.Is(err, os.ErrNotExist) && !sameErrno(lastErr, err) {
			// Present but not openable (udev still setting permissions,
			// or another program holds it): keep trying, say why once.
			s.logf("serial: %s: %v; retrying", s.cfg.Path, err)
		}
		lastErr = err
		select {
		case <-s.closedCh:
			return nil, 0, errStreamClosed
		case <-s.ctx.Done():
			return nil, 0, drivers.Errorf(Name, "reopen", "waiting for %s: %w", s.cfg.Path, s.ctx.Err())
		case <-deadline:
			why := "it does not exist"
			if lastErr != nil && !errors.Is(lastErr, os.ErrNotExist) {
				why = lastErr.Error()
			}
			return nil, 0, drivers.Errorf(Name, "reopen", "%s did not come back within %s (%s)", s.cfg.Path, limit, why)
		case <-tick.C:
		}
	}
}

// drop closes the port of generation gen after it failed with err.
// The caller holds s.wmu.
func (s *Stream) dropLocked(gen int, err error) {
	s.mu.Lock()
	if s.closed || s.port == nil || s.gen != gen {
		s.mu.Unlock()
		return
	}
	p := s.port
	s.port = nil
	s.lastErr = err
	s.mu.Unlock()
	p.Close()
	var pe *bugserial.PortError
	if errors.As(err, &pe) && pe.Code() == bugserial.PortClosed {
		err = errors.New("hang-up")
	}
	s.logf("serial: %s went away (%v); waiting for it to come back", s.cfg.Path, err)
}

// Read reads from the port, waiting across the port's absences. It
// returns io.EOF after Close.
func (s *Stream) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		p, gen, err := s.current(0)
		if errors.Is(err, errStreamClosed) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		n, err := p.Read(b)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			continue // a read timeout: no data yet
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return 0, io.EOF
		}
		s.wmu.Lock()
		s.dropLocked(gen, err)
		s.wmu.Unlock()
	}
}

// Write writes all of b, reopening the port if it vanished, waiting up to
// ReopenTimeout for it.
func (s *Stream) Write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	for written < len(b) {
		p, gen, err := s.current(s.cfg.ReopenTimeout)
		if err != nil {
			if errors.Is(err, errStreamClosed) {
				return written, drivers.Errorf(Name, "write", "%w", err)
			}
			return written, err
		}
		n, err := p.Write(b[written:])
		if n > 0 {
			written += n
		}
		if err != nil {
			s.dropLocked(gen, err)
		}
	}
	return written, nil
}

// Close closes the stream and its port. A blocked Read returns io.EOF.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closedCh)
	p := s.port
	s.port = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return p.Close()
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

// sameErrno tells whether a and b fail with the same system error (the
// retry loop says why once, not on every tick).
func sameErrno(a, b error) bool {
	var ea, eb syscall.Errno
	return a != nil && errors.As(a, &ea) && errors.As(b, &eb) && ea == eb
}
