package dutlink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/jsplan/jsplan/drivers"
)

// Protocol facts, from the firmware's shell (application/src/shell.rs and
// main.rs in jumpstarter-dev/dutlink-firmware).
const (
	// Prompt follows every reply, after "\r\n".
	Prompt = "#> "
	// ctrlB is the console-mode escape; five in a row leave console mode.
	ctrlB = 0x02
	// consoleEntered is the reply to `console`; no prompt follows it.
	consoleEntered = "Entering console mode, type CTRL+B 5 times to exit\r\n"
	// consoleExited is printed when the escape is seen, then the prompt.
	consoleExited = "\r\nExiting console mode\r\n" + Prompt
	// promptFrame ends every reply.
	promptFrame = "\r\n" + Prompt
)

// ErrTimeout is wrapped by errors of commands the board did not answer in
// time.
var ErrTimeout = errors.New("timed out")

// ErrRejected is wrapped by errors of commands the board refused
// (`usage: ...` or `unsupported command`).
var ErrRejected = errors.New("rejected by the board")

// ClientOptions configure a Client.
type ClientOptions struct {
	// ReplyTimeout bounds a command's reply (default 2 s); power commands
	// take their own timeout.
	ReplyTimeout time.Duration
	// Log receives messages for the run log.
	Log func(format string, args ...any)
}

// Client speaks the DUTLink text shell over its CDC-ACM serial port.
//
// One goroutine owns reading the port. Shell output goes to a buffer that
// commands parse; while the board is in console mode the bytes go to the
// console stream instead. Commands and console writes are serialized: a
// command that arrives while the console stream is open leaves console
// mode (Ctrl-B x5), runs, and re-enters console mode, so the console
// stream pauses but stays open. The firmware drops what the board prints
// while it is out of console mode, so a few bytes can be lost around each
// command; a separate console adapter (console-port) does not have that
// gap.
type Client struct {
	port io.ReadWriteCloser
	opts ClientOptions

	mu          sync.Mutex // one operation on the port at a time
	inConsole   bool       // the firmware is in console mode (as far as we know)
	wantConsole bool       // a console stream is open
	esc         int        // Ctrl-B bytes the console user sent in a row
	unsynced    bool       // the board's state is unknown: resync first
	view        *consoleView

	bmu      sync.Mutex // guards the fields below, fed by the reader
	buf      []byte     // shell output not yet consumed
	notify   chan struct{}
	toView   bool // route incoming bytes to the console stream
	tail     []byte
	fellOut  bool // the escape was seen in console mode without us
	readErr  error
	closed   bool
	readDone chan struct{}
}

// maxShellBuf bounds the shell buffer; older bytes are dropped.
const maxShellBuf = 64 << 10

// NewClient starts a client on an open port. Call Sync before commands
// when the board's state is unknown (Open does).
func NewClient(port io.ReadWriteCloser, opts ClientOptions) *Client {
	if opts.ReplyTimeout <= 0 {
		opts.ReplyTimeout = 2 * time.Second
	}
	c := &Client{port: port, opts: opts, notify: make(chan struct{}), readDone: make(chan struct{}), unsynced: true}
	go c.reader()
	return c
}

func (c *Client) logf(format string, args ...any) {
	if c.opts.Log != nil {
		c.opts.Log(format, args...)
	}
}

// wake tells waiters that something changed. The caller holds c.bmu.
func (c *Client) wake() {
	close(c.notify)
	c.notify = make(chan struct{})
}

func (c *Client) reader() {
	defer close(c.readDone)
	b := make([]byte, 4096)
	for {
		n, err := c.port.Read(b)
		if n > 0 {
			c.bmu.Lock()
			if c.toView {
				c.routeToView(b[:n])
			} else {
				c.buf = append(c.buf, b[:n]...)
				if over := len(c.buf) - maxShellBuf; over > 0 {
					c.buf = append(c.buf[:0], c.buf[over:]...)
				}
			}
			c.wake()
			c.bmu.Unlock()
		}
		if err != nil {
			c.bmu.Lock()
			if c.closed {
				err = io.EOF
			}
			c.readErr = err
			v := c.currentViewLocked()
			c.wake()
			c.bmu.Unlock()
			if v != nil {
				v.ring.closeWith(err)
			}
			return
		}
		// A serial port with a read timeout returns (0, nil): no data.
	}
}

