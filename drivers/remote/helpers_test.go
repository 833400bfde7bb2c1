package remote

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/remote/agent"
	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/engine"

	_ "github.com/jsplan/jsplan/drivers/sim"
)

// waitLimit bounds every wait; passing tests never get near it.
const waitLimit = 30 * time.Second

// twoBoards is the agent's inventory in most tests: two virtual boards.
const twoBoards = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    drivers:
      sim: {password: sim-password, boot-delay: 5ms}
  - name: sim-2
    labels: {kind: virtual}
    drivers:
      sim: {password: sim-password, boot-delay: 5ms}
`

// logBuf collects the agent's log lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitLog waits for a log line containing s.
func (l *logBuf) waitLog(t *testing.T, s string) {
	t.Helper()
	eventually(t, "agent log line "+s, func() bool { return strings.Contains(l.String(), s) })
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testAgent is an agent serving an inventory in-process.
type testAgent struct {
	srv   *agent.Server
	dir   string
	sock  string
	locks string
	state string
	log   *logBuf
}

func loadInventory(t testing.TB, src string) *engine.Inventory {
	t.Helper()
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	inv := &engine.Inventory{}
	l.LoadBoardsBytes("agent-boards.yaml", []byte(src), inv)
	if ds := l.Diagnostics(); ds.HasErrors() {
		t.Fatalf("inventory: %v", ds)
	}
	return inv
}

// startAgent serves inv on a unix socket (and returns the server for
// more listeners).
func startAgent(t testing.TB, src string, mod func(*agent.Options)) *testAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "jsplan-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &testAgent{dir: dir, sock: filepath.Join(dir, "agent.sock"), locks: filepath.Join(dir, "locks"),
		state: filepath.Join(dir, "state"), log: &logBuf{}}
	// a TTL that a loaded machine (make test runs packages in parallel)
	// keeps alive; tests of expiry set a shorter one
	opts := agent.Options{LockDir: a.locks, StateDir: a.state, TTL: 5 * time.Second, Log: a.log.logf,
		HandshakeTimeout: 300 * time.Millisecond}
	if mod != nil {
		mod(&opts)
	}
	if a.srv, err = agent.New(loadInventory(t, src), opts); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	a.serve(t, ln)
	t.Cleanup(func() { a.srv.Close() })
	return a
}

func (a *testAgent) serve(t testing.TB, ln net.Listener, opt ...agent.ServeOption) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.srv.Serve(ln, opt...); err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		a.srv.Close()
		<-done
	})
}

// open opens a remote device for board on a's socket.
func (a *testAgent) open(t testing.TB, board string, mod func(*Device)) *Device {
	t.Helper()
	d, err := a.tryOpen(board, mod)
	if err != nil {
		t.Fatalf("open %s: %v", board, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func (a *testAgent) tryOpen(board string, mod func(*Device)) (*Device, error) {
	d := &Device{Address: "unix:" + a.sock, Board: board}
	if mod != nil {
		mod(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	state, _ := os.MkdirTemp(a.dir, "client-")
	if err := d.Open(ctx, drivers.Env{Board: board, StateDir: state, Secret: func(string) {}}); err != nil {
		return nil, err
	}
	return d, nil
}

// abandon stops d as a killed client would: no keepalive, no release.
func (d *Device) abandon() {
	d.granted = true // Close must not release
	d.cancel(fmt.Errorf("abandoned"))
	d.tunMu.Lock()
	if d.tunL != nil {
		d.tunL.Close()
	}
	d.tunMu.Unlock()
	d.wg.Wait()
	d.conn.Close()
}

// con reads a console in the background.
type con struct {
	t    testing.TB
	rw   io.ReadWriteCloser
	mu   sync.Mutex
	buf  []byte
	err  error
	news chan struct{}
}

func newCon(t testing.TB, rw io.ReadWriteCloser) *con {
	c := &con{t: t, rw: rw, news: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := rw.Read(b)
			c.mu.Lock()
			c.buf = append(c.buf, b[:n]...)
			c.err = err
			c.mu.Unlock()
			select {
			case c.news <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { rw.Close(); <-done })
	return c
}

func (c *con) waitFor(s string) string {
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
			c.t.Fatalf("console ended (%v) before %q; got %q", err, s, buf)
		}
		select {
		case <-c.news:
		case <-deadline.C:
			c.t.Fatalf("timed out waiting for %q; got %q", s, buf)
		}
	}
}

func (c *con) send(s string) {
	c.t.Helper()
	if _, err := c.rw.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// login logs in on a sim board's console.
func (c *con) login() {
	c.t.Helper()
	c.waitFor("login: ")
	c.send("root\n")
	c.waitFor("assword: ")
	c.send("sim-password\n")
	c.waitFor("# ")
}

type (
	Options = agent.Options
	statusT = remotepb.BoardStatus
)

func envFor(t testing.TB, logs *logBuf) drivers.Env {
	e := drivers.Env{Board: "b", StateDir: t.TempDir(), Secret: func(string) {}}
	if logs != nil {
		e.Log = logs.logf
	}
	return e
}

func netListenUnix(p string) (net.Listener, error) { return net.Listen("unix", p) }

func agentRestricted() agent.ServeOption { return agent.Restricted() }

func (a *testAgent) tryOpenAt(sock, board string) (*Device, error) {
	d := &Device{Address: "unix:" + sock, Board: board, Wait: cfgSecond}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := d.Open(ctx, drivers.Env{Board: board, StateDir: a.dir, Secret: func(string) {}}); err != nil {
		return nil, err
	}
	return d, nil
}

var cfgSecond = cfg.Duration(time.Second)

// leaseHeld tells whether board has a lease holder.
func leaseHeld(t testing.TB, a *testAgent, board string) bool {
	t.Helper()
	st, err := Status(context.Background(), &Device{Address: "unix:" + a.sock, Board: board}, "")
	if err != nil {
		t.Fatal(err)
	}
	return st.Holder != ""
}
