package agent

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/jsplan/jsplan/drivers/remote/remotepb"
)

// FuzzCodec: the server's codec decodes every FlashIn as protobuf does,
// whole or in two pieces, its reused buffers included (each decoded chunk is released, as the
// agent does, before the next input).
func FuzzCodec(f *testing.F) {
	for _, m := range []*remotepb.FlashIn{
		{Msg: &remotepb.FlashIn_Data{Data: []byte("image bytes")}},
		{Msg: &remotepb.FlashIn_Data{Data: []byte{}}},
		{Msg: &remotepb.FlashIn_Header{Header: &remotepb.FlashHeader{ImageName: "x.zst", Sha256: "00", Verify: true}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(0))
		f.Add(b, uint16(3))
		f.Add(append(b, b...), uint16(len(b)))
	}
	c := newCodec()
	f.Fuzz(func(t *testing.T, b []byte, split uint16) {
		// gRPC hands a message over in pieces (HTTP/2 frames)
		in := mem.BufferSlice{mem.SliceBuffer(b)}
		if k := int(split); k > 0 && k < len(b) {
			in = mem.BufferSlice{mem.SliceBuffer(b[:k]), mem.SliceBuffer(b[k:])}
		}
		var got, want remotepb.FlashIn
		gerr := c.Unmarshal(in, &got)
		werr := proto.Unmarshal(b, &want)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("codec: %v, protobuf: %v", gerr, werr)
		}
		if gerr == nil && !proto.Equal(&got, &want) {
			t.Fatalf("codec decoded %v, protobuf %v", &got, &want)
		}
		releaseData(got.GetData())
	})
}

// A chunk's buffer is reused for the next chunk once released, and
// never while the chunk is held.
func TestCodecReusesReleasedBuffers(t *testing.T) {
	c := newCodec()
	chunk := func(fill byte) *remotepb.FlashIn {
		t.Helper()
		data := make([]byte, remotepb.ChunkSize)
		for i := range data {
			data[i] = fill
		}
		b, err := proto.Marshal(&remotepb.FlashIn{Msg: &remotepb.FlashIn_Data{Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		var m remotepb.FlashIn
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &m); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	first := chunk(1)
	held := chunk(2) // first not released: a buffer of its own
	if &first.GetData()[0] == &held.GetData()[0] || first.GetData()[0] != 1 || held.GetData()[0] != 2 {
		t.Fatal("a held chunk's buffer was reused")
	}
	reused := false
	for range 10 { // sync.Pool may drop a buffer; it keeps most
		p := &held.GetData()[0]
		releaseData(held.GetData())
		held = chunk(3)
		if &held.GetData()[0] == p {
			reused = true
			break
		}
	}
	if !reused {
		t.Error("released buffers are never reused")
	}
	if first.GetData()[len(first.GetData())-1] != 1 {
		t.Fatal("a held chunk was overwritten")
	}
}
