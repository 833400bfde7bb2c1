package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/jsplan/jsplan/internal/shorten"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/internal/flash"
	"github.com/jsplan/jsplan/internal/lock"
)

// lockRetry is how often the head of a queue tries the board's lock while
// a local run holds it.
const lockRetry = 250 * time.Millisecond

// Boards lists the boards, their holders and queues.
func (s *service) Boards(ctx context.Context, _ *remotepb.BoardsRequest) (*remotepb.BoardsReply, error) {
	only := ""
	if configOf(ctx).restricted {
		l, err := s.leaseOf(ctx)
		if err != nil {
			return nil, err
		}
		only = l.b.spec.Name
		l.done()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &remotepb.BoardsReply{}
	for _, name := range s.inv.Names() {
		b := s.boards[name]
		if b == nil || (only != "" && name != only) {
			continue
		}
		st := &remotepb.BoardStatus{Name: name, Labels: b.spec.Labels}
		for _, c := range b.spec.Capabilities() {
			st.Capabilities = append(st.Capabilities, string(c))
		}
		if l := b.lease; l != nil {
			st.Holder, st.SinceUnixMs = l.holder, l.since.UnixMilli()
		} else if !b.opening {
			lk, h, err := lock.TryAcquire(s.opts.LockDir, name, lock.Holder{Board: name, Plan: "jsplan serve: status", PID: os.Getpid(), Since: time.Now()})
			switch {
			case err != nil:
				st.LocalHolder = "unknown: " + err.Error()
			case lk != nil:
				lk.Release()
			case h != nil:
				st.LocalHolder = h.String()
			default:
				st.LocalHolder = "a local run"
			}
		}
		q := append([]*waiter(nil), b.queue...)
		sortWaiters(q)
		for _, w := range q {
			st.Waiting = append(st.Waiting, &remotepb.Waiter{Holder: w.holder, Priority: w.priority, SinceUnixMs: w.since.UnixMilli()})
		}
		out.Boards = append(out.Boards, st)
	}
	return out, nil
}

// Acquire queues the caller for a board and grants it in turn.
func (s *service) Acquire(req *remotepb.AcquireRequest, stream remotepb.Agent_AcquireServer) error {
	ctx := stream.Context()
	if configOf(ctx).restricted {
		return status.Error(codes.PermissionDenied, "this socket serves granted leases only")
	}
	who := identity(ctx)
	holder := who
	if h := strings.TrimSpace(req.Holder); h != "" {
		holder = who + ": " + clip(h, 200)
	}
	s.mu.Lock()
	b := s.boards[req.Board]
	if b == nil {
		s.mu.Unlock()
		return status.Errorf(codes.NotFound, "no board %q on this agent", clip(req.Board, 100))
	}
	if s.closed {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "the agent stops")
	}
	s.seq++
	w := &waiter{holder: holder, priority: req.Priority, seq: s.seq, since: time.Now()}
	b.queue = append(b.queue, w)
	s.broadcast(b)
	s.mu.Unlock()
	queued := true
	defer func() {
		if queued {
			s.mu.Lock()
			b.queue = remove(b.queue, w)
			s.broadcast(b)
			s.mu.Unlock()
		}
	}()
	lastPos, lastNote := -1, ""
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return status.Error(codes.Unavailable, "the agent stops")
		}
		if b.lease == nil && !b.opening && best(b.queue) == w {
			b.opening = true
			s.mu.Unlock()
			l, token, err := s.start(ctx, b, holder, ownerOf(ctx), false)
			s.mu.Lock()
			b.opening = false
			var bl *busyLocal
			switch {
			case err == nil:
				b.queue = remove(b.queue, w)
				queued = false
				b.lease = l
				s.tokens[l.tokenSum] = l
				s.broadcast(b)
				s.mu.Unlock()
				s.logf("lease of %s granted to %s", b.spec.Name, holder)
				caps := []string{}
				for _, c := range b.spec.Capabilities() {
					caps = append(caps, string(c))
				}
				if err := stream.Send(&remotepb.AcquireEvent{Event: &remotepb.AcquireEvent_Grant{Grant: &remotepb.Grant{
					Token: token, TtlMs: s.opts.TTL.Milliseconds(), Capabilities: caps}}}); err != nil {
					go s.end(l, false, "the client left before it got the lease")
					return err
				}
				return nil
			case errors.As(err, &bl):
				b.note = "the board's lock is " + bl.Error()
			default:
				s.broadcast(b)
				s.mu.Unlock()
				s.logf("board %s: cannot start a lease for %s: %v", b.spec.Name, holder, err)
				return status.Errorf(codes.Unavailable, "board %s: %v", b.spec.Name, err)
			}
		}
		pos := position(b.queue, w)
		cur := ""
		if b.lease != nil {
			cur = b.lease.holder
		}
		note := ""
		if pos == 1 && b.lease == nil {
			note = b.note
		}
		ch := b.changed
		s.mu.Unlock()
		if pos != lastPos || note != lastNote {
			lastPos, lastNote = pos, note
			if err := stream.Send(&remotepb.AcquireEvent{Event: &remotepb.AcquireEvent_Position{Position: &remotepb.Position{
				Position: int32(pos), Holder: cur, Note: note}}}); err != nil {
				return err
			}
		}
		var retry <-chan time.Time
		if note != "" {
			retry = time.After(lockRetry)
		}
		select {
		case <-ch:
		case <-retry:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// ownerOf is the identity a lease taken by ctx's caller is bound to: the
// client certificate over TLS; nobody over a unix socket (the token alone).
func ownerOf(ctx context.Context) string {
	if id := identity(ctx); strings.HasPrefix(id, "cert ") {
		return id
	}
	return ""
}

// clip makes s printable and cuts it to n bytes at a character boundary.
func clip(s string, n int) string {
	s, _ = shorten.Cut(lock.Printable(s), n)
	return s
}

// Keepalive renews the caller's lease.
func (s *service) Keepalive(ctx context.Context, _ *remotepb.LeaseRequest) (*remotepb.LeaseReply, error) {
	l, err := s.leaseOf(ctx)
	if err != nil {
		return nil, err
	}
	defer l.done()
	s.mu.Lock()
	l.deadline = time.Now().Add(s.opts.TTL)
	s.mu.Unlock()
	return &remotepb.LeaseReply{TtlMs: s.opts.TTL.Milliseconds()}, nil
}

// Release ends the caller's lease, leaving the board's power as it is
// (granted leases end through (*Server).Release, which powers off).
func (s *service) Release(ctx context.Context, _ *remotepb.LeaseRequest) (*remotepb.LeaseReply, error) {
	l, err := s.leaseOf(ctx)
	if err != nil {
		return nil, err
	}
	l.done()
	if l.managed {
		return nil, status.Error(codes.PermissionDenied, "this lease was granted by the agent's host and ends there")
	}
	go s.end(l, false, "released by its holder")
	return &remotepb.LeaseReply{}, nil
}

// Power switches the board or reads its state.
func (s *service) Power(ctx context.Context, req *remotepb.PowerRequest) (*remotepb.PowerReply, error) {
	l, err := s.leaseOf(ctx)
	if err != nil {
		return nil, err
	}
	defer l.done()
	dev, err := l.device(drivers.CapPower)
	if err != nil {
		return nil, err
	}
	ctx, cancel := mergeCtx(ctx, l.ctx)
	defer cancel()
	p := dev.(drivers.Power)
	switch req.Action {
	case remotepb.PowerRequest_ON:
		err = p.On(ctx)
	case remotepb.PowerRequest_OFF:
		err = p.Off(ctx)
	case remotepb.PowerRequest_CYCLE:
		d := time.Duration(req.DelayMs) * time.Millisecond
		if d < 0 || d > time.Hour {
			return nil, status.Error(codes.InvalidArgument, "cycle delay out of range")
		}
		if c, ok := dev.(drivers.Cycler); ok {
			err = c.Cycle(ctx, d)
		} else if err = p.Off(ctx); err == nil {
			select {
			case <-time.After(d):
				err = p.On(ctx)
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	case remotepb.PowerRequest_RESET:
		r, ok := dev.(drivers.Resetter)
		if !ok {
			return nil, status.Error(codes.Unimplemented, "the board's power driver cannot reset")
		}
		err = r.Reset(ctx)
	case remotepb.PowerRequest_STATUS:
	default:
		return nil, status.Error(codes.InvalidArgument, "unknown power action")
	}
	if err != nil {
		return nil, infra(err)
	}
	st := "unknown"
	if ps, ok := dev.(drivers.PowerStater); ok {
		on, err := ps.PowerState(ctx)
		switch {
		case err != nil && req.Action == remotepb.PowerRequest_STATUS:
			return nil, infra(err)
		case err != nil:
		case on:
			st = "on"
		default:
			st = "off"
		}
	}
	return &remotepb.PowerReply{State: st}, nil
}

// mergeCtx is a context cancelled when either is.
func mergeCtx(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// Console is the board's console both ways.
func (s *service) Console(stream remotepb.Agent_ConsoleServer) error {
	l, err := s.leaseOf(stream.Context())
	if err != nil {
		return err
	}
	defer l.done()
	dev, err := l.device(drivers.CapConsole)
	if err != nil {
		return err
	}
	ctx, cancel := mergeCtx(stream.Context(), l.ctx)
	defer cancel()
	rwc, err := dev.(drivers.Console).OpenConsole(ctx)
	if err != nil {
		return infra(err)
	}
	return pump(ctx, stream, rwc)
}

// dataStream is a two-way stream of Data messages.
type dataStream interface {
	Send(*remotepb.Data) error
	Recv() (*remotepb.Data, error)
}

// pump copies between stream and rwc until either ends or ctx is done;
// rwc is closed.
func pump(ctx context.Context, stream dataStream, rwc io.ReadWriteCloser) error {
	var once sync.Once
	closeRWC := func() { once.Do(func() { rwc.Close() }) }
	defer closeRWC()
	stop := context.AfterFunc(ctx, closeRWC)
	defer stop()
	errc := make(chan error, 2)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := rwc.Read(buf)
			if n > 0 {
				if serr := stream.Send(&remotepb.Data{Data: buf[:n]}); serr != nil {
					errc <- serr
					return
				}
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			if _, err := rwc.Write(m.Data); err != nil {
				errc <- err
				return
			}
		}
	}()
	err := <-errc
	closeRWC()
	if ctx.Err() != nil {
		return status.Error(codes.Aborted, "the lease ended")
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return infra(err)
}

// Flash writes an image streamed by the client.
func (s *service) Flash(stream remotepb.Agent_FlashServer) error {
	l, err := s.leaseOf(stream.Context())
	if err != nil {
		return err
	}
	defer l.done()
	dev, err := l.device(drivers.CapStorage)
	if err != nil {
		return err
	}
	ctx, cancel := mergeCtx(stream.Context(), l.ctx)
	defer cancel()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return status.Error(codes.InvalidArgument, "a flash starts with its header")
	}
	opts := flash.Options{SHA256: hdr.Sha256, Verify: hdr.Verify, NoBmap: len(hdr.Bmap) == 0}
	tmp, err := os.MkdirTemp("", "jsplan-agent-flash-")
	if err != nil {
		return infra(err)
	}
	defer os.RemoveAll(tmp)
	if len(hdr.Bmap) > 0 {
		name := filepath.Base(hdr.BmapName)
		if name == "." || name == "/" || name == "" {
			name = "image.bmap"
		}
		opts.Bmap = filepath.Join(tmp, name)
		if err := os.WriteFile(opts.Bmap, hdr.Bmap, 0o600); err != nil {
			return infra(err)
		}
	}
	// The first bytes tell the format, which decides how the image is
	// received.
	var head []byte
	for len(head) < 8 {
		m, err := recvCtx(ctx, stream)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if m.GetHeader() != nil {
			return status.Error(codes.InvalidArgument, "a second flash header")
		}
		head = append(head, m.GetData()...)
		releaseData(m.GetData())
	}
	opts.Progress = &progressLines{send: func(line string) {
		stream.Send(&remotepb.FlashOut{Msg: &remotepb.FlashOut_Progress{Progress: line}})
	}}
	st := dev.(drivers.Storage)
	if flash.PrefersFile(head) {
		// xz is received whole (as it is on disk: compressed) into an
		// unlinked file, then written as `jsplan flash` writes a file:
		// its blocks decoded in parallel through the index at its end,
		// the unmapped ones skipped. Its decoding is slow enough (tens of
		// MB/s of image data) that the transfer up front costs little.
		spool, err := s.spoolImage(ctx, stream, head)
		if spool != nil {
			defer spool.Close()
		}
		if err != nil {
			return err
		}
		opts.Image = "/proc/self/fd/" + strconv.Itoa(int(spool.Fd()))
		return s.writeImage(ctx, ctx, stream, st, opts, nil)
	}
	// Every other format is decoded front to back as it arrives, through
	// a pipe: receiving, decoding and writing overlap, where receiving it
	// whole first would add the transfer time to the flash.
	pr, pw, err := os.Pipe()
	if err != nil {
		return infra(err)
	}
	defer pr.Close()
	// A larger pipe (best effort: above the system's pipe-max-size, 1 MiB
	// by default, only root may): the chunks receiving and decoding can be
	// apart, so that neither waits for the other to be scheduled.
	if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, pipeSize); err != nil {
		unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, remotepb.ChunkSize)
	}
	fctx, fcancel := context.WithCancelCause(ctx)
	defer fcancel(nil)
	go func() {
		// ends when the image has arrived, the stream fails, or the flash
		// is over (the pipe's reader closed: EPIPE)
		defer pw.Close()
		if _, err := pw.Write(head); err != nil {
			return
		}
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				return
			}
			if err != nil {
				fcancel(errRecv{err})
				return
			}
			if m.GetHeader() != nil {
				fcancel(errRecv{status.Error(codes.InvalidArgument, "a second flash header")})
				return
			}
			_, err = pw.Write(m.GetData())
			releaseData(m.GetData())
			if err != nil {
				return
			}
		}
	}()
	opts.Image = "/proc/self/fd/" + strconv.Itoa(int(pr.Fd()))
	return s.writeImage(ctx, fctx, stream, st, opts, func() error {
		var r errRecv
		if errors.As(context.Cause(fctx), &r) {
			return r.err
		}
		return nil
	})
}