// routeToView passes console bytes to the open stream and watches for the
// firmware leaving console mode on its own. The caller holds c.bmu.
func (c *Client) routeToView(p []byte) {
	if v := c.currentViewLocked(); v != nil {
		v.ring.write(p)
	}
	c.tail = append(c.tail, p...)
	if bytes.Contains(c.tail, []byte(consoleExited)) {
		c.toView = false
		c.fellOut = true
		c.tail = nil
		return
	}
	if keep := len(consoleExited) - 1; len(c.tail) > keep {
		c.tail = append(c.tail[:0], c.tail[len(c.tail)-keep:]...)
	}
}

// currentViewLocked returns the open console view; the caller holds c.bmu.
// The view pointer itself is only changed under both locks.
func (c *Client) currentViewLocked() *consoleView { return c.view }

// Err returns the port's failure, if the reader stopped.
func (c *Client) Err() error {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	return c.readErr
}

// Close closes the console stream (leaving console mode when the board
// answers quickly) and the port.
func (c *Client) Close() error {
	var errs *multierror.Error
	c.mu.Lock()
	if c.view != nil && c.Err() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReplyTimeout)
		if err := c.closeViewLocked(ctx); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("leaving console mode: %w", err))
		}
		cancel()
	}
	c.mu.Unlock()
	c.bmu.Lock()
	c.closed = true
	c.bmu.Unlock()
	if err := c.port.Close(); err != nil {
		errs = multierror.Append(errs, err)
	}
	<-c.readDone
	return errs.ErrorOrNil()
}

// write sends raw bytes to the board.
func (c *Client) write(ctx context.Context, op string, b []byte) error {
	if _, err := c.port.Write(b); err != nil {
		return drivers.Errorf(Name, op, "writing to the board: %w", err)
	}
	return nil
}

// waitBuf waits until match finds what it needs in the shell buffer.
// match returns the number of bytes to consume and whether it matched.
func (c *Client) waitBuf(ctx context.Context, timeout time.Duration, match func(b []byte) (int, bool)) ([]byte, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		c.bmu.Lock()
		if n, ok := match(c.buf); ok {
			got := append([]byte(nil), c.buf[:n]...)
			c.buf = append(c.buf[:0], c.buf[n:]...)
			c.bmu.Unlock()
			return got, nil
		}
		if c.readErr != nil {
			err := c.readErr
			c.bmu.Unlock()
			return nil, fmt.Errorf("the board's port failed: %w", err)
		}
		ch := c.notify
		c.bmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, ErrTimeout
		}
	}
}

func (c *Client) clearBuf() {
	c.bmu.Lock()
	c.buf = c.buf[:0]
	c.bmu.Unlock()
}

// received returns the unconsumed shell output, shortened, for errors.
func (c *Client) received() string {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	b := c.buf
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return fmt.Sprintf("%q", b)
}

// syncLocked brings the board to a known state: out of console mode,
// monitor off, an empty command line. escWait is how long to wait for the
// console-mode exit message, which only comes when it was in console mode.
func (c *Client) syncLocked(ctx context.Context, escWait time.Duration) error {
	c.bmu.Lock()
	c.toView = false
	c.fellOut = false
	c.buf = c.buf[:0]
	c.bmu.Unlock()
	c.inConsole = false
	if err := c.write(ctx, "sync", bytes.Repeat([]byte{ctrlB}, 5)); err != nil {
		return err
	}
	_, err := c.waitBuf(ctx, escWait, func(b []byte) (int, bool) {
		i := bytes.Index(b, []byte(consoleExited))
		if i < 0 {
			return 0, false
		}
		return i + len(consoleExited), true
	})
	if err != nil && !errors.Is(err, ErrTimeout) {
		return drivers.Errorf(Name, "sync", "%w", err)
	}
	// A lone CR ends whatever half-typed line the editor holds (at worst
	// answered with "unsupported command"); then turn the monitor off so
	// the board's output does not mix into replies.
	c.clearBuf()
	if err := c.write(ctx, "sync", []byte("\r\n")); err != nil {
		return err
	}
	if _, err := c.exchangeLocked(ctx, "sync", "monitor off", "Monitor disabled", c.opts.ReplyTimeout); err != nil {
		return err
	}
	c.esc = 0
	c.unsynced = false
	return nil
}

