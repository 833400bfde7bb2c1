package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// ownSums keeps checksums computed for bmap ranges that carry none.
func (j *job) ownSums(m map[int64][]byte) {
	if len(m) == 0 {
		return
	}
	j.ownMu.Lock()
	defer j.ownMu.Unlock()
	if j.own == nil {
		j.own = map[int64][]byte{}
	}
	for k, v := range m {
		j.own[k] = v
	}
}

// readTarget reads len(p) bytes of the target at off.
func (j *job) readTarget(p []byte, off int64) error {
	n, err := j.t.f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: target %s ends at byte %d", ErrVerify, j.t.path, off+int64(n))
	}
	return fmt.Errorf("%w: reading back %s at offset %d: %v", ErrVerify, j.t.path, off, err)
}

// checkRanges reads bmap ranges back from the target and compares them with
// their checksums. With verify false it runs before the final sync (the
// data is still cached) and checks the image against its bmap; with verify
// true it checks the target.
func (j *job) checkRanges(ctx context.Context, ranges []BmapRange, verify bool) error {
	buf := make([]byte, chunkSize)
	for _, r := range ranges {
		h, err := newHash(j.bm.Checksum)
		if err != nil {
			h = sha256.New()
		}
		for off := r.Off; off < r.End(); {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), r.End()-off)
			if err := j.readTarget(buf[:n], off); err != nil {
				return err
			}
			h.Write(buf[:n])
			off += n
		}
		got := h.Sum(nil)
		want := r.Sum
		if want == nil {
			j.ownMu.Lock()
			want = j.own[r.Off]
			if want == nil && !verify {
				if j.own == nil {
					j.own = map[int64][]byte{}
				}
				j.own[r.Off] = got
				want = got
			}
			j.ownMu.Unlock()
		}
		if want == nil || bytes.Equal(got, want) {
			continue
		}
		if verify {
			return fmt.Errorf("%w: %s differs from the image in blocks %d-%d (bytes %d..%d)", ErrVerify, j.t.path, r.First, r.Last, r.Off, r.End())
		}
		return fmt.Errorf("%w: image %s does not match its bmap: blocks %d-%d (bytes %d..%d) have %s %s, the bmap says %s",
			ErrChecksum, j.img.path, r.First, r.Last, r.Off, r.End(), j.bm.Checksum, hex.EncodeToString(got), hex.EncodeToString(want))
	}
	return nil
}

// verify reads back what was written, from the device rather than the page
// cache, and compares.
func (j *job) verify(ctx context.Context) error {
	// After fsync the cached pages are clean; drop them so reads hit the
	// disk.
	unix.Fadvise(j.t.fd, 0, 0, unix.FADV_DONTNEED)
	if j.bm != nil {
		return j.checkRanges(ctx, j.bm.Ranges, true)
	}
	buf := make([]byte, chunkSize)
	for _, s := range j.segs.sorted() {
		for off := s.off; off < s.off+s.len; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), s.off+s.len-off)
			if s.zero {
				if err := j.readTarget(buf[:n], off); err != nil {
					return err
				}
				if !isZero(buf[:n]) {
					return fmt.Errorf("%w: %s differs from the image in bytes %d..%d (should be zeros)", ErrVerify, j.t.path, off, off+n)
				}
				off += n
				continue
			}
			if s.len > int64(len(buf)) {
				return fmt.Errorf("internal error: verify segment of %d bytes", s.len)
			}
			if err := j.readTarget(buf[:s.len], s.off); err != nil {
				return err
			}
			if sha256.Sum256(buf[:s.len]) != s.sum {
				return fmt.Errorf("%w: %s differs from the image in bytes %d..%d", ErrVerify, j.t.path, s.off, s.off+s.len)
			}
			off += s.len
		}
	}
	return nil
}
