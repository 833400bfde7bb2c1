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
)

var crc64Table = crc64.MakeTable(crc64.ECMA)

// crc64Zeros returns the xz CRC64 crc extended by n zero bytes, in
// O(log n): feeding zeros multiplies the CRC register by x^(8n) modulo the
// polynomial.
func crc64Zeros(crc uint64, n int64) uint64 {
	if n <= 0 {
		return crc
	}
	return ^mulModP(xPow8n(n), ^crc)
}

// x2n[k] is x^(2^k) modulo the CRC polynomial, bit-reflected.
var x2n = func() (t [64]uint64) {
	p := uint64(1) << 62 // x^1
	for k := range t {
		t[k] = p
		p = mulModP(p, p)
	}
	return t
}()

// mulModP multiplies a and b modulo the reflected ECMA-182 polynomial.
func mulModP(a, b uint64) uint64 {
	const poly = 0xC96C5795D7870F42
	var p uint64
	for m := uint64(1) << 63; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ poly
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n returns x^(8n) modulo the polynomial.
func xPow8n(n int64) uint64 {
	p := uint64(1) << 63 // x^0
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = mulModP(x2n[k&63], p)
		}
	}
	return p
}

// checkSize is the size of the integrity check of an xz check type.
func checkSize(t byte) int {
	switch {
	case t == 0:
		return 0
	case t <= 3:
		return 4
	case t <= 6:
		return 8
	case t <= 9:
		return 16
	case t <= 12:
		return 32
	}
	return 64
}

var errXZFilters = errors.New("filter chain other than LZMA2")

// parseBlockHeader reads an xz block header: its size and the LZMA2
// dictionary size. Blocks with other filters (BCJ, delta) give errXZFilters.
func parseBlockHeader(b []byte) (int, int64, error) {
	bad := errors.New("corrupt xz block header")
	if len(b) < 8 || b[0] == 0 {
		return 0, 0, bad
	}
	size := (int(b[0]) + 1) * 4
	if size > len(b) || crc32.ChecksumIEEE(b[:size-4]) != binary.LittleEndian.Uint32(b[size-4:]) {
		return 0, 0, bad
	}
	flags := b[1]
	if flags&0x3c != 0 {
		return 0, 0, bad
	}
	p := b[2 : size-4]
	uvarint := func() (uint64, bool) {
		var v uint64
		for i := 0; i < 9 && len(p) > 0; i++ {
			c := p[0]
			p = p[1:]
			v |= uint64(c&0x7f) << (7 * i)
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	if flags&0x40 != 0 {
		if _, ok := uvarint(); !ok {
			return 0, 0, bad
		}
	}
	if flags&0x80 != 0 {
		if _, ok := uvarint(); !ok {
			return 0, 0, bad
		}
	}
	if flags&3 != 0 {
		return size, 0, errXZFilters
	}
	id, ok1 := uvarint()
	n, ok2 := uvarint()
	if !ok1 || !ok2 || n > uint64(len(p)) {
		return 0, 0, bad
	}
	if id != 0x21 || n != 1 {
		return size, 0, errXZFilters
	}
	d := p[0]
	if d > 40 {
		return 0, 0, bad
	}
	if d == 40 {
		return size, math.MaxUint32, nil
	}
	return size, int64(2|d&1) << (d/2 + 11), nil
}

// xzBlockGo decodes block b in process (see lzma.go). It returns handled
// false, with nothing written, when the block uses filters it does not
// know; the caller then uses the xz program.
func (j *job) xzBlockGo(ctx context.Context, ix *xzIndex, b xzBlock, need int64, check []BmapRange, dec *lzmaDec, raw *[]byte) (bool, error) {
	what := fmt.Sprintf("xz block at byte %d of %s", b.off, j.img.path)
	total := int((b.unpadded + 3) &^ 3)
	if cap(*raw) < total {
		*raw = make([]byte, total)
	}
	blk := (*raw)[:total]
	if _, err := j.img.f.ReadAt(blk, b.off); err != nil {
		return true, fmt.Errorf("%w: reading %s: %v", ErrImage, what, err)
	}
	hdr, dictSize, err := parseBlockHeader(blk)
	if errors.Is(err, errXZFilters) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%w: %s: %v", ErrImage, what, err)
	}
	checkType := ix.streams[b.stream].flags[1] & 0x0f
	csize := checkSize(checkType)
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
					c64 = crc64Zeros(c64, int64(s.off-at))
					c64 = crc64.Update(c64, crc64Table, p[s.off:s.off+s.len])
					at = s.off + s.len
				}
				c64 = crc64Zeros(c64, int64(len(p)-at))
			case 10:
				sum.Write(p)
			}
		}
		j.outPos.Add(int64(len(p)))
		return nil
	}
	dec.init(dictSize, b.usize, out)
	stop := int64(math.MaxInt64)
	if !full {
		stop = need
	}
	used, err := dec.decodeLZMA2(data, stop)
	if err != nil {
		if ctx.Err() != nil {
			return true, context.Cause(ctx)
		}
		if errors.Is(err, errLZMA) {
			return true, fmt.Errorf("%w: %s: %v", ErrImage, what, err)
		}
		return true, err
	}
	if !full {
		j.outPos.Add(b.usize - dec.total)
	} else {
		if used != dataLen || dec.total != b.usize {
			return true, fmt.Errorf("%w: %s: decodes to %d bytes from %d, the index says %d from %d", ErrImage, what, dec.total, used, b.usize, dataLen)
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