// Sync brings the board to a known state: out of console mode, with the
// monitor off (and back in console mode if a console stream is open). It
// is safe to call at any time.
func (c *Client) Sync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resyncLocked(ctx)
}

// syncTwiceLocked syncs, first with a short wait for the console exit
// message (it only comes when the board was in console mode), then, if
// the board did not answer, once more with a patient wait.
func (c *Client) syncTwiceLocked(ctx context.Context) error {
	err := c.syncLocked(ctx, 300*time.Millisecond)
	if err != nil && errors.Is(err, ErrTimeout) && ctx.Err() == nil {
		c.logf("dutlink: no prompt after a short wait; syncing again for up to %s", c.opts.ReplyTimeout)
		err = c.syncLocked(ctx, c.opts.ReplyTimeout)
	}
	if err != nil {
		c.unsynced = true
	}
	return err
}

// resyncLocked syncs and re-enters console mode when a stream is open.
func (c *Client) resyncLocked(ctx context.Context) error {
	if err := c.syncTwiceLocked(ctx); err != nil {
		return err
	}
	if c.wantConsole {
		return c.enterConsoleLocked(ctx)
	}
	return nil
}

// exchangeLocked sends cmd and returns its reply: the text between the
// echo of cmd and the prompt. It fails on a timeout, a `usage:` or
// `unsupported command` reply, or a reply without expect.
func (c *Client) exchangeLocked(ctx context.Context, op, cmd, expect string, timeout time.Duration) (string, error) {
	c.clearBuf()
	if err := c.write(ctx, op, []byte(cmd+"\r\n")); err != nil {
		return "", err
	}
	echo := []byte(cmd)
	got, err := c.waitBuf(ctx, timeout, func(b []byte) (int, bool) {
		i := bytes.Index(b, echo)
		if i < 0 {
			return 0, false
		}
		j := bytes.Index(b[i+len(echo):], []byte(promptFrame))
		if j < 0 {
			return 0, false
		}
		return i + len(echo) + j + len(promptFrame), true
	})
	if err != nil {
		if errors.Is(err, ErrTimeout) {
			c.unsynced = true
			return "", drivers.Errorf(Name, op, "no reply to %q within %s (received %s): %w", cmd, timeout, c.received(), ErrTimeout)
		}
		if ctx.Err() != nil {
			// The board may still answer; start the next command afresh.
			c.unsynced = true
		}
		return "", drivers.Errorf(Name, op, "%q: %w", cmd, err)
	}
	i := bytes.Index(got, echo)
	reply := string(got[i+len(echo) : len(got)-len(promptFrame)])
	reply = strings.TrimPrefix(reply, "\r\n")
	for _, line := range strings.Split(reply, "\r\n") {
		if strings.HasPrefix(line, "usage: ") {
			return reply, drivers.Errorf(Name, op, "the board refused %q: %s: %w", cmd, line, ErrRejected)
		}
		if line == "unsupported command" {
			return reply, drivers.Errorf(Name, op, "the board does not know %q (unsupported command; older firmware?): %w", cmd, ErrRejected)
		}
	}
	if expect != "" && !strings.Contains(reply, expect) {
		return reply, drivers.Errorf(Name, op, "unexpected reply to %q: %q (want %q)", cmd, reply, expect)
	}
	return reply, nil
}

// Batch runs commands with the board in shell mode: the console stream, if
// open, pauses for the whole batch.
func (c *Client) Batch(ctx context.Context, f func(b *Batch) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.shellLocked(ctx); err != nil {
		return err
	}
	ferr := f(&Batch{c: c, ctx: ctx})
	// After a timeout the board's state is unknown: the console comes back
	// with the next command or console write, which resync first.
	if c.wantConsole && !c.unsynced {
		rctx := ctx
		if ctx.Err() != nil {
			// Give the console back even when the batch was cancelled.
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(context.Background(), c.opts.ReplyTimeout)
			defer cancel()
		}
		if err := c.enterConsoleLocked(rctx); err != nil && ferr == nil {
			ferr = err
		}
	}
	return ferr
}

