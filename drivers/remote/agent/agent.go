// Package agent serves the boards of an inventory over gRPC (the protocol
// in drivers/remote/remotepb) to the remote driver: power, the console as
// a two-way stream, storage (an image streamed as it is on disk, decoded,
// written and verified here by internal/flash) and the board's network
// endpoint as tunnelled TCP connections. `jsplan serve` runs it; the DRA
// kubelet plugin imports it and grants leases itself.
//
// A board is used under a lease. A lease has a holder, a start and a
// keepalive: one not renewed within Options.TTL ends, the board is powered
// off (its safe state) and goes to the next waiter, by priority, then
// arrival. While a lease lasts the agent holds the board's internal/lock
// lock for it, so local jsplan runs and agent clients exclude each other,
// and the board's drivers are open in the agent (a virtual board lives in
// the agent for the lease).
//
// Who may do what: a unix socket is guarded by its file permissions (the
// socket is created 0660); a TCP listener needs mutual TLS. Any
// authenticated client may list boards and queue for one; every call
// about a board needs the token of that board's lease, and over TLS the
// certificate that took the lease. Listeners served with Restricted allow
// no Acquire at all: only the leases the embedding program granted.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/lock"
)

// Options configure a Server.
type Options struct {
	// LockDir is the internal/lock directory whose board locks the agent
	// takes for its lease holders ("" = lock.DefaultDir()).
	LockDir string
	// StateDir holds the drivers' state (virtual disks), one directory per
	// board ("" = a directory under the user's state directory is up to
	// the caller; required).
	StateDir string
	// TTL is how long a lease lasts without a keepalive (default 30 s).
	TTL time.Duration
	// HandshakeTimeout bounds a new connection's TLS handshake and HTTP/2
	// preface: a client that connects and sends nothing is dropped after it
	// (default 10 s).
	HandshakeTimeout time.Duration
	// PowerOffTimeout bounds the power off when a lease expires (default 1 min).
	PowerOffTimeout time.Duration
	// TLS, when set, is the mutual-TLS configuration of TCP listeners
	// (pki.ServerConfig). Serve refuses a TCP listener without it.
	TLS *tls.Config
	// Log receives the agent's messages (leases granted, expired, refused).
	Log func(format string, args ...any)
}

// Server serves an inventory's boards.
type Server struct {
	inv  *engine.Inventory
	opts Options

	mu      sync.Mutex
	boards  map[string]*board
	tokens  map[string]*lease // by sha256 of the token
	closed  bool
	servers []*grpc.Server
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	seq     uint64
}

type board struct {
	spec    *engine.BoardSpec
	lease   *lease // current lease (also while it is ending)
	queue   []*waiter
	changed chan struct{}
	opening bool
	note    string // why the head of the queue waits (a local run holds the lock)
}

type waiter struct {
	holder   string
	priority int32
	seq      uint64
	since    time.Time
}

type lease struct {
	b        *board
	tokenSum string
	holder   string
	owner    string // identity that took it ("" = granted: anyone with the token)
	since    time.Time
	deadline time.Time
	managed  bool // Grant: kept alive by the server until Release
	ending   bool
	lk       *lock.Lock
	open     *engine.Board
	ctx      context.Context
	cancel   context.CancelFunc
	ops      sync.WaitGroup
}

// New makes a server for the boards of inv.
func New(inv *engine.Inventory, opts Options) (*Server, error) {
	if inv == nil {
		return nil, errors.New("agent: no inventory")
	}
	if opts.StateDir == "" {
		return nil, errors.New("agent: Options.StateDir is required")
	}
	if opts.LockDir == "" {
		opts.LockDir = lock.DefaultDir()
	}
	if opts.TTL <= 0 {
		opts.TTL = 30 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.PowerOffTimeout <= 0 {
		opts.PowerOffTimeout = time.Minute
	}
	s := &Server{inv: inv, opts: opts, boards: map[string]*board{}, tokens: map[string]*lease{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, b := range inv.Boards {
		s.boards[b.Name] = &board{spec: b, changed: make(chan struct{})}
	}
	s.wg.Add(1)
	go s.reaper()
	return s, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Log != nil {
		s.opts.Log(format, args...)
	}
}

// ServeOption changes how one listener is served.
type ServeOption func(*serveConfig)

type serveConfig struct{ restricted bool }

// Restricted serves only calls on leases the program granted (Grant):
// Acquire is refused and Boards shows only the caller's own board. For a
// socket handed to one pod.
func Restricted() ServeOption { return func(c *serveConfig) { c.restricted = true } }

// Serve serves l until Close (or l fails). A unix listener relies on its
// socket's file permissions; any other needs Options.TLS (mutual TLS).
func (s *Server) Serve(l net.Listener, opt ...ServeOption) error {
	cfg := serveConfig{}
	for _, o := range opt {
		o(&cfg)
	}
	var creds credentials.TransportCredentials
	if _, ok := l.Addr().(*net.UnixAddr); ok {
		creds = unixCreds{}
	} else {
		if s.opts.TLS == nil {
			return errors.New("agent: a TCP listener needs TLS (mutual TLS with the operator's CA)")
		}
		if s.opts.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
			return errors.New("agent: the TLS configuration must require and verify client certificates")
		}
		creds = tlsCreds(s.opts.TLS)
	}
	g := grpc.NewServer(
		grpc.Creds(creds),
		grpc.ForceServerCodecV2(newCodec()),
		grpc.ConnectionTimeout(s.opts.HandshakeTimeout),
		grpc.MaxRecvMsgSize(remotepb.MaxMessage),
		grpc.MaxSendMsgSize(remotepb.MaxMessage),
		grpc.MaxConcurrentStreams(1024),
		// windows that keep an image flowing at disk speed on a fast link
		// (gRPC's default starts at 64 KiB)
		grpc.InitialWindowSize(remotepb.Window),
		grpc.InitialConnWindowSize(remotepb.Window),
		grpc.ReadBufferSize(remotepb.Buffer),
		grpc.WriteBufferSize(remotepb.Buffer),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(withConfig(ctx, cfg), req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &cfgStream{ServerStream: ss, ctx: withConfig(ss.Context(), cfg)})
		}),
	)
	remotepb.RegisterAgentServer(g, &service{Server: s})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("agent: closed")
	}
	s.servers = append(s.servers, g)
	s.mu.Unlock()
	err := g.Serve(l)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

