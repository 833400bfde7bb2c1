package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/remote/agent"
	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/internal/flash"
)

// dataClient is a two-way stream of Data messages.
type dataClient interface {
	Send(*remotepb.Data) error
	Recv() (*remotepb.Data, error)
	CloseSend() error
}

// streamConn is a dataClient as an io.ReadWriteCloser.
type streamConn struct {
	s      dataClient
	cancel context.CancelFunc
	rmu    sync.Mutex
	buf    []byte
	wmu    sync.Mutex
	fail   func(error) error
	once   sync.Once
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.buf) == 0 {
		m, err := c.s.Recv()
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			return 0, c.fail(err)
		}
		c.buf = m.Data
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for n < len(p) {
		k := min(len(p)-n, remotepb.ChunkSize)
		if err := c.s.Send(&remotepb.Data{Data: p[n : n+k]}); err != nil {
			if err == io.EOF {
				err = errors.New("the agent closed the stream")
			}
			return n, c.fail(err)
		}
		n += k
	}
	return n, nil
}

func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.wmu.Lock()
		c.s.CloseSend()
		c.wmu.Unlock()
		c.cancel()
	})
	return nil
}

// OpenConsole opens the board's console on the agent.
func (d *Device) OpenConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	if d.ctx.Err() != nil {
		return nil, drivers.Errorf(Name, "console", "%v", context.Cause(d.ctx))
	}
	sctx, cancel := context.WithCancel(d.ctx)
	s, err := d.client.Console(sctx)
	if err != nil {
		cancel()
		return nil, d.fail("console", err)
	}
	return &streamConn{s: s, cancel: cancel, fail: func(err error) error { return d.fail("console", err) }}, nil
}

// AttachHost is refused: the medium is on the agent's host. Storage is
// written through WriteImage (the flash step and `jsplan flash --board`
// do so).
func (d *Device) AttachHost(ctx context.Context) (string, error) {
	return "", drivers.Errorf(Name, "storage", "the storage of board %s is on the agent %s: it is written by the agent (flash), never attached here", d.Board, d.Address)
}

// AttachBoard does nothing: the agent gives the medium back after writing.
func (d *Device) AttachBoard(ctx context.Context) error { return nil }

// WriteImage streams the image (as it is on disk, compressed or not) and
// its bmap to the agent, which decodes, writes and verifies it on the
// board's storage; progress lines arrive at opts.Progress.
func (d *Device) WriteImage(ctx context.Context, opts flash.Options) (flash.Result, error) {
	res := flash.Result{}
	start := time.Now()
	f, err := os.Open(opts.Image)
	if err != nil {
		return res, fmt.Errorf("%w: %v", flash.ErrImage, err)
	}
	defer f.Close()
	hdr := &remotepb.FlashHeader{ImageName: filepath.Base(opts.Image), Sha256: opts.SHA256, Verify: opts.Verify}
	if !opts.NoBmap {
		p := opts.Bmap
		if p == "" {
			p = flash.FindBmap(opts.Image)
		}
		if p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return res, fmt.Errorf("%w: %v", flash.ErrBmap, err)
			}
			if len(b) > remotepb.MaxMessage-64<<10 {
				return res, fmt.Errorf("%w: %s is larger than %d bytes", flash.ErrBmap, p, remotepb.MaxMessage-64<<10)
			}
			hdr.Bmap, hdr.BmapName = b, filepath.Base(p)
			res.UsedBmap = p
		}
	}
	cctx, cancel := d.callCtx(ctx)
	defer cancel()
	s, err := d.client.Flash(cctx)
	if err != nil {
		return res, d.fail("flash", err)
	}
	if err := s.Send(&remotepb.FlashIn{Msg: &remotepb.FlashIn_Header{Header: hdr}}); err != nil {
		return res, d.fail("flash", err)
	}
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, remotepb.ChunkSize)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if serr := s.Send(&remotepb.FlashIn{Msg: &remotepb.FlashIn_Data{Data: buf[:n]}}); serr != nil {
					sendErr <- nil // the agent stopped reading: its result says why
					return
				}
			}
			if err == io.EOF {
				sendErr <- s.CloseSend()
				return
			}
			if err != nil {
				cancel()
				sendErr <- fmt.Errorf("%w: %v", flash.ErrImage, err)
				return
			}
		}
	}()
	var out *remotepb.FlashResult
	for out == nil {
		m, err := s.Recv()
		if err != nil {
			if serr := <-sendErr; serr != nil && errors.Is(serr, flash.ErrImage) {
				return res, serr
			}
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if err == io.EOF {
				err = errors.New("the agent ended the flash without a result")
			}
			return res, d.fail("flash", err)
		}
		if line := m.GetProgress(); line != "" && opts.Progress != nil {
			fmt.Fprintln(opts.Progress, line)
		}
		out = m.GetResult()
	}
	<-sendErr
	res = flash.Result{BytesWritten: out.BytesWritten, ImageSize: out.ImageSize, Mapped: out.Mapped,
		Duration: time.Since(start), Format: out.Format, UsedBmap: res.UsedBmap, Decoder: out.Decoder + " (on the agent)",
		SHA256: out.Sha256, Verified: out.Verified, BlockDevice: out.BlockDevice}
	if out.Error != "" {
		if k := agent.FlashError(out.Kind); k != nil {
			return res, &kindError{kind: k, msg: out.Error}
		}
		return res, drivers.Errorf(Name, "flash", "%s", out.Error)
	}
	return res, nil
}

