// Package remote is the driver of a board served by an agent (`jsplan
// serve`, drivers/remote/agent) on another host or in another container.
// It registers as "remote" and provides what the agent's board provides:
// power, the console, storage (the image is streamed as it is on disk and
// written by the agent) and the network (the board's SSH endpoint is
// forwarded through a listener on 127.0.0.1).
//
//	drivers:
//	  remote:
//	    address: unix:/run/jsplan/agent.sock    # or tcp:lab-host:7301
//	    board: sim-1
//	    # tcp needs mutual TLS (jsplan ca makes these):
//	    # ca: certs/ca.crt, cert: certs/alice.crt, key: certs/alice.key
//
// Opening the board queues for its lease on the agent (by priority, then
// arrival; the position is logged) and keeps the lease alive until Close.
// A lease the agent's host granted (the DRA driver) is used by its token
// instead: token-file, or JSPLAN_LEASE_TOKEN.
package remote

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/internal/pki"
	"github.com/jsplan/jsplan/schema"
)

// Name is the driver's registry name.
const Name = "remote"

// TokenEnv names the environment variable that may hold a granted lease's
// token (when the configuration names no token-file).
const TokenEnv = "JSPLAN_LEASE_TOKEN"

// BoardEnv names the variable that says which board (the agent's name)
// the token in TokenEnv is for; when set, other boards ignore the token.
const BoardEnv = "JSPLAN_LEASE_BOARD"

// DefaultWait is how long Open queues for the lease by default.
const DefaultWait = 30 * time.Minute

func init() {
	drivers.Register(drivers.Info{
		Name:    Name,
		Summary: "A board served by an agent (jsplan serve) over a unix socket or mutual TLS: power, console, storage and network through it, under an expiring lease.",
		Schema:  configSchema(),
		New:     func() drivers.Device { return &Device{} },
	})
}

func configSchema() map[string]any {
	caps := map[string]any{"type": "array", "description": "What the agent's board serves, for validation (default: power, console, storage, network).",
		"items": map[string]any{"enum": []any{"power", "console", "storage", "network"}}}
	return schema.Object("A board served by an agent (jsplan serve).", map[string]any{
		"address":      schema.NonEmpty("The agent: unix:PATH (file permissions and a per-lease token) or tcp:HOST:PORT (mutual TLS)."),
		"board":        schema.NonEmpty("The board's name in the agent's inventory."),
		"ca":           schema.NonEmpty("TLS: the lab CA's certificate (relative to the inventory)."),
		"cert":         schema.NonEmpty("TLS: this client's certificate."),
		"key":          schema.NonEmpty("TLS: this client's key."),
		"server-name":  schema.NonEmpty("TLS: the name in the agent's certificate (default: the address's host)."),
		"token-file":   schema.NonEmpty("A file holding the token of a lease granted on the agent's host (the DRA driver's); without it, JSPLAN_LEASE_TOKEN, else the driver queues for a lease."),
		"holder":       schema.NonEmpty("Who holds the lease, as the agent shows it (default: user@host and pid)."),
		"priority":     map[string]any{"type": "integer", "minimum": -1000, "maximum": 1000, "description": "Queue priority: higher is served first, then arrival (default 0)."},
		"wait":         schema.Duration("How long to queue for the lease (default 30m).", 0),
		"capabilities": caps,
	}, "address", "board")
}

// Device is a board on an agent.
type Device struct {
	Address    string       `yaml:"address"`
	Board      string       `yaml:"board"`
	CA         string       `yaml:"ca"`
	Cert       string       `yaml:"cert"`
	Key        string       `yaml:"key"`
	ServerName string       `yaml:"server-name"`
	TokenFile  string       `yaml:"token-file"`
	Holder     string       `yaml:"holder"`
	Priority   int32        `yaml:"priority"`
	Wait       cfg.Duration `yaml:"wait"`
	Caps       []string     `yaml:"capabilities"`

	env     drivers.Env
	conn    *grpc.ClientConn
	client  remotepb.AgentClient
	token   atomic.Pointer[string]
	granted bool // the token came from outside: no keepalive, no release
	ctx     context.Context
	cancel  context.CancelCauseFunc
	wg      sync.WaitGroup

	tunMu  sync.Mutex
	tunL   net.Listener
	tunKey string
}

