// Package serialport opens serial ports for the drivers that use them (the
// serial driver's console, the DUTLink's console port): the port mode, a
// /dev/serial/by-id name resolved to a path, and a Stream that outlives the
// port, reopening it by its path when the adapter vanishes and comes back.
package serialport

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
	"github.com/jsplan/jsplan/drivers/internal/devpath"
)

// Defaults of a port's mode.
const (
	DefaultBaud          = 115200
	DefaultDataBits      = 8
	DefaultReopenTimeout = 30 * time.Second
)

// driverName names the driver in a Stream's errors.
const driverName = "serial"

// ByIDDir is where udev names serial ports by their USB identity.
const ByIDDir = "/dev/serial/by-id"

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
			return nil, drivers.Errorf(driverName, "open", "%s: %w", cfg.Path, err)
		}
		if !cfg.Lazy {
			return nil, drivers.Errorf(driverName, "open", "%s does not exist%s", cfg.Path, presentHint(filepath.Dir(cfg.Path)))
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
			return nil, 0, drivers.Errorf(driverName, "reopen", "waiting for %s: %w", s.cfg.Path, s.ctx.Err())
		case <-deadline:
			why := "it does not exist"
			if lastErr != nil && !errors.Is(lastErr, os.ErrNotExist) {
				why = lastErr.Error()
			}
			return nil, 0, drivers.Errorf(driverName, "reopen", "%s did not come back within %s (%s)", s.cfg.Path, limit, why)
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
				return written, drivers.Errorf(driverName, "write", "%w", err)
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

// sameErrno tells whether a and b fail with the same system error (the
// retry loop says why once, not on every tick).
func sameErrno(a, b error) bool {
	var ea, eb syscall.Errno
	return a != nil && errors.As(a, &ea) && errors.As(b, &eb) && ea == eb
}
