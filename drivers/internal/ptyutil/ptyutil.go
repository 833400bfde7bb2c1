// Package ptyutil opens pseudo-terminal pairs in raw mode, for simulators
// that stand in for serial hardware: the simulator owns the master side and
// a driver opens the slave path as its serial port.
package ptyutil

import (
	"fmt"
	"os"

	"github.com/creack/pty"
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

// Open opens a pseudo-terminal and puts its line discipline in raw mode
// (no echo, no line buffering, no CR/LF translation), as a serial driver
// would, so bytes pass unchanged even before a driver opens the port.
func Open() (*Pair, error) {
	m0, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	// pty.Open leaves the master in blocking mode, where Close does not
	// interrupt a pending Read. Make it non-blocking so that os.NewFile
	// registers it with the runtime poller.
	fd, err := unix.Dup(int(m0.Fd()))
	m0.Close()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		s.Close()
		return nil, fmt.Errorf("pty master: %w", err)
	}
	unix.CloseOnExec(fd)
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := MakeRaw(s); err != nil {
		m.Close()
		s.Close()
		return nil, err
	}
	return &Pair{Master: m, Slave: s, Path: s.Name()}, nil
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
	err = rc.Control(func(fd uintptr) { ioErr = makeRaw(int(fd)) })
	if err != nil {
		return err
	}
	if ioErr != nil {
		return fmt.Errorf("%s: %w", f.Name(), ioErr)
	}
	return nil
}

func makeRaw(fd int) error {
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
	err1 := p.Master.Close()
	err2 := p.Slave.Close()
	if err1 != nil {
		return err1
	}
	return err2
}