var (
	_ drivers.Power       = (*Device)(nil)
	_ drivers.Cycler      = (*Device)(nil)
	_ drivers.Resetter    = (*Device)(nil)
	_ drivers.PowerStater = (*Device)(nil)
	_ drivers.Console     = (*Device)(nil)
	_ drivers.Storage     = (*Device)(nil)
	_ drivers.ImageWriter = (*Device)(nil)
	_ drivers.Network     = (*Device)(nil)
	_ drivers.Validator   = (*Device)(nil)
)

// Validate checks the configuration without connecting.
func (d *Device) Validate() error {
	var errs *drivers.FieldError
	network, _, err := remotepb.ParseAddress(d.Address)
	if err != nil {
		errs = errs.Also(drivers.ErrField("address", "%v", err))
	}
	if network == "tcp" {
		for _, k := range []struct{ key, v string }{{"ca", d.CA}, {"cert", d.Cert}, {"key", d.Key}} {
			if k.v == "" {
				errs = errs.Also(drivers.ErrField(k.key, "a tcp: address needs %s (mutual TLS)", k.key).
					WithDetail("make a lab CA and certificates with `jsplan ca`, or use a unix: socket"))
			}
		}
	}
	if errs == nil {
		return nil
	}
	return errs
}

// Capabilities lists what the configuration says the agent's board serves.
func (d *Device) Capabilities() []drivers.Capability {
	if len(d.Caps) == 0 {
		return []drivers.Capability{drivers.CapPower, drivers.CapConsole, drivers.CapStorage, drivers.CapNetwork}
	}
	var out []drivers.Capability
	for _, c := range d.Caps {
		out = append(out, drivers.Capability(c))
	}
	return out
}

func (d *Device) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.env.BaseDir, p)
}

// dial connects to the agent (no lease yet).
func (d *Device) dial() error {
	network, target, err := remotepb.ParseAddress(d.Address)
	if err != nil {
		return err
	}
	var creds credentials.TransportCredentials
	var dialTarget string
	if network == "unix" {
		creds = insecure.NewCredentials() // the socket's permissions guard it; the token the lease
		dialTarget = "unix:" + target
	} else {
		host, _, err := net.SplitHostPort(target)
		if err != nil {
			return err
		}
		name := d.ServerName
		if name == "" {
			name = host
		}
		var tc *tls.Config
		if tc, err = pki.ClientConfig(pki.Files{CA: d.path(d.CA), Cert: d.path(d.Cert), Key: d.path(d.Key)}, name); err != nil {
			return err
		}
		creds = credentials.NewTLS(tc)
		dialTarget = "passthrough:///" + target
	}
	d.conn, err = grpc.NewClient(dialTarget,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(remotepb.MaxMessage), grpc.MaxCallSendMsgSize(remotepb.MaxMessage)),
		grpc.WithInitialWindowSize(remotepb.Window),
		grpc.WithInitialConnWindowSize(remotepb.Window),
		grpc.WithReadBufferSize(remotepb.Buffer),
		grpc.WithWriteBufferSize(remotepb.Buffer),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return inv(d.withToken(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, s grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return s(d.withToken(ctx), desc, cc, method, opts...)
		}),
	)
	if err != nil {
		return err
	}
	d.client = remotepb.NewAgentClient(d.conn)
	return nil
}

func (d *Device) withToken(ctx context.Context) context.Context {
	if t := d.token.Load(); t != nil {
		return metadata.AppendToOutgoingContext(ctx, remotepb.TokenKey, *t)
	}
	return ctx
}

func (d *Device) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if c := context.Cause(d.ctx); c != nil && d.ctx.Err() != nil {
		return drivers.Errorf(Name, op, "%v (%v)", describe(err), c)
	}
	return drivers.Errorf(Name, op, "%s", describe(err))
}

// describe turns a gRPC status into words.
func describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.Unavailable:
		return "agent unreachable or board failed: " + st.Message()
	case codes.PermissionDenied, codes.Unauthenticated:
		return "refused by the agent: " + st.Message()
	}
	return st.Message()
}

