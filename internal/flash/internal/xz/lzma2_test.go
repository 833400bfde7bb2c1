package xz

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/ulikunitz/xz/lzma"
)

// need skips the test when a program is missing.
func need(t testing.TB, prog string) {
	t.Helper()
	if _, err := exec.LookPath(prog); err != nil {
		t.Skipf("%s is not installed", prog)
	}
}

// sparseImage is 4 MiB that looks like a disk image: library data in
// extents between long runs of zeros.
func sparseImage(t testing.TB) []byte {
	img := make([]byte, 4<<20)
	lib := libData(t, 1<<20)
	for i, at := range []int{0, 700 << 10, 2 << 20, 3<<20 + 12345} {
		n := (i + 1) * 64 << 10
		copy(img[at:at+n], lib[i*(256<<10):])
	}
	return img
}

// firstDiff describes where got and want differ.
func firstDiff(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d of %d", i, len(want))
		}
	}
	return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
}

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

func decodeAll(t testing.TB, d *Decoder, comp []byte, size int64) []byte {
	var out []byte
	d.Init(8<<20, size, func(off int64, p []byte) error {
		if off != int64(len(out)) {
			t.Fatalf("output at %d, expected %d", off, len(out))
		}
		out = append(out, p...)
		return nil
	})
	n, err := d.DecodeLZMA2(comp, math.MaxInt64)
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
		"image": sparseImage(t),
		"tiny":  []byte("a"),
	}
	for name, data := range cases {
		presets := []string{"0", "6", "9e"}
		if testing.Short() {
			presets = presets[:1]
		}
		for _, preset := range presets {
			comp := rawLZMA2(t, data, preset)
			var d Decoder
			if got := decodeAll(t, &d, comp, int64(len(data))); !bytes.Equal(got, data) {
				t.Fatalf("%s -%s: %s", name, preset, firstDiff(got, data))
			}
			// Stopping early gives a prefix.
			if len(data) > 1000 {
				var out []byte
				d.Init(8<<20, int64(len(data)), func(off int64, p []byte) error { out = append(out, p...); return nil })
				if _, err := d.DecodeLZMA2(comp, 1000); err != nil {
					t.Fatal(err)
				}
				if len(out) < 1000 || !bytes.Equal(out, data[:len(out)]) {
					t.Fatalf("%s: early stop gave %d bytes, not a prefix", name, len(out))
				}
			}
			// Truncations are errors, not panics.
			for _, cut := range []int{1, min(5, len(comp)-1), len(comp) / 2, len(comp) - 1} {
				d.Init(8<<20, int64(len(data)), func(int64, []byte) error { return nil })
				if _, err := d.DecodeLZMA2(comp[:cut], math.MaxInt64); err == nil {
					t.Errorf("%s cut at %d: no error", name, cut)
				}
			}
		}
	}
}

func benchLZMA2(b *testing.B, data []byte) {
	comp := rawLZMA2(b, data, "6")
	var d Decoder
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		d.Init(8<<20, int64(len(data)), func(int64, []byte) error { return nil })
		if _, err := d.DecodeLZMA2(comp, math.MaxInt64); err != nil {
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

// BenchmarkLZMA2Ref decodes the same data as BenchmarkLZMA2 with the
// references: github.com/ulikunitz/xz and the xz program (one process per
// iteration, as the flash pipeline runs it).
func BenchmarkLZMA2Ref(b *testing.B) {
	for _, c := range []struct {
		name string
		data func() []byte
	}{{"lib", func() []byte { return libData(b, 16<<20) }}, {"zeros", func() []byte { return make([]byte, 64<<20) }}} {
		b.Run("ulikunitz/"+c.name, func(b *testing.B) {
			data := c.data()
			comp := rawLZMA2(b, data, "6")
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				r, err := lzma.Reader2Config{DictCap: 8 << 20}.NewReader2(bytes.NewReader(comp))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("xz/"+c.name, func(b *testing.B) {
			data := c.data()
			comp := rawLZMA2(b, data, "6")
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				cmd := exec.Command("xz", "--format=raw", "--lzma2=preset=6", "-dc")
				cmd.Stdin = bytes.NewReader(comp)
				cmd.Stdout = io.Discard
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
