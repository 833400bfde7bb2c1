package qemu

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jsplan/jsplan/drivers"
)

// consoleBufferSize bounds the console bytes kept while nobody reads. When it
// is full the oldest bytes are dropped, as a UART overruns.
const consoleBufferSize = 1 << 20

// consoleWriteTimeout bounds a write to the guest's serial port. QEMU stops
// reading the socket while the guest does not drain its UART.
const consoleWriteTimeout = 10 * time.Second

// relay is the board's serial console as the engine sees it. It listens on a
// unix socket that each QEMU process connects to at start (a client socket
// chardev), so the stream it hands out stays valid across power cycles and
// resets: when QEMU stops, reads just wait for the next QEMU.
type relay struct {
	ln   net.Listener
	path string
	logf func(format string, args ...any)

	mu      sync.Mutex
	conn    net.Conn      // the current QEMU, nil when none is connected
	buf     []byte        // received and not yet read
	notify  chan struct{} // signalled when buf grows or the reader changes
	reader  *consoleStream
	closed  bool
	dropped bool // a write was dropped since the last log message
}

func newRelay(path string, logf func(string, ...any)) (*relay, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, path: path, logf: logf, notify: make(chan struct{}, 1)}
	go r.accept()
	return r, nil
}

// accept takes each QEMU's connection; a new one replaces the old.
func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // listener closed
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		if r.conn != nil {
			r.conn.Close()
		}
		r.conn = c
		r.mu.Unlock()
		go r.pump(c)
	}
}

// pump copies what the guest prints into the buffer.
func (r *relay) pump(c net.Conn) {
	b := make([]byte, 32*1024)
	for {
		n, err := c.Read(b)
		if n > 0 {
			r.mu.Lock()
			r.buf = append(r.buf, b[:n]...)
			if over := len(r.buf) - consoleBufferSize; over > 0 {
				r.buf = append(r.buf[:0], r.buf[over:]...)
			}
			r.mu.Unlock()
			r.wake()
		}
		if err != nil {
			r.mu.Lock()
			if r.conn == c {
				r.conn = nil
			}
			r.mu.Unlock()
			c.Close()
			return
		}
	}
}

func (r *relay) wake() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// connected reports whether a QEMU is attached to the console.
func (r *relay) connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn != nil
}

// open returns a new stream; an earlier stream ends (reads return io.EOF),
// since the console has a single reader.
func (r *relay) open() (*consoleStream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("console is closed")
	}
	s := &consoleStream{r: r}
	r.reader = s
	r.wake()
	return s, nil
}

// close stops the relay: the listener, the QEMU connection and the reader.
func (r *relay) close() error {
	r.mu.Lock()
	r.closed = true
	c := r.conn
	r.conn = nil
	r.reader = nil
	r.mu.Unlock()
	err := r.ln.Close()
	if c != nil {
		c.Close()
	}
	os.Remove(r.path)
	r.wake()
	return err
}

// consoleStream is the io.ReadWriteCloser OpenConsole returns.
type consoleStream struct {
	r *relay

	mu     sync.Mutex
	closed bool
}

// Read returns console bytes, waiting for them. It returns io.EOF once the
// stream, the device or the relay is closed, or a newer stream was opened.
func (s *consoleStream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r := s.r
	for {
		r.mu.Lock()
		if r.closed || r.reader != s || s.isClosed() {
			r.mu.Unlock()
			r.wake() // pass the signal on to a newer stream
			return 0, io.EOF
		}
		if len(r.buf) > 0 {
			n := copy(p, r.buf)
			r.buf = r.buf[n:]
			if len(r.buf) == 0 {
				r.buf = nil
			}
			r.mu.Unlock()
			return n, nil
		}
		r.mu.Unlock()
		<-r.notify
	}
}

// Write sends bytes to the guest's serial port. While the board is off the
// bytes are dropped, as on a UART whose board has no power.
func (s *consoleStream) Write(p []byte) (int, error) {
	if s.isClosed() {
		return 0, io.ErrClosedPipe
	}
	r := s.r
	r.mu.Lock()
	c := r.conn
	if c == nil {
		logIt := !r.dropped
		r.dropped = true
		r.mu.Unlock()
		if logIt && r.logf != nil {
			r.logf("qemu: console input dropped: the board is off")
		}
		return len(p), nil
	}
	r.dropped = false
	r.mu.Unlock()
	c.SetWriteDeadline(time.Now().Add(consoleWriteTimeout))
	n, err := c.Write(p)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, drivers.Errorf(driverName, "console write", "the guest did not read its serial port for %v", consoleWriteTimeout)
		}
		// QEMU went away mid-write: the rest is dropped.
		return len(p), nil
	}
	return n, nil
}

// Close ends the stream; the console itself stays up for the next OpenConsole.
func (s *consoleStream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.r.wake()
	return nil
}

func (s *consoleStream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