// Open takes the board's lease: by the granted token, or by queueing.
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	d.env = env
	d.ctx, d.cancel = context.WithCancelCause(context.Background())
	if err := drivers.Fatal(d.Validate()); err != nil {
		return err
	}
	if err := d.dial(); err != nil {
		return drivers.Errorf(Name, "open", "%v", err)
	}
	tok := ""
	if d.TokenFile != "" {
		b, err := os.ReadFile(d.path(d.TokenFile))
		if err != nil {
			d.conn.Close()
			return drivers.Errorf(Name, "open", "lease token: %v", err)
		}
		tok = strings.TrimSpace(string(b))
	} else if b := os.Getenv(BoardEnv); b == "" || b == d.Board {
		tok = strings.TrimSpace(os.Getenv(TokenEnv))
	}
	if tok != "" {
		if env.Secret != nil {
			env.Secret(tok)
		}
		d.token.Store(&tok)
		d.granted = true
		// a granted lease is the agent's to keep; this checks the token
		if _, err := d.client.Keepalive(ctx, &remotepb.LeaseRequest{}); err != nil {
			d.conn.Close()
			return d.fail("open", err)
		}
		return nil
	}
	ttl, err := d.acquire(ctx)
	if err != nil {
		d.conn.Close()
		return err
	}
	d.wg.Add(1)
	go d.keepalive(ttl)
	return nil
}

// LeaseToken is the token of the lease the device holds ("" before Open).
// Whoever has it uses the board while the lease lasts: `jsplan lock`
// hands it to its command.
func (d *Device) LeaseToken() string {
	if t := d.token.Load(); t != nil {
		return *t
	}
	return ""
}

func (d *Device) holder() string {
	if d.Holder != "" {
		return d.Holder
	}
	host, _ := os.Hostname()
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("%s@%s pid %d", name, host, os.Getpid())
}

// acquire queues for the lease, logging the position.
func (d *Device) acquire(ctx context.Context) (time.Duration, error) {
	wait := d.Wait.Or(DefaultWait)
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	stream, err := d.client.Acquire(actx, &remotepb.AcquireRequest{Board: d.Board, Holder: d.holder(), Priority: d.Priority})
	if err != nil {
		return 0, d.fail("lease", err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			// The wait is over when the client's timer fired, or when the
			// agent, which has the same deadline, ended the stream first
			// (RST_STREAM CANCEL can arrive before the timer fires).
			dl, _ := actx.Deadline()
			if (actx.Err() != nil || !time.Now().Before(dl)) && ctx.Err() == nil {
				return 0, drivers.Errorf(Name, "lease", "board %s on %s still busy after waiting %s", d.Board, d.Address, wait)
			}
			if err == io.EOF {
				err = errors.New("the agent ended the queue without a lease")
			}
			return 0, d.fail("lease", err)
		}
		if p := ev.GetPosition(); p != nil {
			msg := fmt.Sprintf("board %s on %s: waiting, position %d in the queue", d.Board, d.Address, p.Position)
			if p.Holder != "" {
				msg += ", held by " + p.Holder
			}
			if p.Note != "" {
				msg += "; " + p.Note
			}
			d.env.Logf("%s", msg)
			continue
		}
		if g := ev.GetGrant(); g != nil && g.Token != "" {
			if d.env.Secret != nil {
				d.env.Secret(g.Token)
			}
			d.token.Store(&g.Token)
			return time.Duration(g.TtlMs) * time.Millisecond, nil
		}
	}
}

// keepalive renews the lease every third of its TTL; when it cannot for a
// whole TTL, or the agent says the lease is gone, the device fails.
func (d *Device) keepalive(ttl time.Duration) {
	defer d.wg.Done()
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	every := max(ttl/3, 10*time.Millisecond)
	last := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.ctx, every)
		_, err := d.client.Keepalive(ctx, &remotepb.LeaseRequest{})
		cancel()
		if err == nil {
			last = time.Now()
			continue
		}
		if d.ctx.Err() != nil {
			return
		}
		code := status.Code(err)
		if code == codes.PermissionDenied || code == codes.Unauthenticated || time.Since(last) > ttl {
			d.env.Logf("board %s: the lease on %s is lost: %s", d.Board, d.Address, describe(err))
			d.cancel(fmt.Errorf("the lease on board %s is lost: %s", d.Board, describe(err)))
			return
		}
	}
}

