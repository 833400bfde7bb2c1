package flash

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/jsplan/jsplan/internal/flash/internal/xz"
)

// newMemfd returns an anonymous in-memory regular file.
func newMemfd(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// xzBlock is one block of an xz file, located through the stream index.
type xzBlock struct {
	stream   int   // index into xzIndex.streams
	off      int64 // offset of the block header in the file
	unpadded int64 // unpadded size (header + data + check)
	uoff     int64 // offset of its data in the decoded image
	usize    int64 // decoded size
}

type xzStream struct {
	header []byte // the 12-byte stream header
	flags  [2]byte
}

// xzIndex lists the blocks of every stream of an xz file.
type xzIndex struct {
	streams []xzStream
	blocks  []xzBlock
	size    int64 // decoded size
}

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// readXZIndex reads the indexes of all streams of the xz file f of the given
// size, from the end backwards, checking headers, footers and CRCs.
func readXZIndex(f io.ReaderAt, size int64) (*xzIndex, error) {
	var streams []xzStream
	var blocks [][]xzBlock // per stream, in reverse stream order
	pos := size
	read := func(off, n int64) ([]byte, error) {
		if off < 0 || n < 0 || n > 1<<30 {
			return nil, errors.New("truncated or corrupt xz file (bad index location)")
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			return nil, err
		}
		return b, nil
	}
	for pos > 0 {
		// Stream padding: multiples of four zero bytes.
		for pos >= 4 {
			b, err := read(pos-4, 4)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(b, []byte{0, 0, 0, 0}) {
				break
			}
			pos -= 4
		}
		if pos < 24 {
			return nil, errors.New("truncated or corrupt xz file (no stream footer)")
		}
		foot, err := read(pos-12, 12)
		if err != nil {
			return nil, err
		}
		if foot[10] != 'Y' || foot[11] != 'Z' || crc32.ChecksumIEEE(foot[4:10]) != binary.LittleEndian.Uint32(foot) {
			return nil, errors.New("truncated or corrupt xz file (bad stream footer)")
		}
		back := (int64(binary.LittleEndian.Uint32(foot[4:])) + 1) * 4
		idxOff := pos - 12 - back
		idx, err := read(idxOff, back)
		if err != nil {
			return nil, errors.New("truncated or corrupt xz file (index out of range)")
		}
		recs, err := parseXZIndex(idx)
		if err != nil {
			return nil, err
		}
		var total int64
		for _, r := range recs {
			total += (r.unpadded + 3) &^ 3
		}
		hdrOff := idxOff - total - 12
		hdr, err := read(hdrOff, 12)
		if err != nil {
			return nil, errors.New("truncated or corrupt xz file (stream header out of range)")
		}
		if !bytes.Equal(hdr[:6], xzMagic) || crc32.ChecksumIEEE(hdr[6:8]) != binary.LittleEndian.Uint32(hdr[8:]) ||
			hdr[6] != foot[8] || hdr[7] != foot[9] {
			return nil, errors.New("corrupt xz file (stream header does not match its footer)")
		}
		off := hdrOff + 12
		var bs []xzBlock
		for _, r := range recs {
			bs = append(bs, xzBlock{off: off, unpadded: r.unpadded, usize: r.usize})
			off += (r.unpadded + 3) &^ 3
		}
		streams = append(streams, xzStream{header: hdr, flags: [2]byte{hdr[6], hdr[7]}})
		blocks = append(blocks, bs)
		pos = hdrOff
	}
	ix := &xzIndex{}
	for i := len(streams) - 1; i >= 0; i-- {
		ix.streams = append(ix.streams, streams[i])
		for _, b := range blocks[i] {
			b.stream = len(ix.streams) - 1
			b.uoff = ix.size
			ix.size += b.usize
			ix.blocks = append(ix.blocks, b)
		}
	}
	return ix, nil
}

type xzRecord struct{ unpadded, usize int64 }

func parseXZIndex(b []byte) ([]xzRecord, error) {
	bad := errors.New("corrupt xz file (bad index)")
	if len(b) < 8 || b[0] != 0 || crc32.ChecksumIEEE(b[:len(b)-4]) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, bad
	}
	p := b[1 : len(b)-4]
	uvarint := func() (int64, bool) {
		var v uint64
		for i := 0; i < 9 && len(p) > 0; i++ {
			c := p[0]
			p = p[1:]
			v |= uint64(c&0x7f) << (7 * i)
			if c&0x80 == 0 {
				return int64(v), v < 1<<62
			}
		}
		return 0, false
	}
	n, ok := uvarint()
	if !ok || n > int64(len(p)) {
		return nil, bad
	}
	recs := make([]xzRecord, 0, n)
	for i := int64(0); i < n; i++ {
		u, ok1 := uvarint()
		s, ok2 := uvarint()
		if !ok1 || !ok2 || u < 5 {
			return nil, bad
		}
		recs = append(recs, xzRecord{u, s})
	}
	for _, c := range p {
		if c != 0 {
			return nil, bad
		}
	}
	if len(p) > 3 {
		return nil, bad
	}
	return recs, nil
}

