//go:build linux

package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/internal/procguard"
)

// waitLimit bounds every wait in the tests, so a broken board cannot hang
// them; passing tests never get near it.
const waitLimit = 20 * time.Second

// console reads the host side of a board console in the background and
// lets a test wait for text to appear.
type console struct {
	t    testing.TB
	rw   io.ReadWriteCloser
	mu   sync.Mutex
	buf  []byte // received, not consumed yet
	err  error  // why reading stopped
	news chan struct{}
	done chan struct{}
}

func newConsole(t testing.TB, rw io.ReadWriteCloser) *console {
	c := &console{t: t, rw: rw, news: make(chan struct{}, 1), done: make(chan struct{})}
	go c.pump()
	t.Cleanup(func() {
		c.rw.Close()
		<-c.done
	})
	return c
}

func (c *console) pump() {
	defer close(c.done)
	b := make([]byte, 4096)
	for {
		n, err := c.rw.Read(b)
		c.mu.Lock()
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			c.err = err
		}
		c.mu.Unlock()
		select {
		case c.news <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
		if n == 0 {
			// (0, nil) means "no data yet" for some readers: not EOF.
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// waitFor reads until s appears and returns everything up to and including
// it; that text is consumed. It fails the test on a read error or timeout.
func (c *console) waitFor(s string) string {
	c.t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if i := bytes.Index(c.buf, []byte(s)); i >= 0 {
			out := string(c.buf[:i+len(s)])
			c.buf = c.buf[i+len(s):]
			c.mu.Unlock()
			return out
		}
		buf, err := string(c.buf), c.err
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("console read failed (%v) before %q appeared; got %q", err, s, buf)
		}
		select {
		case <-c.news:
		case <-deadline.C:
			stack := make([]byte, 1<<20)
			stack = stack[:runtime.Stack(stack, true)]
			c.t.Fatalf("timed out waiting for %q on the console; got %q\ngoroutines:\n%s", s, buf, stack)
		}
	}
}

// absent checks that s does not appear while waiting for d.
func (c *console) absent(s string, d time.Duration) {
	c.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		buf := string(c.buf)
		c.mu.Unlock()
		if strings.Contains(buf, s) {
			c.t.Fatalf("%q appeared on the console: %q", s, buf)
		}
		select {
		case <-c.news:
		case <-deadline.C:
			return
		}
	}
}

// readErr waits until reading the console fails and returns the error.
func (c *console) readErr() error {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitLimit):
		c.t.Fatalf("console still readable after %v", waitLimit)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// send types s on the console.
func (c *console) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.rw, s); err != nil {
		c.t.Fatalf("console write: %v", err)
	}
}

// board is a sim device under test with its console.
type board struct {
	t       testing.TB
	dev     *Device
	con     *console
	state   string
	secrets []string
}

// newBoard decodes cfg (YAML) strictly into a new sim device as the engine
// does, opens it in a temp state directory and opens its console.
func newBoard(t testing.TB, cfg string) *board {
	t.Helper()
	b := &board{t: t, state: t.TempDir()}
	b.dev = decode(t, cfg)
	if err := b.dev.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	env := drivers.Env{
		Board:    "sim-test",
		StateDir: b.state,
		BaseDir:  b.state,
		Log:      t.Logf,
		Secret:   func(v string) { b.secrets = append(b.secrets, v) },
	}
	if err := b.dev.Open(context.Background(), env); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	rw, err := b.dev.OpenConsole(context.Background())
	if err != nil {
		t.Fatalf("OpenConsole: %v", err)
	}
	b.con = newConsole(t, rw)
	return b
}

// decode builds a device from the registry and decodes cfg into it strictly.
func decode(t testing.TB, cfg string) *Device {
	t.Helper()
	info, ok := drivers.Lookup(Name)
	if !ok {
		t.Fatal("driver sim is not registered")
	}
	dev := info.New()
	if strings.TrimSpace(cfg) != "" {
		dec := yaml.NewDecoder(strings.NewReader(cfg))
		dec.KnownFields(true)
		if err := dec.Decode(dev); err != nil {
			t.Fatalf("decode config: %v", err)
		}
	}
	return dev.(*Device)
}

// fastCfg keeps the boot short.
const fastCfg = "boot-delay: 1ms\n"

func (b *board) on() {
	b.t.Helper()
	if err := b.dev.On(context.Background()); err != nil {
		b.t.Fatalf("On: %v", err)
	}
}

func (b *board) off() {
	b.t.Helper()
	if err := b.dev.Off(context.Background()); err != nil {
		b.t.Fatalf("Off: %v", err)
	}
}

// login logs in with the default credentials and waits for the prompt.
func (b *board) login() {
	b.t.Helper()
	b.con.waitFor("sim login: ")
	b.login2()
}

// login2 logs in at a login prompt already seen.
func (b *board) login2() {
	b.t.Helper()
	b.con.send("root\r")
	b.con.waitFor("Password: ")
	b.con.send("jsplan\r")
	b.con.waitFor("root@sim:~# ")
}

// run types a command line and returns its output up to the next prompt
// (the echoed command line included).
func (b *board) run(cmd string) string {
	b.t.Helper()
	b.con.send(cmd + "\r")
	return b.con.waitFor("root@sim:~# ")
}

// pidAfter runs cmd, which prints "<tag>=<pid>", and returns the pid.
func (b *board) pidAfter(cmd, tag string) int {
	b.t.Helper()
	out := b.run(cmd)
	i := strings.LastIndex(out, tag+"=")
	if i < 0 {
		b.t.Fatalf("no %s= in %q", tag, out)
	}
	f := strings.Fields(out[i+len(tag)+1:])
	if len(f) == 0 {
		b.t.Fatalf("no pid after %s= in %q", tag, out)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		b.t.Fatalf("bad pid in %q: %v", out, err)
	}
	return pid
}

// alive reports whether a live (non-zombie) process pid exists.
func alive(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	state, _, _, _, ok := parseStat(st)
	return ok && state != 'Z' && state != 'X'
}

// children lists the processes whose parent is this test process.
func children() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The guardian (procguard) lives as long as the process, by design.
		if _, ppid, _, _, ok := parseStat(st); ok && ppid == os.Getpid() && p != procguard.GuardianPID() {
			pids = append(pids, p)
		}
	}
	return pids
}

// isDriverError reports whether err is a *drivers.Error.
func isDriverError(err error) bool {
	var de *drivers.Error
	return errors.As(err, &de)
}
