package flash

import (
	"encoding/binary"
	"unsafe"
)

// pageSize is the granularity of zero detection and of holes in file targets.
const pageSize = 4096

// isZero reports whether every byte of p is zero. It reads eight words per
// step and stops at the first non-zero word, so data costs a few nanoseconds
// and a zero page costs one pass over memory.
func isZero(p []byte) bool {
	// Head until 8-byte aligned.
	for len(p) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(p)))&7 != 0 {
		if p[0] != 0 {
			return false
		}
		p = p[1:]
	}
	if len(p) >= 8 && binary.NativeEndian.Uint64(p) != 0 {
		return false
	}
	for len(p) >= 64 {
		w := (*[8]uint64)(unsafe.Pointer(unsafe.SliceData(p)))
		if w[0]|w[1]|w[2]|w[3]|w[4]|w[5]|w[6]|w[7] != 0 {
			return false
		}
		p = p[64:]
	}
	for len(p) >= 8 {
		if binary.NativeEndian.Uint64(p) != 0 {
			return false
		}
		p = p[8:]
	}
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

// span is a run of bytes [Off, Off+Len) of a buffer.
type span struct{ off, len int }

// dataSpans splits p, which sits at offset base of the image, into runs that
// must be written, leaving out runs of whole zero pages of at least minHole
// bytes (and zero pages at either end of p). It appends to dst and returns it.
func dataSpans(dst []span, p []byte, base int64, minHole int) []span {
	start := -1     // start of the current data run
	zeroStart := -1 // start of the current zero run inside or before data
	i := 0
	for i < len(p) {
		// Pages follow the image's page grid, not p's.
		next := i + pageSize - int((base+int64(i))%pageSize)
		if next > len(p) {
			next = len(p)
		}
		if isZero(p[i:next]) {
			if zeroStart < 0 {
				zeroStart = i
			}
		} else {
			if start < 0 {
				start = i
			} else if zeroStart >= 0 && i-zeroStart >= minHole {
				dst = append(dst, span{start, zeroStart - start})
				start = i
			}
			zeroStart = -1
		}
		i = next
	}
	if start >= 0 {
		end := len(p)
		if zeroStart >= 0 {
			end = zeroStart
		}
		dst = append(dst, span{start, end - start})
	}
	return dst
}
