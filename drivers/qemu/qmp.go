package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmpEvent is an asynchronous QMP event ({"event": "RESET", ...}).
type qmpEvent struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
}

// qmpError is an error reply to a QMP command.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// qmpMessage is any message QEMU sends: the greeting, a reply or an event.
type qmpMessage struct {
	Greeting  json.RawMessage `json:"QMP,omitempty"`
	Return    json.RawMessage `json:"return,omitempty"`
	Error     *qmpError       `json:"error,omitempty"`
	Event     string          `json:"event,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	ID        *uint64         `json:"id,omitempty"`
	Timestamp json.RawMessage `json:"timestamp,omitempty"`
}

// errQMPClosed is returned by commands on a connection that has ended (QEMU
// exited or the client was closed).
var errQMPClosed = errors.New("qmp: connection closed")

// qmpClient is a minimal QEMU Machine Protocol client: it reads the greeting,
// negotiates capabilities, runs commands one at a time and collects events.
type qmpClient struct {
	conn net.Conn

	cmdMu sync.Mutex // one command in flight
	enc   *json.Encoder
	next  uint64

	replies chan qmpMessage
	events  chan qmpEvent
	done    chan struct{} // closed when the reader ends
	err     error         // why the reader ended; read after done
}

// dialQMP connects to the QMP socket at path, retrying until the socket
// accepts or ctx ends, and negotiates capabilities. alive reports whether
// QEMU still runs; dialling stops early when it does not.
func dialQMP(ctx context.Context, path string, alive func() bool) (*qmpClient, error) {
	var d net.Dialer
	var conn net.Conn
	for {
		var err error
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		if alive != nil && !alive() {
			return nil, fmt.Errorf("qmp: qemu exited before its monitor accepted: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	c := newQMPClient(conn)
	if err := c.handshake(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newQMPClient(conn net.Conn) *qmpClient {
	c := &qmpClient{
		conn:    conn,
		enc:     json.NewEncoder(conn),
		replies: make(chan qmpMessage, 1),
		events:  make(chan qmpEvent, 64),
		done:    make(chan struct{}),
	}
	go c.read()
	return c
}

// sendDropOldest sends v on ch; when ch is full it drops the oldest value, so
// the reader never blocks on a consumer that went away.
func sendDropOldest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// read delivers replies and events until the connection ends. The first
// message must be the greeting.
func (c *qmpClient) read() {
	defer close(c.done)
	sc := bufio.NewScanner(c.conn)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	first := true
	for sc.Scan() {
		var m qmpMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			c.err = fmt.Errorf("qmp: bad message %.200q: %v", sc.Bytes(), err)
			c.conn.Close()
			return
		}
		switch {
		case first:
			if m.Greeting == nil {
				c.err = fmt.Errorf("qmp: expected a greeting, got %.200q", sc.Bytes())
				c.conn.Close()
				return
			}
			first = false
		case m.Event != "":
			sendDropOldest(c.events, qmpEvent{Name: m.Event, Data: m.Data})
		default:
			sendDropOldest(c.replies, m)
		}
	}
	c.err = sc.Err()
	if c.err == nil {
		c.err = errQMPClosed
	}
}

// handshake leaves capabilities negotiation mode. The reader checks that the
// first message was the greeting and ends the connection otherwise.
func (c *qmpClient) handshake(ctx context.Context) error {
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		return fmt.Errorf("qmp: capabilities: %w", err)
	}
	return nil
}

// Execute runs one QMP command and returns its "return" value.
func (c *qmpClient) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	select {
	case <-c.done:
		return nil, c.err
	default:
	}
	c.next++
	id := c.next
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        uint64 `json:"id"`
	}{cmd, args, id}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	} else {
		c.conn.SetWriteDeadline(time.Time{})
	}
	if err := c.enc.Encode(req); err != nil {
		return nil, fmt.Errorf("qmp: send %s: %w", cmd, err)
	}
	for {
		select {
		case m := <-c.replies:
			if m.ID == nil || *m.ID != id {
				continue // a reply to an earlier command that timed out
			}
			if m.Error != nil {
				return nil, fmt.Errorf("%s: %w", cmd, m.Error)
			}
			return m.Return, nil
		case <-c.done:
			return nil, fmt.Errorf("qmp: %s: %w", cmd, c.err)
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: %s: %w", cmd, ctx.Err())
		}
	}
}

// WaitEvent waits for the event called name and returns it. Events that
// arrived earlier and were not consumed count.
func (c *qmpClient) WaitEvent(ctx context.Context, name string) (qmpEvent, error) {
	for {
		select {
		case ev := <-c.events:
			if ev.Name == name {
				return ev, nil
			}
		case <-c.done:
			return qmpEvent{}, fmt.Errorf("qmp: waiting for %s: %w", name, c.err)
		case <-ctx.Done():
			return qmpEvent{}, fmt.Errorf("qmp: waiting for %s: %w", name, ctx.Err())
		}
	}
}

// DrainEvents drops the events received so far.
func (c *qmpClient) DrainEvents() {
	for {
		select {
		case <-c.events:
		default:
			return
		}
	}
}

// Status returns the run state of the VM (query-status), e.g. "running".
func (c *qmpClient) Status(ctx context.Context) (string, error) {
	raw, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("qmp: query-status: %v", err)
	}
	return st.Status, nil
}

// Close ends the connection and waits for the reader.
func (c *qmpClient) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
