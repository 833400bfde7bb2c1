package flash

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
)

// rawLZMA2 compresses data as a raw LZMA2 stream with the xz program.
func rawLZMA2(t testing.TB, data []byte, preset string) []byte {
	t.Helper()
	need(t, "xz")
	cmd := exec.Command("xz", "--format=raw", "--lzma2=preset="+preset, "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// libData returns up to n bytes of the system's shared libraries: data that
// compresses like a root file system.
func libData(t testing.TB, n int) []byte {
	t.Helper()
	files, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/*.so*")
	sort.Strings(files)
	var b []byte
	for _, f := range files {
		if len(b) >= n {
			break
		}
		if d, err := os.ReadFile(f); err == nil {
			b = append(b, d...)
		}
	}
	if len(b) < n {
		t.Skip("not enough library data on this system")
	}
	return b[:n]
}

func decodeAll(t testing.TB, d *lzmaDec, comp []byte, size int64) []byte {
	var out []byte
	d.init(8<<20, size, func(off int64, p []byte) error {
		if off != int64(len(out)) {
			t.Fatalf("output at %d, expected %d", off, len(out))
		}
		out = append(out, p...)
		return nil
	})
	n, err := d.decodeLZMA2(comp, math.MaxInt64)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if n != len(comp) {
		t.Fatalf("used %d of %d bytes", n, len(comp))
	}
	return out
}

func TestLZMA2(t *testing.T) {
	cases := map[string][]byte{
		"lib":   libData(t, 6<<20),
		"zeros": make([]byte, 5<<20),
		"image": makeImage(t, filepath.Join(t.TempDir(), "i")),
		"tiny":  []byte("a"),
	}
	for name, data := range cases {
		for _, preset := range []string{"0", "6", "9e"} {
			comp := rawLZMA2(t, data, preset)
			var d lzmaDec
			if got := decodeAll(t, &d, comp, int64(len(data))); !bytes.Equal(got, data) {
				t.Fatalf("%s -%s: %s", name, preset, firstDiff(got, data))
			}
			// Stopping early gives a prefix.
			if len(data) > 1000 {
				var out []byte
				d.init(8<<20, int64(len(data)), func(off int64, p []byte) error { out = append(out, p...); return nil })
				if _, err := d.decodeLZMA2(comp, 1000); err != nil {
					t.Fatal(err)
				}
				if len(out) < 1000 || !bytes.Equal(out, data[:len(out)]) {
					t.Fatalf("%s: early stop gave %d bytes, not a prefix", name, len(out))
				}
			}
			// Truncations are errors, not panics.
			for _, cut := range []int{1, min(5, len(comp)-1), len(comp) / 2, len(comp) - 1} {
				d.init(8<<20, int64(len(data)), func(int64, []byte) error { return nil })
				if _, err := d.decodeLZMA2(comp[:cut], math.MaxInt64); err == nil {
					t.Errorf("%s cut at %d: no error", name, cut)
				}
			}
		}
	}
}

func benchLZMA2(b *testing.B, data []byte) {
	comp := rawLZMA2(b, data, "6")
	var d lzmaDec
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		d.init(8<<20, int64(len(data)), func(int64, []byte) error { return nil })
		if _, err := d.decodeLZMA2(comp, math.MaxInt64); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLZMA2 decodes shared-library data and zeros. Compare:
// xz --format=raw --lzma2=preset=6 of the same data through `xz -dc`.
func BenchmarkLZMA2(b *testing.B) {
	b.Run("lib", func(b *testing.B) { benchLZMA2(b, libData(b, 16<<20)) })
	b.Run("zeros", func(b *testing.B) { benchLZMA2(b, make([]byte, 64<<20)) })
}
