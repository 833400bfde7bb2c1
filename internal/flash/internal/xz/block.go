package xz

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"hash/crc64"
	"math"
)

// CRC64Table is the table of the CRC64 xz uses (ECMA-182).
var CRC64Table = crc64.MakeTable(crc64.ECMA)

// CRC64Zeros returns the xz CRC64 crc extended by n zero bytes, in
// O(log n): feeding zeros multiplies the CRC register by x^(8n) modulo the
// polynomial.
func CRC64Zeros(crc uint64, n int64) uint64 {
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

// CheckSize is the size of the integrity check of an xz check type.
func CheckSize(t byte) int {
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

// ErrFilters: the block uses a filter chain other than LZMA2 alone.
var ErrFilters = errors.New("filter chain other than LZMA2")

// ParseBlockHeader reads an xz block header: its size and the LZMA2
// dictionary size. Blocks with other filters (BCJ, delta) give ErrFilters.
func ParseBlockHeader(b []byte) (int, int64, error) {
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
		return size, 0, ErrFilters
	}
	id, ok1 := uvarint()
	n, ok2 := uvarint()
	if !ok1 || !ok2 || n > uint64(len(p)) {
		return 0, 0, bad
	}
	if id != 0x21 || n != 1 {
		return size, 0, ErrFilters
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
