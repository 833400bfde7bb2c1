package remotepb

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// messages are every message the agent and the client decode.
func messages() []proto.Message {
	return []proto.Message{&BoardsRequest{}, &BoardsReply{}, &AcquireRequest{}, &AcquireEvent{}, &LeaseRequest{},
		&LeaseReply{}, &PowerRequest{}, &PowerReply{}, &Data{}, &FlashIn{}, &FlashOut{}, &EndpointReply{}}
}

// FuzzDecode feeds arbitrary bytes to every message's decoder: it may
// refuse them, never panic, and what it accepts encodes and decodes again
// to the same message.
func FuzzDecode(f *testing.F) {
	for _, m := range []proto.Message{
		&FlashIn{Msg: &FlashIn_Header{Header: &FlashHeader{ImageName: "a.img.zst", Bmap: []byte("<bmap/>"), Sha256: strings.Repeat("0", 64), Verify: true}}},
		&FlashIn{Msg: &FlashIn_Data{Data: []byte("data")}},
		&AcquireEvent{Event: &AcquireEvent_Grant{Grant: &Grant{Token: "t", TtlMs: 5, Capabilities: []string{"power"}}}},
		&BoardsReply{Boards: []*BoardStatus{{Name: "sim-1", Labels: map[string]string{"k": "v"}, Waiting: []*Waiter{{Holder: "h", Priority: 3}}}}},
		&PowerRequest{Action: PowerRequest_CYCLE, DelayMs: 2000},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range messages() {
			if err := proto.Unmarshal(b, m); err != nil {
				continue
			}
			again, err := proto.Marshal(m)
			if err != nil {
				t.Fatalf("%T: decoded but does not encode: %v", m, err)
			}
			m2 := m.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(again, m2); err != nil || !proto.Equal(m, m2) {
				t.Fatalf("%T: round trip changed the message (%v)", m, err)
			}
		}
	})
}

// FuzzParseAddress: any string is an address or an error, never a panic,
// and an accepted address names a socket or a host and port.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"unix:/run/jsplan/agent.sock", "tcp:lab:7301", "lab:7301", "/tmp/x.sock", "tcp:", "unix:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		network, target, err := ParseAddress(s)
		if err != nil {
			return
		}
		if target == "" || (network != "unix" && network != "tcp") || strings.ContainsAny(target, "\x00\n") {
			t.Fatalf("%q: accepted as %s %q", s, network, target)
		}
		if network == "tcp" && !strings.Contains(target, ":") {
			t.Fatalf("%q: tcp without a port", s)
		}
	})
}

func TestParseAddress(t *testing.T) {
	for _, c := range []struct{ in, network, target string }{
		{"unix:/run/a.sock", "unix", "/run/a.sock"}, {"/run/a.sock", "unix", "/run/a.sock"},
		{"tcp:lab:7301", "tcp", "lab:7301"}, {"10.0.0.1:7301", "tcp", "10.0.0.1:7301"},
	} {
		n, tg, err := ParseAddress(c.in)
		if err != nil || n != c.network || tg != c.target {
			t.Errorf("%q: %s %q %v", c.in, n, tg, err)
		}
	}
	for _, bad := range []string{"", "unix:", "tcp:", "lab", "tcp:lab:", "unix:/a\x00b"} {
		if _, _, err := ParseAddress(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
