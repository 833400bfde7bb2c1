package flash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"sort"
	"sync"
)

// rangeHasher checks the bmap ranges of a byte stream fed in order.
type rangeHasher struct {
	kind   string
	ranges []BmapRange // ranges to hash; Sum nil means "compute" (kept in own)
	i      int         // current range
	h      hash.Hash
	done   int64 // bytes of ranges[i] hashed
	bad    []BmapRange
	got    [][]byte
	own    map[int64][]byte // computed sums by range offset, for ranges without one
}

func newRangeHasher(kind string, ranges []BmapRange) *rangeHasher {
	if kind == "" {
		kind = "sha256"
	}
	h, _ := newHash(kind)
	return &rangeHasher{kind: kind, ranges: ranges, h: h, own: map[int64][]byte{}}
}

// feed hashes p, the image bytes at off. Bytes outside the ranges are
// ignored; calls must come in increasing offset order without gaps inside a
// range.
func (rh *rangeHasher) feed(off int64, p []byte) error {
	end := off + int64(len(p))
	for rh.i < len(rh.ranges) {
		r := rh.ranges[rh.i]
		pos := r.Off + rh.done
		if pos >= end {
			return nil
		}
		if pos < off {
			return fmt.Errorf("internal error: bytes %d..%d of bmap range %d-%d were never seen", pos, off, r.First, r.Last)
		}
		stop := min(end, r.End())
		if pos < stop {
			rh.h.Write(p[pos-off : stop-off])
			rh.done += stop - pos
		}
		if rh.done < r.Len {
			return nil
		}
		sum := rh.h.Sum(nil)
		if r.Sum == nil {
			rh.own[r.Off] = sum
		} else if !bytes.Equal(sum, r.Sum) {
			rh.bad = append(rh.bad, r)
			rh.got = append(rh.got, sum)
		}
		rh.h.Reset()
		rh.done = 0
		rh.i++
	}
	return nil
}

// finish reports mismatches, or ranges never completed.
func (rh *rangeHasher) finish(image string) error {
	if len(rh.bad) > 0 {
		r := rh.bad[0]
		more := ""
		if len(rh.bad) > 1 {
			more = fmt.Sprintf(" (and %d more ranges)", len(rh.bad)-1)
		}
		return fmt.Errorf("%w: image %s does not match its bmap: blocks %d-%d (bytes %d..%d) have %s %s, the bmap says %s%s",
			ErrChecksum, image, r.First, r.Last, r.Off, r.End(), rh.kind, hex.EncodeToString(rh.got[0]), hex.EncodeToString(r.Sum), more)
	}
	if rh.i < len(rh.ranges) {
		r := rh.ranges[rh.i]
		return fmt.Errorf("%w: image %s ended at byte %d, inside bmap range %d-%d (truncated image, or the bmap of another image?)",
			ErrImage, image, r.Off+rh.done, r.First, r.Last)
	}
	return nil
}

// segment is a piece of the decoded image and its sha256, for Verify.
type segment struct {
	off, len int64
	zero     bool
	sum      [32]byte
}

// segments collects segment hashes from any number of goroutines.
type segments struct {
	mu   sync.Mutex
	list []segment
}

func (s *segments) add(off int64, p []byte) {
	seg := segment{off: off, len: int64(len(p)), zero: isZero(p)}
	if !seg.zero {
		seg.sum = sha256.Sum256(p)
	}
	s.mu.Lock()
	s.list = append(s.list, seg)
	s.mu.Unlock()
}

func (s *segments) addZeros(off, n int64) {
	s.mu.Lock()
	s.list = append(s.list, segment{off: off, len: n, zero: true})
	s.mu.Unlock()
}

func (s *segments) sorted() []segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	sort.Slice(s.list, func(i, j int) bool { return s.list[i].off < s.list[j].off })
	return s.list
}