// Batch issues commands inside Client.Batch.
type Batch struct {
	c   *Client
	ctx context.Context
}

// Command sends cmd, waits up to timeout (zero: the reply timeout) for a
// reply containing expect, and returns the reply.
func (b *Batch) Command(op, cmd, expect string, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = b.c.opts.ReplyTimeout
	}
	if b.c.unsynced {
		if err := b.c.syncTwiceLocked(b.ctx); err != nil {
			return "", err
		}
	}
	return b.c.exchangeLocked(b.ctx, op, cmd, expect, timeout)
}

// Command runs one command (see Batch.Command).
func (c *Client) Command(ctx context.Context, op, cmd, expect string, timeout time.Duration) (reply string, err error) {
	err = c.Batch(ctx, func(b *Batch) error {
		reply, err = b.Command(op, cmd, expect, timeout)
		return err
	})
	return reply, err
}

// shellLocked makes sure the board is in shell mode and in sync.
func (c *Client) shellLocked(ctx context.Context) error {
	if err := c.Err(); err != nil {
		return drivers.Errorf(Name, "command", "the board's port failed: %w", err)
	}
	c.noticeFallOut()
	if c.unsynced {
		return c.syncTwiceLocked(ctx)
	}
	if c.inConsole {
		return c.exitConsoleLocked(ctx)
	}
	return nil
}

// noticeFallOut takes note when the reader saw the firmware leave console
// mode without being asked.
func (c *Client) noticeFallOut() {
	c.bmu.Lock()
	if c.fellOut {
		c.fellOut = false
		c.inConsole = false
	}
	c.bmu.Unlock()
}

// exitConsoleLocked sends the escape and waits for the shell prompt. Bytes
// the board printed before the exit message still go to the stream.
func (c *Client) exitConsoleLocked(ctx context.Context) error {
	c.bmu.Lock()
	c.toView = false
	c.bmu.Unlock()
	n := 5 - c.esc
	c.esc = 0
	if err := c.write(ctx, "console", bytes.Repeat([]byte{ctrlB}, n)); err != nil {
		return err
	}
	var before []byte
	_, err := c.waitBuf(ctx, c.opts.ReplyTimeout, func(b []byte) (int, bool) {
		i := bytes.Index(b, []byte(consoleExited))
		if i < 0 {
			return 0, false
		}
		before = append(before[:0], b[:i]...)
		return i + len(consoleExited), true
	})
	if err != nil {
		c.unsynced = true
		if errors.Is(err, ErrTimeout) {
			return drivers.Errorf(Name, "console", "the board did not leave console mode within %s (received %s): %w", c.opts.ReplyTimeout, c.received(), ErrTimeout)
		}
		return drivers.Errorf(Name, "console", "leaving console mode: %w", err)
	}
	c.inConsole = false
	if v := c.view; v != nil && len(before) > 0 {
		v.ring.write(before)
	}
	return nil
}

// enterConsoleLocked sends `console` and switches the incoming bytes to the
// stream right after the firmware's confirmation.
func (c *Client) enterConsoleLocked(ctx context.Context) error {
	if c.inConsole {
		return nil
	}
	c.clearBuf()
	if err := c.write(ctx, "console", []byte("console\r\n")); err != nil {
		return err
	}
	marker := []byte("console\r\n" + consoleEntered)
	t := time.NewTimer(c.opts.ReplyTimeout)
	defer t.Stop()
	for {
		c.bmu.Lock()
		if i := bytes.Index(c.buf, marker); i >= 0 {
			rest := append([]byte(nil), c.buf[i+len(marker):]...)
			c.buf = c.buf[:0]
			c.toView = true
			c.tail = nil
			c.fellOut = false
			if len(rest) > 0 {
				c.routeToView(rest)
			}
			c.bmu.Unlock()
			c.inConsole = true
			c.esc = 0
			return nil
		}
		if c.readErr != nil {
			err := c.readErr
			c.bmu.Unlock()
			return drivers.Errorf(Name, "console", "the board's port failed: %w", err)
		}
		ch := c.notify
		c.bmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.unsynced = true
			return drivers.Errorf(Name, "console", "entering console mode: %w", ctx.Err())
		case <-t.C:
			c.unsynced = true
			return drivers.Errorf(Name, "console", "no console-mode confirmation within %s (received %s): %w", c.opts.ReplyTimeout, c.received(), ErrTimeout)
		}
	}
}

