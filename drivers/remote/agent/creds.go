package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// unixCreds is the transport security of a unix socket: nothing on the
// wire (the socket's file permissions decide who may connect), but the
// peer's uid and pid (SO_PEERCRED, told by the kernel, not by the client)
// name the caller in lease holders.
type unixCreds struct{}

type unixAuth struct {
	credentials.CommonAuthInfo
	uid, pid int
}

func (unixAuth) AuthType() string { return "unix" }

func (unixCreds) ClientHandshake(ctx context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, unixAuth{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (unixCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	a := unixAuth{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, uid: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				if cr, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
					a.uid, a.pid = int(cr.Uid), int(cr.Pid)
				}
			})
		}
	}
	return c, a, nil
}

func (unixCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix"}
}
func (u unixCreds) Clone() credentials.TransportCredentials { return u }
func (unixCreds) OverrideServerName(string) error           { return nil }

// identity names the caller: the client certificate's common name over
// TLS, the uid (and its user name) over a unix socket.
func identity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "unknown"
	}
	switch a := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		if cs := a.State.VerifiedChains; len(cs) > 0 && len(cs[0]) > 0 {
			return "cert " + cs[0][0].Subject.CommonName
		}
		return "tls (no certificate)"
	case unixAuth:
		if a.uid < 0 {
			return "unix"
		}
		name := strconv.Itoa(a.uid)
		if u, err := user.LookupId(name); err == nil {
			name = u.Username
		}
		return fmt.Sprintf("uid %d (%s)", a.uid, name)
	}
	return "unknown"
}

// tlsCreds wraps a server TLS config for gRPC.
func tlsCreds(c *tls.Config) credentials.TransportCredentials { return credentials.NewTLS(c) }
