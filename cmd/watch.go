package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/jsplan/jsplan/internal/lock"
)

// A command that holds a board (apply, console) publishes the console log it
// writes, already masked, next to the board's lock: a symbolic link
// BOARD.lock.console to it. `jsplan console --watch BOARD` follows that log
// from any terminal on the host, read-only and without the lock.

// liveLink is where the log of the board's console is published.
func liveLink(dir, board string) string { return lock.Path(dir, board) + ".console" }

// publishConsole links the board's live console log (an absolute path) for
// watchers; the returned function removes the link, unless another holder
// replaced it since.
func publishConsole(dir, board, logPath string) (unpublish func()) {
	link := liveLink(dir, board)
	tmp := fmt.Sprintf("%s.%d", link, os.Getpid())
	_ = os.Remove(tmp)
	if err := os.Symlink(logPath, tmp); err != nil {
		return func() {}
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return func() {}
	}
	return func() {
		if t, err := os.Readlink(link); err == nil && t == logPath {
			_ = os.Remove(link)
		}
	}
}

// watchPoll is how often the watcher looks for new output and for the end
// of the run.
const watchPoll = 200 * time.Millisecond

// watchConsole follows the console log a holder of the board publishes,
// until the holder ends or the watcher is interrupted.
func watchConsole(c *cli.Context, board string) error {
	dir := lockDirOf(c)
	link := liveLink(dir, board)
	target, err := os.Readlink(link)
	h := lock.ReadHolder(dir, board)
	if err != nil || h == nil || !holderAlive(h) {
		if h != nil && holderAlive(h) {
			return exit(2, "%s is held by %s, which does not show its console (a jsplan lock session): nothing to watch", board, h)
		}
		return exit(2, "nothing holds %s's console now: no run to watch (jsplan console %s takes the board)", board, board)
	}
	f, err := openPublished(link, lock.Path(dir, board), target)
	if err != nil {
		return exit(3, "the console log of %s: %v", board, err)
	}
	defer f.Close()
	errw, out := c.App.ErrWriter, io.Writer(c.App.Writer)
	if !c.Bool("pass-escapes") {
		// what the board printed, filtered as jsplan console does
		out = &escFilter{w: c.App.Writer}
	}
	fmt.Fprintf(errw, "jsplan: watching the console of %s, held by %s (read-only; Ctrl-C stops watching)\n", board, h)
	// Start with the end of what was printed so far, from a line start.
	if st, err := f.Stat(); err == nil && st.Size() > 4096 {
		if _, err := f.Seek(st.Size()-4096, io.SeekStart); err == nil {
			b := make([]byte, 4096)
			n, _ := io.ReadFull(f, b)
			if i := bytes.IndexByte(b[:n], '\n'); i >= 0 {
				_, _ = out.Write(b[i+1 : n])
			}
		}
	}
	ctx, stop := signalContext()
	defer stop()
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			_, _ = out.Write(buf[:n])
			continue
		}
		if err != nil && err != io.EOF {
			return exit(3, "the console log of %s: %v", board, err)
		}
		if t, err := os.Readlink(link); err != nil || t != target || !holderAlive(h) {
			// the holder is done: what it wrote last, then the end
			_, _ = io.Copy(out, f)
			fmt.Fprintf(errw, "jsplan: %s no longer holds %s\n", lock.Printable(h.Plan), board)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(watchPoll):
		}
	}
}

// holderAlive tells whether the holder of a lock still runs (as far as this
// host can tell).
func holderAlive(h *lock.Holder) bool {
	if host, err := os.Hostname(); err == nil && h.Host != "" && h.Host != host {
		return true
	}
	err := syscall.Kill(h.PID, 0)
	return err == nil || err == syscall.EPERM
}

// openPublished opens the console log a holder published: the link must be
// ours or the lock file's owner's (in a lock directory shared by several
// users, root's 1777, anyone may plant a link), and its target a regular
// file (opening a FIFO or a device has effects).
func openPublished(link, lockFile, target string) (*os.File, error) {
	var lst, lk unix.Stat_t
	if err := unix.Lstat(link, &lst); err != nil {
		return nil, err
	}
	if lst.Uid != uint32(os.Geteuid()) {
		if err := unix.Stat(lockFile, &lk); err != nil || lk.Uid != lst.Uid {
			return nil, fmt.Errorf("%s is owned by uid %d, not by the holder of the lock: not followed", link, lst.Uid)
		}
	}
	fd, err := unix.Open(target, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: target, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file", target)
	}
	return os.NewFile(uintptr(fd), target), nil
}
