package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"math"

	"github.com/jsplan/jsplan/internal/flash/internal/xz"
)

// xzBlockGo decodes block b in process (see lzma.go). It returns handled
// false, with nothing written, when the block uses filters it does not
// know; the caller then uses the xz program.
func (j *job) xzBlockGo(ctx context.Context, ix *xzIndex, b xzBlock, need int64, check []BmapRange, dec *xz.Decoder, raw *[]byte) (bool, error) {
	what := fmt.Sprintf("xz block at byte %d of %s", b.off, j.img.path)
	total := int((b.unpadded + 3) &^ 3)
	if cap(*raw) < total {
		*raw = make([]byte, total)
	}
	blk := (*raw)[:total]
	if _, err := j.img.f.ReadAt(blk, b.off); err != nil {
		return true, fmt.Errorf("%w: reading %s: %v", ErrImage, what, err)
	}
	hdr, dictSize, err := xz.ParseBlockHeader(blk)
	if errors.Is(err, xz.ErrFilters) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%w: %s: %v", ErrImage, what, err)
	}
	checkType := ix.streams[b.stream].flags[1] & 0x0f
	csize := xz.CheckSize(checkType)
	dataLen := int(b.unpadded) - hdr - csize
	if dataLen <= 0 {
		return true, fmt.Errorf("%w: %s: sizes do not add up", ErrImage, what)
	}
	pad := (4 - dataLen%4) % 4
	data := blk[hdr : hdr+dataLen]
	full := need == b.usize

	var rh *rangeHasher
	if len(check) > 0 {
		rh = newRangeHasher(j.bm.Checksum, check)
	}
	verifySegs := j.opts.Verify && j.bm == nil
	var (
		c64   uint64
		c32   uint32
		sum   hash.Hash
		spans []span
	)
	if full && checkType == 10 {
		sum = sha256.New()
	}
	out := func(off int64, p []byte) error {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		abs := b.uoff + off
		if err := j.w.put(abs, p); err != nil {
			return err
		}
		if rh != nil {
			if err := rh.feed(abs, p); err != nil {
				return err
			}
		}
		if verifySegs {
			for i := 0; i < len(p); i += chunkSize {
				j.segs.add(abs+int64(i), p[i:min(len(p), i+chunkSize)])
			}
		}
		if full {
			switch checkType {
			case 1:
				c32 = crc32.Update(c32, crc32.IEEETable, p)
			case 4:
				// Zero runs extend the CRC arithmetically.
				spans = dataSpans(spans[:0], p, abs, 16<<10)
				at := 0
				for _, s := range spans {
					c64 = xz.CRC64Zeros(c64, int64(s.off-at))
					c64 = crc64.Update(c64, xz.CRC64Table, p[s.off:s.off+s.len])
					at = s.off + s.len
				}
				c64 = xz.CRC64Zeros(c64, int64(len(p)-at))
			case 10:
				sum.Write(p)
			}
		}
		j.outPos.Add(int64(len(p)))
		return nil
	}
	dec.Init(dictSize, b.usize, out)
	stop := int64(math.MaxInt64)
	if !full {
		stop = need
	}
	used, err := dec.DecodeLZMA2(data, stop)
	if err != nil {
		if ctx.Err() != nil {
			return true, context.Cause(ctx)
		}
		if errors.Is(err, xz.ErrCorrupt) {
			return true, fmt.Errorf("%w: %s: %v", ErrImage, what, err)
		}
		return true, err
	}
	if !full {
		j.outPos.Add(b.usize - dec.Total())
	} else {
		if used != dataLen || dec.Total() != b.usize {
			return true, fmt.Errorf("%w: %s: decodes to %d bytes from %d, the index says %d from %d", ErrImage, what, dec.Total(), used, b.usize, dataLen)
		}
		if !isZero(blk[hdr+dataLen : hdr+dataLen+pad]) {
			return true, fmt.Errorf("%w: %s: non-zero block padding", ErrImage, what)
		}
		want := blk[hdr+dataLen+pad : hdr+dataLen+pad+csize]
		var got []byte
		switch checkType {
		case 0:
		case 1:
			got = binary.LittleEndian.AppendUint32(nil, c32)
		case 4:
			got = binary.LittleEndian.AppendUint64(nil, c64)
		case 10:
			got = sum.Sum(nil)
		default:
			got = want // unknown check types are not verified (as xz does with a warning)
		}
		if !bytes.Equal(got, want) {
			return true, fmt.Errorf("%w: %s: integrity check failed (data %x, stored %x)", ErrImage, what, got, want)
		}
	}
	if rh != nil {
		j.ownSums(rh.own)
		return true, rh.finish(j.img.path)
	}
	return true, nil
}
