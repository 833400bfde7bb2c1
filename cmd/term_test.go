package cmd

// A real pseudo-terminal for the commands a person runs at a board: the
// test types keystrokes into it and reads what jsplan shows, as a user's
// terminal emulator would.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ptyTerm is jsplan running on a pseudo-terminal of its own.
type ptyTerm struct {
	t        *testing.T
	ptm, pts *os.File
	cmd      *exec.Cmd
	mu       sync.Mutex
	screen   bytes.Buffer // everything jsplan showed
	mark     int          // expect searches from here
	change   chan struct{}
	done     chan struct{}
	code     int
	before   *unix.Termios // the terminal's settings before jsplan started
}

// startTerm runs jsplan with args on a new pty, as the session leader with
// the pty as its controlling terminal (as a shell starts it). The test
// keeps the pty's slave open to read its settings.
func (e *testEnv) startTerm(args ...string) *ptyTerm {
	e.t.Helper()
	ptm, pts, err := pty.Open()
	if err != nil {
		e.t.Fatalf("open a pty: %v", err)
	}
	_ = pty.Setsize(ptm, &pty.Winsize{Rows: 40, Cols: 160})
	before, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil {
		e.t.Fatal(err)
	}
	if before.Lflag&unix.ICANON == 0 || before.Lflag&unix.ECHO == 0 {
		e.t.Fatalf("a new pty is not in canonical mode with echo: lflag %#x", before.Lflag)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := exec.CommandContext(ctx, jsplanBin, args...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	p := &ptyTerm{t: e.t, ptm: ptm, pts: pts, cmd: cmd, change: make(chan struct{}), done: make(chan struct{}), before: before}
	if err := cmd.Start(); err != nil {
		cancel()
		e.t.Fatal(err)
	}
	go func() {
		b := make([]byte, 8192)
		for {
			n, err := ptm.Read(b)
			p.mu.Lock()
			p.screen.Write(b[:n])
			close(p.change)
			p.change = make(chan struct{})
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		p.code = exitCode(cmd.Wait())
		cancel()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		pts.Close()
		ptm.Close()
	})
	return p
}

// expect waits until the screen shows s after the mark and moves the mark
// past it; it fails the test after timeout.
func (p *ptyTerm) expect(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		i := bytes.Index(p.screen.Bytes()[p.mark:], []byte(s))
		if i >= 0 {
			p.mark += i + len(s)
			p.mu.Unlock()
			return
		}
		ch := p.change
		p.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			p.t.Fatalf("the terminal did not show %q within %v; it shows:\n%s", s, timeout, p.tail())
		}
	}
}

// tail is the end of the screen, for failure messages.
func (p *ptyTerm) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.screen.Bytes()
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.ReplaceAll(string(b), "\r", "")
}

// count is how often s is on the screen.
func (p *ptyTerm) count(s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Count(p.screen.Bytes(), []byte(s))
}

// send types s.
func (p *ptyTerm) send(s string) {
	p.t.Helper()
	if _, err := p.ptm.Write([]byte(s)); err != nil {
		p.t.Fatalf("typing %q: %v", s, err)
	}
}

// termios is the terminal's current settings.
func (p *ptyTerm) termios() *unix.Termios {
	p.t.Helper()
	tio, err := unix.IoctlGetTermios(int(p.pts.Fd()), unix.TCGETS)
	if err != nil {
		p.t.Fatal(err)
	}
	return tio
}

// requireRaw fails unless jsplan put the terminal in raw mode.
func (p *ptyTerm) requireRaw() {
	p.t.Helper()
	tio := p.termios()
	if tio.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 {
		p.t.Fatalf("the terminal is not raw while attached: lflag %#x", tio.Lflag)
	}
}

// requireSane fails unless the terminal has its settings from before
// jsplan started.
func (p *ptyTerm) requireSane() {
	p.t.Helper()
	now := p.termios()
	b := p.before
	if now.Iflag != b.Iflag || now.Oflag != b.Oflag || now.Cflag != b.Cflag || now.Lflag != b.Lflag || now.Cc != b.Cc {
		p.t.Fatalf("the terminal was not restored:\nbefore %+v\nafter  %+v", *b, *now)
	}
}

// wait waits for jsplan to exit and returns its exit status.
func (p *ptyTerm) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("jsplan did not exit within %v; the terminal shows:\n%s", timeout, p.tail())
	}
	return -1
}

func (p *ptyTerm) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}