// kindError is an agent's flash error that errors.Is matches with its
// internal/flash class.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// Endpoint is the board's SSH endpoint, forwarded through the agent: a
// listener on 127.0.0.1 whose connections are tunnelled to the board.
func (d *Device) Endpoint(ctx context.Context) (drivers.Endpoint, error) {
	cctx, cancel := d.callCtx(ctx)
	defer cancel()
	r, err := d.client.Endpoint(cctx, &remotepb.LeaseRequest{})
	if err != nil {
		return drivers.Endpoint{}, d.fail("network", err)
	}
	if r.Password != "" && d.env.Secret != nil {
		d.env.Secret(r.Password)
	}
	d.tunMu.Lock()
	defer d.tunMu.Unlock()
	if d.tunL == nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return drivers.Endpoint{}, drivers.Errorf(Name, "network", "%v", err)
		}
		d.tunL = l
		d.wg.Add(1)
		go d.forward(l)
	}
	if len(r.Key) > 0 && d.tunKey == "" {
		dir := d.env.StateDir
		if dir == "" {
			dir = os.TempDir()
		}
		p := filepath.Join(dir, "ssh-key-"+strconv.Itoa(os.Getpid()))
		os.Remove(p)
		if err := os.WriteFile(p, r.Key, 0o600); err != nil {
			return drivers.Endpoint{}, drivers.Errorf(Name, "network", "%v", err)
		}
		d.tunKey = p
	}
	port := d.tunL.Addr().(*net.TCPAddr).Port
	return drivers.Endpoint{Host: "127.0.0.1", Port: port, User: r.User, Password: r.Password, KeyFile: d.tunKey,
		Options: r.Options}, nil
}

// forward tunnels each connection to l through the agent.
func (d *Device) forward(l net.Listener) {
	defer d.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer c.Close()
			sctx, cancel := context.WithCancel(d.ctx)
			defer cancel()
			s, err := d.client.Tunnel(sctx)
			if err != nil {
				d.env.Logf("board %s: tunnel: %s", d.Board, describe(err))
				return
			}
			sc := &streamConn{s: s, cancel: cancel, fail: func(err error) error { return err }}
			go func() {
				io.Copy(sc, c)
				sc.wmu.Lock()
				sc.s.CloseSend()
				sc.wmu.Unlock()
			}()
			// the connection lasts until the board's side ends it (or the lease)
			io.Copy(c, sc)
		}()
	}
}
