// Package ptyutil is jsplan's one pseudo-terminal opener, for the parts
// that stand in for serial hardware: the sim board's console and the
// DUTLink simulator. The simulator owns the master side; a driver (or the
// board's shell) opens the slave path as its serial port.
package ptyutil

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"
)

// Pair is an open pseudo-terminal.
type Pair struct {
	// Master is the simulator's side.
	Master *os.File
	// Slave is kept open by the simulator so the master does not see a
	// hang-up while the driver closes and reopens the port.
	Slave *os.File
	// Path is the slave's device path, e.g. /dev/pts/7: the driver's port.
	Path string
}

// OpenMaster creates a pseudo-terminal and returns its master, in
// non-blocking mode so that the Go runtime polls it (Close and deadlines
// then interrupt blocked reads and writes), and the path of its slave.
//
// creack/pty is not used: it switches the master to blocking mode, and a
// blocked Read on it could not be interrupted when a board powers off.
func OpenMaster() (master *os.File, slave string, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", fmt.Errorf("open /dev/ptmx: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("pty number: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("unlock pty: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), fmt.Sprintf("/dev/pts/%d", n), nil
}

// Open opens a pseudo-terminal with both sides and puts its line
// discipline in raw mode (no echo, no line buffering, no CR/LF
// translation), as a serial driver would, so bytes pass unchanged even
// before a driver opens the port.
func Open() (*Pair, error) {
	m, path, err := OpenMaster()
	if err != nil {
		return nil, err
	}
	s, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("open pty slave: %w", err)
	}
	if err := MakeRaw(s); err != nil {
		m.Close()
		s.Close()
		return nil, err
	}
	return &Pair{Master: m, Slave: s, Path: path}, nil
}

// MakeRaw puts the terminal f in raw mode.
func MakeRaw(f *os.File) error {
	// SyscallConn, unlike Fd, leaves the file in non-blocking mode, so
	// Close still interrupts a pending Read.
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) { ioErr = MakeRawFD(int(fd)) })
	if err != nil {
		return err
	}
	if ioErr != nil {
		return fmt.Errorf("%s: %w", f.Name(), ioErr)
	}
	return nil
}

// MakeRawFD puts the terminal fd into raw mode, like cfmakeraw(3): no
// echo, no line editing, no signals, no CR/LF translation, 8 bits.
func MakeRawFD(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	return nil
}

// Close closes both sides.
func (p *Pair) Close() error {
	var errs *multierror.Error
	if err := p.Master.Close(); err != nil {
		errs = multierror.Append(errs, err)
	}
	if err := p.Slave.Close(); err != nil {
		errs = multierror.Append(errs, err)
	}
	return errs.ErrorOrNil()
}
