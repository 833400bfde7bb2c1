package xz

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os/exec"
	"testing"

	"github.com/ulikunitz/xz/lzma"
)

// fuzzDict is the dictionary (and output limit) of the fuzz targets.
const fuzzDict = 1 << 20

var errTooBig = errors.New("output over the fuzz limit")

// ours decodes a raw LZMA2 stream with Decoder; big reports output over
// fuzzDict (not compared: the references have no such limit).
func ours(in []byte) (out []byte, big bool, err error) {
	var d Decoder
	d.Init(fuzzDict, fuzzDict, func(off int64, p []byte) error {
		if off != int64(len(out)) {
			return errors.New("output out of order")
		}
		if len(out)+len(p) > fuzzDict {
			return errTooBig
		}
		out = append(out, p...)
		return nil
	})
	n, err := d.DecodeLZMA2(in, math.MaxInt64)
	if errors.Is(err, errTooBig) {
		return nil, true, nil
	}
	if err == nil && n != len(in) {
		// The flash pipeline refuses a block with bytes after the end
		// marker; so does xz.
		err = errors.New("data after the end of the stream")
	}
	return out, false, err
}

// ulikunitz decodes with github.com/ulikunitz/xz/lzma.
func ulikunitz(in []byte) ([]byte, error) {
	r, err := lzma.Reader2Config{DictCap: fuzzDict}.NewReader2(bytes.NewReader(in))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(r, fuzzDict+1))
}

// xzTool decodes with the xz program.
func xzTool(in []byte) ([]byte, error) {
	cmd := exec.Command("xz", "--format=raw", "--lzma2=dict=1MiB", "-dc")
	cmd.Stdin = bytes.NewReader(in)
	return cmd.Output()
}

// seeds adds valid LZMA2 streams and some corrupt ones.
func seeds(f *testing.F) {
	need(f, "xz")
	for _, data := range [][]byte{
		[]byte("a"),
		bytes.Repeat([]byte("jsplan "), 1000),
		make([]byte, 100<<10),
		libData(f, 64<<10),
	} {
		comp := rawLZMA2(f, data, "6")
		f.Add(comp)
		f.Add(comp[:len(comp)/2])
		bad := bytes.Clone(comp)
		bad[len(bad)/3] ^= 0x55
		f.Add(bad)
	}
	f.Add([]byte("\xe000000")) // truncated chunk: ulikunitz/xz reads it as empty
	f.Add([]byte{0x00})
	f.Add([]byte{0x01, 0x00, 0x00, 'x', 0x00})
}

// compare fails when Decoder accepts a stream the reference rejects or
// decodes it differently, and, when strict, also when Decoder rejects a
// stream the reference accepts. ulikunitz/xz is not strict: it reads a
// truncated stream (a chunk longer than the input) as a short valid one,
// where Decoder and liblzma report corrupt data.
func compare(t *testing.T, in []byte, refName string, strict bool, ref func([]byte) ([]byte, error)) {
	got, big, err := ours(in)
	if big {
		return
	}
	want, rerr := ref(in)
	if len(want) > fuzzDict {
		return
	}
	switch {
	case err == nil && rerr != nil:
		t.Fatalf("Decoder accepts what %s rejects (%v); %d bytes out", refName, rerr, len(got))
	case err != nil && rerr == nil && strict:
		t.Fatalf("Decoder rejects (%v) what %s decodes to %d bytes", err, refName, len(want))
	case err == nil && !bytes.Equal(got, want):
		t.Fatalf("Decoder and %s differ: %s", refName, firstDiff(got, want))
	}
}

// FuzzLZMA2 compares Decoder with github.com/ulikunitz/xz on random and
// corrupt input: what Decoder accepts, ulikunitz/xz accepts and decodes to
// the same bytes.
func FuzzLZMA2(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, in []byte) { compare(t, in, "ulikunitz/xz", false, ulikunitz) })
}

// FuzzLZMA2Tool compares Decoder with the xz program (liblzma): the same
// streams are valid, and decode to the same bytes.
func FuzzLZMA2Tool(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, in []byte) { compare(t, in, "xz", true, xzTool) })
}

// FuzzBlockHeader checks that any block header is parsed or refused without
// a panic, and that a parsed one fits in its input.
func FuzzBlockHeader(f *testing.F) {
	f.Add([]byte{0x02, 0x00, 0x21, 0x01, 0x16, 0x00, 0x00, 0x00, 0x74, 0x2f, 0xe5, 0xa3})
	f.Fuzz(func(t *testing.T, b []byte) {
		size, dict, err := ParseBlockHeader(b)
		if err == nil && (size > len(b) || size < 8 || dict <= 0) {
			t.Fatalf("header of %d bytes (input %d), dictionary %d", size, len(b), dict)
		}
	})
}