// OpenConsole enters console mode and returns the board's console stream.
// Commands issued while it is open pause it (see Client). Opening a new
// stream ends the previous one.
func (c *Client) OpenConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.Err(); err != nil {
		return nil, drivers.Errorf(Name, "console", "the board's port failed: %w", err)
	}
	if old := c.view; old != nil {
		c.setView(nil)
		old.ring.closeWith(io.EOF)
	}
	v := &consoleView{c: c, ring: newRing(consoleBufMax)}
	c.setView(v)
	c.wantConsole = true
	if err := c.shellLocked(ctx); err != nil {
		c.setView(nil)
		c.wantConsole = false
		return nil, err
	}
	if err := c.enterConsoleLocked(ctx); err != nil {
		c.setView(nil)
		c.wantConsole = false
		return nil, err
	}
	return v, nil
}

func (c *Client) setView(v *consoleView) {
	c.bmu.Lock()
	c.view = v
	c.bmu.Unlock()
}

// closeViewLocked ends the console stream and leaves console mode.
func (c *Client) closeViewLocked(ctx context.Context) error {
	v := c.view
	if v == nil {
		return nil
	}
	c.wantConsole = false
	var err error
	if c.inConsole {
		err = c.exitConsoleLocked(ctx)
	}
	c.setView(nil)
	v.ring.closeWith(io.EOF)
	return err
}

// consoleWrite sends bytes to the board's console, entering console mode
// first when a command left it. A fifth Ctrl-B in a row is dropped: it
// would make the firmware leave console mode.
func (c *Client) consoleWrite(v *consoleView, p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.view != v {
		return 0, drivers.Errorf(Name, "console", "console stream closed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.opts.ReplyTimeout+time.Second)
	defer cancel()
	c.noticeFallOut()
	if c.unsynced {
		if err := c.resyncLocked(ctx); err != nil {
			return 0, err
		}
	}
	if !c.inConsole {
		if err := c.enterConsoleLocked(ctx); err != nil {
			return 0, err
		}
	}
	out := make([]byte, 0, len(p))
	for _, b := range p {
		if b == ctrlB {
			if c.esc == 4 {
				continue
			}
			c.esc++
		} else {
			c.esc = 0
		}
		out = append(out, b)
	}
	if _, err := c.port.Write(out); err != nil {
		return 0, drivers.Errorf(Name, "console", "writing to the board: %w", err)
	}
	return len(p), nil
}

const consoleBufMax = 1 << 20

// consoleView is the console stream handed out by OpenConsole.
type consoleView struct {
	c    *Client
	ring *ring
	once sync.Once
}

func (v *consoleView) Read(p []byte) (int, error)  { return v.ring.read(p) }
func (v *consoleView) Write(p []byte) (int, error) { return v.c.consoleWrite(v, p) }

// Close ends the stream and takes the board out of console mode.
func (v *consoleView) Close() error {
	var err error
	v.once.Do(func() {
		c := v.c
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.view != v {
			v.ring.closeWith(io.EOF)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReplyTimeout)
		defer cancel()
		if c.Err() != nil {
			c.wantConsole = false
			c.setView(nil)
			v.ring.closeWith(io.EOF)
			return
		}
		err = c.closeViewLocked(ctx)
	})
	return err
}

// ring is a bounded byte queue with a blocking read; when full, the oldest
// bytes are dropped (the console is a stream, the newest bytes matter).
type ring struct {
	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	max     int
	err     error
	dropped int
}

func newRing(max int) *ring {
	r := &ring{max: max}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *ring) write(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	r.buf = append(r.buf, p...)
	if over := len(r.buf) - r.max; over > 0 {
		r.buf = append(r.buf[:0], r.buf[over:]...)
		r.dropped += over
	}
	r.cond.Broadcast()
}

func (r *ring) read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.buf) == 0 && r.err == nil {
		r.cond.Wait()
	}
	if len(r.buf) == 0 {
		return 0, r.err
	}
	n := copy(p, r.buf)
	r.buf = append(r.buf[:0], r.buf[n:]...)
	return n, nil
}

func (r *ring) closeWith(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	r.cond.Broadcast()
}
