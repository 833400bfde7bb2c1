package agent

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/jsplan/jsplan/drivers/remote/remotepb"

	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec
)

// codec is the server's codec: gRPC's proto codec, except that an image
// chunk (a FlashIn holding data, 1 MiB) is received into a buffer reused
// from chunk to chunk (see releaseData), where protobuf would copy each
// into fresh memory: measured a tenth of the CPU time of a flash through
// the agent (page faults, and a garbage collection every few chunks).
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

func (c codec) Name() string { return c.proto.Name() }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*remotepb.FlashIn)
	if !ok || len(data) == 0 {
		return c.proto.Unmarshal(data, v)
	}
	// The wire form of FlashIn{Msg: Data}: field 2, bytes, alone; its tag
	// and length are in the first buffer.
	n, skip := data.Len(), 0
	h := data[0].ReadOnlyData()
	if num, typ, tn := protowire.ConsumeTag(h); tn > 0 && num == 2 && typ == protowire.BytesType {
		if l, ln := protowire.ConsumeVarint(h[tn:]); ln > 0 && l == uint64(n-tn-ln) {
			skip = tn + ln
		}
	}
	if skip == 0 {
		return c.proto.Unmarshal(data, v)
	}
	buf := chunkBuffer(n - skip)
	at := 0
	for _, b := range data {
		d := b.ReadOnlyData()
		if skip >= len(d) {
			skip -= len(d)
			continue
		}
		at += copy(buf[at:], d[skip:])
		skip = 0
	}
	proto.Reset(m)
	m.Msg = &remotepb.FlashIn_Data{Data: buf}
	return nil
}

// chunkBuffer returns a buffer of n bytes for a chunk, a released one if
// it is large enough.
func chunkBuffer(n int) []byte {
	if p, _ := chunkPool.Get().(*[]byte); p != nil && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n, max(n, remotepb.ChunkSize))
}

// chunkPool holds the buffers of received image chunks.
var chunkPool sync.Pool

// releaseData gives the buffer of a received chunk's data back for the
// next chunk: d must not be used after.
func releaseData(d []byte) {
	if cap(d) >= remotepb.ChunkSize {
		d = d[:0]
		chunkPool.Put(&d)
	}
}
