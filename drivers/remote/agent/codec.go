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
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	n := data.Len()
	var buf []byte
	if p, _ := chunkPool.Get().(*[]byte); p != nil && cap(*p) >= n {
		buf = (*p)[:n]
	} else {
		buf = make([]byte, n, max(n, remotepb.ChunkSize+64))
	}
	data.CopyTo(buf)
	// The wire form of FlashIn{Msg: Data}: field 2, bytes, alone.
	if num, typ, k := protowire.ConsumeTag(buf); k > 0 && num == 2 && typ == protowire.BytesType {
		if b, l := protowire.ConsumeBytes(buf[k:]); l >= 0 && k+l == n {
			proto.Reset(m)
			m.Msg = &remotepb.FlashIn_Data{Data: b}
			return nil
		}
	}
	err := proto.Unmarshal(buf, m) // copies what it keeps
	releaseData(buf)
	return err
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
