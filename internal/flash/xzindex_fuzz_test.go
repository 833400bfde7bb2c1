package flash

import (
	"bytes"
	"os/exec"
	"testing"
)

// FuzzXZIndex feeds arbitrary files to the xz index reader (the part of an
// image parsed before any block): it returns an index whose blocks lie
// inside the file and add up to its size, or an error; never a panic.
func FuzzXZIndex(f *testing.F) {
	if _, err := exec.LookPath("xz"); err == nil {
		for _, args := range [][]string{{"-0"}, {"-0", "-T2", "--block-size=4KiB"}, {"--check=sha256"}} {
			cmd := exec.Command("xz", append([]string{"-c"}, args...)...)
			cmd.Stdin = bytes.NewReader(bytes.Repeat([]byte("jsplan\x00\x00\x00"), 4000))
			if out, err := cmd.Output(); err == nil {
				f.Add(out)
				f.Add(append(bytes.Clone(out), out...)) // two streams
			}
		}
	}
	f.Add([]byte("\xfd7zXZ\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := readXZIndex(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var total int64
		for _, blk := range ix.blocks {
			if blk.off < 0 || blk.unpadded <= 0 || blk.off+blk.unpadded > int64(len(b)) {
				t.Fatalf("block at %d of %d bytes lies outside the %d-byte file", blk.off, blk.unpadded, len(b))
			}
			if blk.uoff != total || blk.usize < 0 {
				t.Fatalf("block decodes to [%d, +%d), expected to start at %d", blk.uoff, blk.usize, total)
			}
			total += blk.usize
		}
		if total != ix.size {
			t.Fatalf("blocks decode to %d bytes, the index says %d", total, ix.size)
		}
	})
}