// recvCtx receives the next message, or gives up when ctx ends (the
// handler must then return: the receive it left waiting ends with it).
func recvCtx(ctx context.Context, stream remotepb.Agent_FlashServer) (*remotepb.FlashIn, error) {
	type msg struct {
		m   *remotepb.FlashIn
		err error
	}
	ch := make(chan msg, 1)
	go func() {
		m, err := stream.Recv()
		ch <- msg{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		return nil, status.Error(codes.Aborted, "the lease ended during the flash")
	}
}

// pipeSize is the size asked for the pipe of a streamed image.
const pipeSize = 8 << 20

// errRecv is why receiving a streamed image failed.
type errRecv struct{ err error }

func (e errRecv) Error() string { return "receiving the image: " + e.err.Error() }

// spoolImage receives the rest of an image (head is its start) into an
// unlinked file in the state directory.
func (s *service) spoolImage(ctx context.Context, stream remotepb.Agent_FlashServer, head []byte) (*os.File, error) {
	spool, err := os.CreateTemp(s.opts.StateDir, ".flash-")
	if err != nil {
		return nil, infra(err)
	}
	os.Remove(spool.Name())
	if _, err := spool.Write(head); err != nil {
		return spool, infra(fmt.Errorf("storing the image on the agent: %w", err))
	}
	received := int64(len(head))
	lastNote := time.Now()
	msgs := make(chan *remotepb.FlashIn)
	recvErr := make(chan error, 1)
	go func() {
		// ends with the stream, which ends when the handler returns
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var m *remotepb.FlashIn
		select {
		case m = <-msgs:
		case err := <-recvErr:
			if err != io.EOF {
				return spool, err
			}
			return spool, nil
		case <-ctx.Done():
			// the lease ended (or the client left) with the image half sent
			return spool, status.Error(codes.Aborted, "the lease ended during the flash")
		}
		d := m.GetData()
		if d == nil && m.GetHeader() != nil {
			return spool, status.Error(codes.InvalidArgument, "a second flash header")
		}
		_, err := spool.Write(d)
		received += int64(len(d))
		releaseData(d)
		if err != nil {
			return spool, infra(fmt.Errorf("storing the image on the agent: %w", err))
		}
		if time.Since(lastNote) > 5*time.Second {
			lastNote = time.Now()
			stream.Send(&remotepb.FlashOut{Msg: &remotepb.FlashOut_Progress{Progress: fmt.Sprintf("agent: received %d MiB of the image", received>>20)}})
		}
	}
}

// writeImage writes opts.Image on the board's storage (the write ends
// with wctx, the rest with ctx) and sends the result. recvErr, when not
// nil, tells why receiving the image failed (nil if it did not), which is
// then the flash's error.
func (s *service) writeImage(ctx, wctx context.Context, stream remotepb.Agent_FlashServer, st drivers.Storage, opts flash.Options, recvErr func() error) error {
	target, err := st.AttachHost(ctx)
	if err != nil {
		return infra(err)
	}
	res, werr := flash.Write(wctx, target, opts)
	aerr := st.AttachBoard(ctx)
	if recvErr != nil {
		if err := recvErr(); err != nil {
			// the client left or broke the protocol with the image half
			// sent
			if status.Code(err) == codes.Canceled {
				return status.Error(codes.Aborted, "the client left during the flash")
			}
			return err
		}
	}
	if aerr != nil && werr == nil {
		werr = aerr
	}
	out := &remotepb.FlashResult{BytesWritten: res.BytesWritten, ImageSize: res.ImageSize, Mapped: res.Mapped,
		DurationMs: res.Duration.Milliseconds(), Format: res.Format, Decoder: res.Decoder, Sha256: res.SHA256,
		Verified: res.Verified, BlockDevice: res.BlockDevice, Target: target}
	if werr != nil {
		if ctx.Err() != nil {
			return status.Error(codes.Aborted, "the lease ended during the flash")
		}
		out.Error, out.Kind = werr.Error(), kindOf(werr)
	}
	return stream.Send(&remotepb.FlashOut{Msg: &remotepb.FlashOut_Result{Result: out}})
}

// Kinds of flash errors, as FlashResult.kind names them.
var flashKinds = []struct {
	name string
	err  error
}{
	{"image", flash.ErrImage}, {"bmap", flash.ErrBmap}, {"checksum", flash.ErrChecksum}, {"verify", flash.ErrVerify},
	{"refused", flash.ErrRefused}, {"full", flash.ErrTargetFull}, {"target", flash.ErrTarget},
}

func kindOf(err error) string {
	for _, k := range flashKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

// FlashError returns the internal/flash error a FlashResult's kind names
// (nil for none or an unknown kind), for the client to wrap.
func FlashError(kind string) error {
	for _, k := range flashKinds {
		if k.name == kind {
			return k.err
		}
	}
	return nil
}

// progressLines sends each progress line as a message.
type progressLines struct {
	send func(string)
	part []byte
}

func (p *progressLines) Write(b []byte) (int, error) {
	p.part = append(p.part, b...)
	for {
		i := strings.IndexAny(string(p.part), "\r\n")
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(p.part[:i])); line != "" {
			p.send(line)
		}
		p.part = p.part[i+1:]
	}
	if len(p.part) > 4096 {
		p.part = p.part[:0]
	}
	return len(b), nil
}

// Endpoint tells the board's SSH login; the connection goes through Tunnel.
func (s *service) Endpoint(ctx context.Context, _ *remotepb.LeaseRequest) (*remotepb.EndpointReply, error) {
	l, err := s.leaseOf(ctx)
	if err != nil {
		return nil, err
	}
	defer l.done()
	dev, err := l.device(drivers.CapNetwork)
	if err != nil {
		return nil, err
	}
	ep, err := dev.(drivers.Network).Endpoint(ctx)
	if err != nil {
		return nil, infra(err)
	}
	out := &remotepb.EndpointReply{User: ep.User, Password: ep.Password, Options: ep.Options}
	if ep.KeyFile != "" {
		if out.Key, err = os.ReadFile(ep.KeyFile); err != nil {
			return nil, infra(err)
		}
	}
	return out, nil
}

// Tunnel is one TCP connection to the board's network endpoint.
func (s *service) Tunnel(stream remotepb.Agent_TunnelServer) error {
	l, err := s.leaseOf(stream.Context())
	if err != nil {
		return err
	}
	defer l.done()
	dev, err := l.device(drivers.CapNetwork)
	if err != nil {
		return err
	}
	ctx, cancel := mergeCtx(stream.Context(), l.ctx)
	defer cancel()
	ep, err := dev.(drivers.Network).Endpoint(ctx)
	if err != nil {
		return infra(err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
	if err != nil {
		return infra(err)
	}
	return pump(ctx, stream, c)
}

// service is the gRPC face of a Server (its method names are the
// protocol's; the Server's own are the embedding program's).
type service struct {
	remotepb.UnimplementedAgentServer
	*Server
}
