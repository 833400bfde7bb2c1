//go:build linux

package sim

import (
	"os"

	"golang.org/x/sys/unix"
)

// flushInput discards bytes received on the terminal fd but not yet read.
func flushInput(fd int) error {
	return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH)
}

// control runs fn on the descriptor of f without switching f to blocking
// mode (as f.Fd would).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
