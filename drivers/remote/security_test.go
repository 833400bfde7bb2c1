package remote

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/internal/pki"
)

// lab is a CA with an agent certificate and two clients, plus a second
// CA whose client the agent must refuse.
type lab struct {
	dir, other string
	server     pki.Files
	alice, bob pki.Files
	stranger   pki.Files
	addr       string
	agent      *testAgent
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{dir: filepath.Join(t.TempDir(), "ca"), other: filepath.Join(t.TempDir(), "other")}
	year := 365 * 24 * time.Hour
	var err error
	must := func(f pki.Files, err error) pki.Files {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	must(pki.NewCA(l.dir, "test lab", year))
	must(pki.NewCA(l.other, "other lab", year))
	l.server = must(pki.Issue(l.dir, "agent", pki.Server, []string{"127.0.0.1", "localhost"}, year))
	l.alice = must(pki.Issue(l.dir, "alice", pki.Client, nil, year))
	l.bob = must(pki.Issue(l.dir, "bob", pki.Client, nil, year))
	l.stranger = must(pki.Issue(l.other, "mallory", pki.Client, nil, year))
	if _, err = pki.NewCA(l.dir, "again", year); err == nil {
		t.Fatal("a second CA overwrote the first")
	}
	tc, err := pki.ServerConfig(l.server)
	if err != nil {
		t.Fatal(err)
	}
	l.agent = startAgent(t, twoBoards, func(o *Options) { o.TLS = tc })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	l.agent.serve(t, ln)
	return l
}

// device is a remote device for board over TCP with client certificate f.
func (l *lab) device(board string, f pki.Files) *Device {
	return &Device{Address: "tcp:" + l.addr, Board: board, CA: f.CA, Cert: f.Cert, Key: f.Key, Wait: cfgSecond}
}

// rawClient is a gRPC client with the given TLS config and token.
func rawClient(t *testing.T, addr string, tc *tls.Config, token string) (remotepb.AgentClient, context.Context) {
	t.Helper()
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, remotepb.TokenKey, token)
	}
	return remotepb.NewAgentClient(cc), ctx
}