type cfgKey struct{}

func withConfig(ctx context.Context, c serveConfig) context.Context {
	return context.WithValue(ctx, cfgKey{}, c)
}

func configOf(ctx context.Context) serveConfig {
	c, _ := ctx.Value(cfgKey{}).(serveConfig)
	return c
}

type cfgStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *cfgStream) Context() context.Context { return c.ctx }

// Close stops serving, ends every lease (boards powered off, locks
// released) and waits for that.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.servers
	var leases []*lease
	for _, b := range s.boards {
		if b.lease != nil && !b.lease.ending {
			leases = append(leases, b.lease)
		}
	}
	s.mu.Unlock()
	for _, g := range servers {
		g.Stop()
	}
	for _, l := range leases {
		s.end(l, true, "the agent stops")
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Grant gives board to holder at once (it must be free: no lease, no
// local run holding its lock) and returns the lease's token. The lease
// needs no keepalive: it lasts until Release or Close.
func (s *Server) Grant(ctx context.Context, boardName, holder string) (string, error) {
	s.mu.Lock()
	b := s.boards[boardName]
	switch {
	case s.closed:
		s.mu.Unlock()
		return "", errors.New("agent: closed")
	case b == nil:
		s.mu.Unlock()
		return "", fmt.Errorf("agent: no board %q", boardName)
	case b.lease != nil || b.opening:
		who := "a lease being set up"
		if b.lease != nil {
			who = "lease of " + b.lease.holder
		}
		s.mu.Unlock()
		return "", fmt.Errorf("agent: board %s is busy (%s)", boardName, who)
	}
	b.opening = true
	s.mu.Unlock()
	l, token, err := s.start(ctx, b, holder, "", true)
	s.mu.Lock()
	b.opening = false
	if err == nil {
		b.lease = l
		s.tokens[l.tokenSum] = l
	}
	s.broadcast(b)
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	s.logf("lease of %s granted to %s", boardName, holder)
	return token, nil
}

// Release ends the lease of token: the board is powered off (its safe
// state), closed and its lock released, then it goes to the next waiter.
// An unknown token is no error (the lease already ended).
func (s *Server) Release(token string) error {
	s.mu.Lock()
	l := s.tokens[sum(token)]
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	return s.end(l, true, "released")
}

func sum(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// start takes the board's lock and opens its drivers for a new lease.
func (s *Server) start(ctx context.Context, b *board, holder, owner string, managed bool) (*lease, string, error) {
	host, _ := os.Hostname()
	me := lock.Holder{Board: b.spec.Name, Plan: "jsplan serve: lease of " + holder, PID: os.Getpid(), Host: host, Since: time.Now()}
	lk, h, err := lock.TryAcquire(s.opts.LockDir, b.spec.Name, me)
	if err != nil {
		return nil, "", err
	}
	if lk == nil {
		return nil, "", &busyLocal{holder: h}
	}
	env := drivers.Env{
		Board:    b.spec.Name,
		StateDir: filepath.Join(s.opts.StateDir, b.spec.Name),
		Log:      func(format string, args ...any) { s.logf("board %s: "+format, append([]any{b.spec.Name}, args...)...) },
		Secret:   func(string) {},
	}
	open, err := engine.OpenBoard(ctx, b.spec, env)
	if err != nil {
		lk.Release()
		return nil, "", err
	}
	token := newToken()
	l := &lease{b: b, tokenSum: sum(token), holder: holder, owner: owner, since: time.Now(),
		deadline: time.Now().Add(s.opts.TTL), managed: managed, lk: lk, open: open}
	l.ctx, l.cancel = context.WithCancel(s.ctx)
	return l, token, nil
}

type busyLocal struct{ holder *lock.Holder }

func (e *busyLocal) Error() string {
	if e.holder != nil {
		return "held by a local run: " + e.holder.String()
	}
	return "held by a local run"
}

// end ends l: its calls are cancelled, the board powered off when off
// is set, its drivers closed, its lock released; then the next waiter
// may have it.
func (s *Server) end(l *lease, off bool, why string) error {
	s.mu.Lock()
	if l.ending {
		s.mu.Unlock()
		return nil
	}
	l.ending = true
	delete(s.tokens, l.tokenSum)
	s.mu.Unlock()
	l.cancel()
	l.ops.Wait()
	var err error
	if off {
		if p, perr := l.open.Power(); perr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.PowerOffTimeout)
			if err = p.Off(ctx); err != nil {
				s.logf("board %s: power off after the lease failed: %v", l.b.spec.Name, err)
			}
			cancel()
		}
	}
	if cerr := l.open.Close(); cerr != nil {
		s.logf("board %s: closing: %v", l.b.spec.Name, cerr)
	}
	l.lk.Release()
	s.logf("lease of %s by %s ended: %s%s", l.b.spec.Name, l.holder, why, map[bool]string{true: " (powered off)", false: ""}[off])
	s.mu.Lock()
	if l.b.lease == l {
		l.b.lease = nil
	}
	s.broadcast(l.b)
	s.mu.Unlock()
	return err
}

// broadcast wakes everything waiting on b; s.mu is held.
func (s *Server) broadcast(b *board) {
	close(b.changed)
	b.changed = make(chan struct{})
}

// reaper ends the leases whose keepalive is late.
func (s *Server) reaper() {
	defer s.wg.Done()
	tick := max(s.opts.TTL/10, 20*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var late []*lease
		s.mu.Lock()
		for _, b := range s.boards {
			if l := b.lease; l != nil && !l.ending && !l.managed && now.After(l.deadline) {
				late = append(late, l)
			}
		}
		s.mu.Unlock()
		for _, l := range late {
			s.logf("lease of %s by %s expired: no keepalive for %s", l.b.spec.Name, l.holder, s.opts.TTL)
			go s.end(l, true, "expired")
		}
	}
}

// best is the waiter served next: highest priority, then earliest.
func best(q []*waiter) *waiter {
	var w *waiter
	for _, x := range q {
		if w == nil || x.priority > w.priority || (x.priority == w.priority && x.seq < w.seq) {
			w = x
		}
	}
	return w
}

// position is w's place in q (1 = next).
func position(q []*waiter, w *waiter) int {
	sorted := append([]*waiter(nil), q...)
	sortWaiters(sorted)
	for i, x := range sorted {
		if x == w {
			return i + 1
		}
	}
	return 0
}

func sortWaiters(q []*waiter) {
	sort.Slice(q, func(i, j int) bool {
		if q[i].priority != q[j].priority {
			return q[i].priority > q[j].priority
		}
		return q[i].seq < q[j].seq
	})
}

func remove(q []*waiter, w *waiter) []*waiter {
	for i, x := range q {
		if x == w {
			return append(q[:i], q[i+1:]...)
		}
	}
	return q
}

// leaseOf finds the caller's lease from the token in its metadata.
func (s *Server) leaseOf(ctx context.Context) (*lease, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(remotepb.TokenKey)
	if len(vals) != 1 || vals[0] == "" {
		return nil, status.Error(codes.Unauthenticated, "no lease token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.tokens[sum(vals[0])]
	if l == nil || l.ending {
		return nil, status.Error(codes.PermissionDenied, "no lease with this token (it expired, was released, or never existed)")
	}
	if l.owner != "" && l.owner != identity(ctx) {
		return nil, status.Error(codes.PermissionDenied, "the lease belongs to another client certificate")
	}
	l.ops.Add(1)
	return l, nil
}

func (l *lease) done() { l.ops.Done() }

// infra turns a driver error into a gRPC status the client reports as an
// infrastructure error.
func infra(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Aborted, "the lease ended: "+err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// check is what an RPC on a lease's board does first.
func (l *lease) device(c drivers.Capability) (drivers.Device, error) {
	var (
		dev any
		err error
	)
	switch c {
	case drivers.CapPower:
		dev, err = l.open.Power()
	case drivers.CapConsole:
		dev, err = l.open.ConsoleDevice()
	case drivers.CapStorage:
		dev, err = l.open.Storage()
	case drivers.CapNetwork:
		dev, err = l.open.Network()
	}
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return dev.(drivers.Device), nil
}