// Close ends the lease (a granted one stays the agent's) and disconnects.
func (d *Device) Close() error {
	if d.cancel == nil {
		return nil
	}
	if d.conn != nil && !d.granted && d.token.Load() != nil && d.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.client.Release(ctx, &remotepb.LeaseRequest{})
		cancel()
	}
	d.cancel(errors.New("closed"))
	d.tunMu.Lock()
	if d.tunL != nil {
		d.tunL.Close()
	}
	d.tunMu.Unlock()
	d.wg.Wait()
	if d.tunKey != "" {
		os.Remove(d.tunKey)
	}
	if d.conn != nil {
		return d.conn.Close()
	}
	return nil
}

// callCtx is ctx, also cancelled when the lease is lost or the device closed.
func (d *Device) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.ctx, cancel)
	return c, func() { stop(); cancel() }
}

func (d *Device) power(ctx context.Context, op string, a remotepb.PowerRequest_Action, delay time.Duration) (string, error) {
	state, err := d.powerCall(ctx, a, delay)
	return state, d.fail(op, err)
}

// powerCall is power's RPC, its error the gRPC status.
func (d *Device) powerCall(ctx context.Context, a remotepb.PowerRequest_Action, delay time.Duration) (string, error) {
	ctx, cancel := d.callCtx(ctx)
	defer cancel()
	r, err := d.client.Power(ctx, &remotepb.PowerRequest{Action: a, DelayMs: delay.Milliseconds()})
	if err != nil {
		return "", err
	}
	return r.State, nil
}

// On powers the board on.
func (d *Device) On(ctx context.Context) error {
	_, err := d.power(ctx, "power on", remotepb.PowerRequest_ON, 0)
	return err
}

// Off powers the board off.
func (d *Device) Off(ctx context.Context) error {
	_, err := d.power(ctx, "power off", remotepb.PowerRequest_OFF, 0)
	return err
}

// Cycle powers the board off, waits delay and powers it on (the agent's
// board's own cycle when it has one).
func (d *Device) Cycle(ctx context.Context, delay time.Duration) error {
	_, err := d.power(ctx, "power cycle", remotepb.PowerRequest_CYCLE, delay)
	return err
}

// Reset resets the board; a board whose power cannot reset is cycled.
func (d *Device) Reset(ctx context.Context) error {
	_, err := d.powerCall(ctx, remotepb.PowerRequest_RESET, 0)
	if status.Code(err) == codes.Unimplemented {
		// the agent's board has no reset (the agent says so by code)
		return d.Cycle(ctx, 2*time.Second)
	}
	return d.fail("reset", err)
}

// ErrUnknownState is returned by PowerState when the agent's board cannot tell.
var ErrUnknownState = errors.New("the agent's board cannot tell its power state")

// PowerState reports whether the board is on.
func (d *Device) PowerState(ctx context.Context) (bool, error) {
	st, err := d.power(ctx, "power status", remotepb.PowerRequest_STATUS, 0)
	if err != nil {
		return false, err
	}
	switch st {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, drivers.Errorf(Name, "power status", "%v", ErrUnknownState)
}

// Status asks the agent about the board without taking a lease: who holds
// it, since when, and who waits.
func Status(ctx context.Context, d *Device, baseDir string) (*remotepb.BoardStatus, error) {
	c := &Device{Address: d.Address, Board: d.Board, CA: d.CA, Cert: d.Cert, Key: d.Key, ServerName: d.ServerName}
	c.env.BaseDir = baseDir
	if err := c.dial(); err != nil {
		return nil, err
	}
	defer c.conn.Close()
	r, err := c.client.Boards(ctx, &remotepb.BoardsRequest{})
	if err != nil {
		return nil, errors.New(describe(err))
	}
	for _, b := range r.Boards {
		if b.Name == d.Board {
			return b, nil
		}
	}
	return nil, fmt.Errorf("the agent at %s has no board %q", d.Address, d.Board)
}