// Every refusal, while alice holds sim-1 and keeps using it: none of them
// disturbs her lease.
func TestRefusals(t *testing.T) {
	l := newLab(t)
	ctx := ctxT(t)
	alice := l.device("sim-1", l.alice)
	if err := alice.Open(ctx, envFor(t, nil)); err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if err := alice.On(ctx); err != nil {
		t.Fatal(err)
	}
	aliceToken := *alice.token.Load()
	st, err := Status(ctx, l.device("sim-1", l.bob), "")
	if err != nil || st.Holder != "cert alice: "+alice.holder() {
		t.Fatalf("holder over TLS: %q (%v), want the certificate's name first", st.GetHolder(), err)
	}
	stillFine := func(what string) {
		t.Helper()
		if on, err := alice.PowerState(ctx); err != nil || !on {
			t.Fatalf("after %s alice's board is on=%v (%v)", what, on, err)
		}
	}

	t.Run("no client certificate", func(t *testing.T) {
		tc, _ := pki.ClientConfig(l.alice, "127.0.0.1")
		tc.Certificates = nil
		c, cctx := rawClient(t, l.addr, tc, aliceToken)
		if _, err := c.Power(cctx, &remotepb.PowerRequest{Action: remotepb.PowerRequest_OFF}); err == nil {
			t.Fatal("a client without a certificate powered the board off")
		}
		stillFine("a client without a certificate")
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		d := l.device("sim-2", l.stranger)
		d.CA = l.alice.CA // trusts our agent, but its own certificate is foreign
		if err := d.Open(ctx, envFor(t, nil)); err == nil {
			d.Close()
			t.Fatal("a foreign certificate got a lease")
		}
		tc, _ := pki.ClientConfig(pki.Files{CA: l.alice.CA, Cert: l.stranger.Cert, Key: l.stranger.Key}, "127.0.0.1")
		c, cctx := rawClient(t, l.addr, tc, aliceToken)
		if _, err := c.Power(cctx, &remotepb.PowerRequest{Action: remotepb.PowerRequest_OFF}); err == nil {
			t.Fatal("a foreign certificate with alice's token powered the board off")
		}
		stillFine("a foreign certificate")
	})
	t.Run("plain text to the TLS port", func(t *testing.T) {
		c, cctx := rawClient(t, l.addr, nil, aliceToken)
		if _, err := c.Boards(cctx, &remotepb.BoardsRequest{}); err == nil {
			t.Fatal("plain text was served")
		}
	})
	t.Run("agent certificate from another CA", func(t *testing.T) {
		d := l.device("sim-2", l.alice)
		d.CA = l.stranger.CA
		if err := d.Open(ctx, envFor(t, nil)); err == nil {
			d.Close()
			t.Fatal("the client trusted an agent its CA did not sign")
		}
	})
	t.Run("wrong and missing token", func(t *testing.T) {
		tc, _ := pki.ClientConfig(l.bob, "127.0.0.1")
		c, cctx := rawClient(t, l.addr, tc, strings.Repeat("ab", 32))
		_, err := c.Power(cctx, &remotepb.PowerRequest{Action: remotepb.PowerRequest_OFF})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("wrong token: %v, want PermissionDenied", err)
		}
		c, cctx = rawClient(t, l.addr, tc, "")
		_, err = c.Power(cctx, &remotepb.PowerRequest{Action: remotepb.PowerRequest_OFF})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("no token: %v, want Unauthenticated", err)
		}
		stillFine("wrong tokens")
	})
	t.Run("alice's token with bob's certificate", func(t *testing.T) {
		tc, _ := pki.ClientConfig(l.bob, "127.0.0.1")
		c, cctx := rawClient(t, l.addr, tc, aliceToken)
		_, err := c.Power(cctx, &remotepb.PowerRequest{Action: remotepb.PowerRequest_OFF})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a stolen token: %v, want PermissionDenied", err)
		}
		s, err := c.Console(cctx)
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("console with a stolen token: %v", err)
		}
		stillFine("a stolen token")
	})
	t.Run("holding board A gives nothing of board B", func(t *testing.T) {
		bob := l.device("sim-2", l.bob)
		if err := bob.Open(ctx, envFor(t, nil)); err != nil {
			t.Fatal(err)
		}
		defer bob.Close()
		if err := bob.On(ctx); err != nil {
			t.Fatal(err)
		}
		// every call of alice's acts on sim-1 only: her token names her board
		if err := alice.Off(ctx); err != nil {
			t.Fatal(err)
		}
		if on, err := bob.PowerState(ctx); err != nil || !on {
			t.Fatalf("alice's power off reached bob's sim-2: on=%v %v", on, err)
		}
		if err := alice.On(ctx); err != nil {
			t.Fatal(err)
		}
		// and alice cannot take sim-2 while bob holds it
		a2 := l.device("sim-2", l.alice)
		if err := a2.Open(ctx, envFor(t, nil)); err == nil || !strings.Contains(err.Error(), "still busy") {
			t.Fatalf("alice queued for sim-2: %v, want busy after the wait", err)
		}
	})
	t.Run("oversized message", func(t *testing.T) {
		tc, _ := pki.ClientConfig(l.alice, "127.0.0.1")
		c, cctx := rawClient(t, l.addr, tc, aliceToken)
		s, err := c.Console(cctx, grpc.MaxCallSendMsgSize(8<<20))
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&remotepb.Data{Data: make([]byte, 4<<20)})
		for {
			if _, err = s.Recv(); err != nil {
				break
			}
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a 4 MiB message: %v, want ResourceExhausted", err)
		}
		stillFine("an oversized message")
	})
	t.Run("idle connection", func(t *testing.T) {
		for _, addr := range []struct{ network, target string }{{"tcp", l.addr}, {"unix", l.agent.sock}} {
			c, err := net.Dial(addr.network, addr.target)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAll(c)
			c.Close()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%s: the agent kept a silent connection open", addr.network)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: dropped only after %s", addr.network, time.Since(start))
			}
			stillFine("an idle connection")
		}
	})
	// a lease taken over TLS is bound to its certificate, even for
	// a client of the same CA on the unix socket
	t.Run("tls lease from the unix socket", func(t *testing.T) {
		c, cctx := rawClient(t, "unix:"+l.agent.sock, nil, aliceToken)
		_ = c
		cc, err := grpc.NewClient("unix:"+l.agent.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = remotepb.NewAgentClient(cc).Power(cctx, &remotepb.PowerRequest{Action: remotepb.PowerRequest_OFF})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("alice's token on the unix socket: %v, want PermissionDenied", err)
		}
		stillFine("the token on the unix socket")
	})
}

// A TCP listener is never served without mutual TLS.
func TestTCPNeedsMutualTLS(t *testing.T) {
	a := startAgent(t, twoBoards, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := a.srv.Serve(ln); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("a TCP listener without TLS: %v", err)
	}
	l := &lab{dir: filepath.Join(t.TempDir(), "ca")}
	pki.NewCA(l.dir, "x", time.Hour)
	f, _ := pki.Issue(l.dir, "agent", pki.Server, nil, time.Hour)
	tc, err := pki.ServerConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	b := startAgent(t, twoBoards, func(o *Options) { o.TLS = tc })
	if err := b.srv.Serve(ln); err == nil || !strings.Contains(err.Error(), "client certificates") {
		t.Fatalf("TLS without client certificates: %v", err)
	}
}
