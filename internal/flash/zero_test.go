package flash

import (
	"context"
	"hash/crc64"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/jsplan/jsplan/internal/flash/internal/xz"
)

func TestIsZero(t *testing.T) {
	buf := make([]byte, 3*pageSize+17)
	for start := 0; start < 9; start++ {
		for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 200, pageSize, len(buf) - start} {
			p := buf[start : start+n]
			if !isZero(p) {
				t.Fatalf("isZero(zeros[%d:+%d]) = false", start, n)
			}
			for i := 0; i < n; i += max(1, n/13) {
				p[i] = 1
				if isZero(p) {
					t.Fatalf("isZero missed a byte at %d of [%d:+%d]", i, start, n)
				}
				p[i] = 0
			}
			if n > 0 {
				p[n-1] = 0x80
				if isZero(p) {
					t.Fatalf("isZero missed the last byte of [%d:+%d]", start, n)
				}
				p[n-1] = 0
			}
		}
	}
}

func TestDataSpans(t *testing.T) {
	const P = pageSize
	page := func(b []byte, i int) { b[i*P+100] = 1 }
	cases := []struct {
		name    string
		pages   []int // data pages
		n       int   // buffer length in pages
		base    int64
		minHole int
		want    []span
	}{
		{"empty", nil, 4, 0, P, nil},
		{"all data", []int{0, 1, 2}, 3, 0, P, []span{{0, 3 * P}}},
		{"holes at ends", []int{1, 2}, 4, 0, P, []span{{P, 2 * P}}},
		{"short hole kept", []int{0, 2}, 3, 0, 2 * P, []span{{0, 3 * P}}},
		{"long hole cut", []int{0, 3}, 4, 0, 2 * P, []span{{0, P}, {3 * P, P}}},
		{"one-page holes", []int{0, 2, 4}, 5, 0, P, []span{{0, P}, {2 * P, P}, {4 * P, P}}},
	}
	for _, c := range cases {
		b := make([]byte, c.n*P)
		for _, i := range c.pages {
			page(b, i)
		}
		got := dataSpans(nil, b, c.base, c.minHole)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	// A buffer not on the page grid: pages follow the image's offsets.
	b := make([]byte, 3*P)
	b[10] = 1 // in the image page that starts before the buffer
	got := dataSpans(nil, b, P-100, P)
	if !reflect.DeepEqual(got, []span{{0, 100}}) {
		t.Errorf("unaligned: got %v", got)
	}
	b[len(b)-1] = 1 // the last, partial page
	got = dataSpans(nil, b, P-100, P)
	if !reflect.DeepEqual(got, []span{{0, 100}, {100 + 2*P, P - 100}}) {
		t.Errorf("unaligned tail: got %v", got)
	}
}

func BenchmarkIsZero(b *testing.B) {
	zero := make([]byte, chunkSize)
	data := randomBytes(chunkSize)
	b.Run("zeros-4MiB", func(b *testing.B) {
		b.SetBytes(chunkSize)
		for b.Loop() {
			isZero(zero)
		}
	})
	b.Run("data-page", func(b *testing.B) {
		b.SetBytes(pageSize)
		for b.Loop() {
			isZero(data[:pageSize])
		}
	})
}

// BenchmarkDataSpans: the zero scan of a 4 MiB chunk that is all data,
// all zeros, or 10% data in 64 KiB runs.
func BenchmarkDataSpans(b *testing.B) {
	mixed := make([]byte, chunkSize)
	for off := 0; off < chunkSize; off += 640 << 10 {
		copy(mixed[off:], randomBytes(64<<10))
	}
	for _, c := range []struct {
		name string
		buf  []byte
	}{{"data", randomBytes(chunkSize)}, {"zeros", make([]byte, chunkSize)}, {"mixed", mixed}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(chunkSize)
			var s []span
			for b.Loop() {
				s = dataSpans(s[:0], c.buf, 0, minHoleFile)
			}
		})
	}
}

// BenchmarkPut: writing 4 MiB chunks into a sparse file target through the
// writer (zero scan, pwrite of data runs), with and without a bmap, in
// page cache (no sync).
func BenchmarkPut(b *testing.B) {
	mixed := make([]byte, chunkSize)
	for off := 0; off < chunkSize; off += 640 << 10 {
		copy(mixed[off:], randomBytes(64<<10))
	}
	var ranges []BmapRange
	for off := int64(0); off < 64*chunkSize; off += 640 << 10 {
		ranges = append(ranges, BmapRange{Off: off, Len: 64 << 10})
	}
	for _, c := range []struct {
		name string
		buf  []byte
		bm   *Bmap
	}{
		{"data", randomBytes(chunkSize), nil},
		{"mixed", mixed, nil},
		{"mixed-bmap", mixed, &Bmap{Ranges: ranges}},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "t")
			tg, err := openTarget(path)
			if err != nil {
				b.Fatal(err)
			}
			defer tg.f.Close()
			w := &writer{t: tg, bm: c.bm, skipZeros: true, kick: make(chan struct{}, 1)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go w.flusher(ctx)
			b.SetBytes(chunkSize)
			i := int64(0)
			for b.Loop() {
				if err := w.put((i%64)*chunkSize, c.buf); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkRangeHasher: checking bmap ranges over a stream (sha256).
func BenchmarkRangeHasher(b *testing.B) {
	data := randomBytes(chunkSize)
	b.SetBytes(chunkSize)
	for b.Loop() {
		rh := newRangeHasher("sha256", []BmapRange{{Off: 0, Len: chunkSize, Sum: make([]byte, 32)}})
		rh.feed(0, data)
	}
}

// BenchmarkWrite: a whole Write of the 8 MiB test image, raw and through
// each decoder, to a file (includes fsync).
func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(b, raw)
	for _, format := range formats {
		b.Run(format, func(b *testing.B) {
			img := compress(b, raw, format)
			target := filepath.Join(dir, "t")
			b.SetBytes(testImageSize)
			for b.Loop() {
				if _, err := Write(context.Background(), target, Options{Image: img, NoBmap: true}); err != nil {
					b.Fatal(err)
				}
			}
			os.Remove(target)
		})
	}
}

func TestCRC64Zeros(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 100, 4096, 65536 + 3, 1 << 20} {
		for _, start := range [][]byte{nil, []byte("jsplan"), randomBytes(1000)} {
			c := crc64.Update(0, xz.CRC64Table, start)
			want := crc64.Update(c, xz.CRC64Table, make([]byte, n))
			if got := xz.CRC64Zeros(c, int64(n)); got != want {
				t.Fatalf("xz.CRC64Zeros(%d bytes after %d) = %x, want %x", n, len(start), got, want)
			}
		}
	}
}
