package remotepb

import (
	"fmt"
	"strings"
)

// TokenKey is the metadata key that carries a lease's token.
const TokenKey = "jsplan-lease"

// MaxMessage is the largest message either side accepts (data travels in
// chunks of ChunkSize); anything larger is refused with ResourceExhausted.
const MaxMessage = 2 << 20

// ChunkSize is the size of the data chunks of Flash, Console and Tunnel.
const ChunkSize = 1 << 20

// Window is the HTTP/2 flow-control window of streams and connections,
// both ways.
const Window = 8 << 20

// Buffer is the size of the connection's read and write buffers (gRPC's
// default is 32 KiB: a syscall per two HTTP/2 frames).
const Buffer = 1 << 20

// ParseAddress splits an agent address: "unix:PATH" (or a path starting
// with "/") and "tcp:HOST:PORT" (or "HOST:PORT").
func ParseAddress(addr string) (network, target string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		network, target = "unix", strings.TrimPrefix(addr, "unix:")
	case strings.HasPrefix(addr, "/"):
		network, target = "unix", addr
	case strings.HasPrefix(addr, "tcp:"):
		network, target = "tcp", strings.TrimPrefix(addr, "tcp:")
	default:
		network, target = "tcp", addr
	}
	if target == "" {
		return "", "", fmt.Errorf("address %q names no socket or host", addr)
	}
	if network == "tcp" && (!strings.Contains(target, ":") || strings.HasSuffix(target, ":")) {
		return "", "", fmt.Errorf("address %q: want tcp:HOST:PORT or unix:PATH", addr)
	}
	if strings.ContainsAny(target, "\x00\n") {
		return "", "", fmt.Errorf("address %q holds a control character", addr)
	}
	return network, target, nil
}