// afterXZBlock, when set (by tests), runs after each block is written.
var afterXZBlock func()

// lzma2Only reports whether every block of the file uses LZMA2 alone, the
// filter chain the in-process decoder reads. Files with BCJ or delta
// filters (rare for disk images) go to the xz program as a stream.
func (ix *xzIndex) lzma2Only(f io.ReaderAt) (bool, error) {
	hdr := make([]byte, 1024)
	for _, b := range ix.blocks {
		n := min(int64(len(hdr)), b.unpadded)
		if _, err := f.ReadAt(hdr[:n], b.off); err != nil {
			return false, fmt.Errorf("reading the block header at byte %d: %v", b.off, err)
		}
		_, _, err := xz.ParseBlockHeader(hdr[:n])
		if errors.Is(err, xz.ErrFilters) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("block at byte %d: %v", b.off, err)
		}
	}
	return true, nil
}

// xzWorkers is how many blocks are decoded at once.
func xzWorkers(blocks int) int {
	return max(1, min(blocks, runtime.NumCPU(), 16))
}

// runXZ decodes the blocks of a seekable xz file in parallel with the
// in-process LZMA2 decoder (internal/xz), and writes each block's data where
// it belongs. Files with other filters never get here (lzma2Only). With a bmap, blocks without mapped data are not decoded, and a
// block's decoding stops after its last mapped byte.
func (j *job) runXZ(ctx context.Context, ix *xzIndex) error {
	type task struct {
		b     xzBlock
		need  int64       // decoded bytes needed from the block's start
		check []BmapRange // bmap ranges lying wholly in the block
	}
	var tasks []task
	var skipped int64
	for _, b := range ix.blocks {
		t := task{b: b, need: b.usize}
		if j.bm != nil {
			t.need = 0
			end := b.uoff + b.usize
			rs := j.bm.Ranges
			for i := j.bm.find(b.uoff); i < len(rs) && rs[i].Off < end; i++ {
				t.need = min(rs[i].End(), end) - b.uoff
				if rs[i].Off >= b.uoff && rs[i].End() <= end {
					t.check = append(t.check, rs[i])
				}
			}
		}
		if t.need == 0 {
			skipped += b.usize
			continue
		}
		tasks = append(tasks, t)
	}
	if j.bm != nil {
		// Ranges crossing a block boundary are checked by reading them
		// back once written.
		inBlock := map[int64]bool{}
		for _, t := range tasks {
			for _, r := range t.check {
				inBlock[r.Off] = true
			}
		}
		for _, r := range j.bm.Ranges {
			if !inBlock[r.Off] {
				j.post = append(j.post, r)
			}
		}
	}
	j.outPos.Add(skipped)
	workers := xzWorkers(len(tasks))
	j.decoder = fmt.Sprintf("xz: %d of %d blocks by %d parallel workers (in-process LZMA2)", len(tasks), len(ix.blocks), workers)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
		next  = make(chan task)
	)
	fail := func(err error) { once.Do(func() { first = err; cancel(err) }) }
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var (
				dec xz.Decoder
				raw []byte
			)
			for t := range next {
				if ctx.Err() != nil {
					continue
				}
				handled, err := j.xzBlockGo(ctx, ix, t.b, t.need, t.check, &dec, &raw)
				if err == nil && !handled {
					err = fmt.Errorf("%w: xz block at byte %d of %s: filter chain other than LZMA2", ErrImage, t.b.off, j.img.path)
				}
				if err != nil {
					fail(err)
				}
				if afterXZBlock != nil {
					afterXZBlock()
				}
			}
		}()
	}
	for _, t := range tasks {
		select {
		case next <- t:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
