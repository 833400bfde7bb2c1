package flash

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// writer puts decoded image bytes onto the target. Its methods may be called
// from several goroutines at once, for disjoint offsets.
type writer struct {
	t         *target
	bm        *Bmap
	skipZeros bool // regular file target, emptied first: zero runs become holes
	zeroout   bool // block device without bmap: zero runs via BLKZEROOUT

	noZeroout atomic.Bool // BLKZEROOUT is not supported
	written   atomic.Int64
	dirty     atomic.Int64
	kick      chan struct{}
}

// put writes p, the image bytes at offset off: with a bmap only the parts
// inside mapped ranges.
func (w *writer) put(off int64, p []byte) error {
	if w.bm == nil {
		return w.putData(off, p)
	}
	end := off + int64(len(p))
	rs := w.bm.Ranges
	for i := w.bm.find(off); i < len(rs) && rs[i].Off < end; i++ {
		a, b := max(off, rs[i].Off), min(end, rs[i].End())
		if err := w.putData(a, p[a-off:b-off]); err != nil {
			return err
		}
	}
	return nil
}

// putZeros records that the image holds n zero bytes at off (a hole of a
// sparse raw image, or of xz output). A fresh file target already reads
// zeros there; a block device gets them written where they are mapped.
func (w *writer) putZeros(off, n int64) error {
	if w.skipZeros || n == 0 {
		return nil
	}
	if w.bm == nil {
		return w.zeroRange(off, n)
	}
	end := off + n
	rs := w.bm.Ranges
	for i := w.bm.find(off); i < len(rs) && rs[i].Off < end; i++ {
		a, b := max(off, rs[i].Off), min(end, rs[i].End())
		if err := w.zeroRange(a, b-a); err != nil {
			return err
		}
	}
	return nil
}

// putData writes p at off, all of which the target must end up holding.
func (w *writer) putData(off int64, p []byte) error {
	switch {
	case w.skipZeros:
		var buf [64]span
		for _, s := range dataSpans(buf[:0], p, off, minHoleFile) {
			if err := w.pwrite(off+int64(s.off), p[s.off:s.off+s.len]); err != nil {
				return err
			}
		}
		return nil
	case w.zeroout && len(p) >= minZeroout:
		var buf [64]span
		done := 0
		for _, s := range dataSpans(buf[:0], p, off, minZeroout) {
			if err := w.zeroGap(off, p, done, s.off); err != nil {
				return err
			}
			if err := w.pwrite(off+int64(s.off), p[s.off:s.off+s.len]); err != nil {
				return err
			}
			done = s.off + s.len
		}
		return w.zeroGap(off, p, done, len(p))
	}
	return w.pwrite(off, p)
}

// zeroGap zeroes p[a:b] (all zeros) on the target.
func (w *writer) zeroGap(off int64, p []byte, a, b int) error {
	if b-a >= minZeroout {
		return w.zeroRange(off+int64(a), int64(b-a))
	}
	if b > a {
		return w.pwrite(off+int64(a), p[a:b])
	}
	return nil
}

// zeroRange makes n bytes at off zero on a block device: BLKZEROOUT for the
// page-aligned middle, plain writes for the rest.
func (w *writer) zeroRange(off, n int64) error {
	end := off + n
	a := (off + pageSize - 1) / pageSize * pageSize
	b := end / pageSize * pageSize
	if b-a >= minZeroout && !w.noZeroout.Load() {
		r := [2]uint64{uint64(a), uint64(b - a)}
		if err := ioctlPtr(w.t.fd, unix.BLKZEROOUT, &r); err == nil {
			if err := w.writeZeros(off, a-off); err != nil {
				return err
			}
			w.written.Add(b - a)
			return w.writeZeros(b, end-b)
		} else if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EIO) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
			return mapWriteErr(w.t, a, err)
		}
		w.noZeroout.Store(true)
	}
	return w.writeZeros(off, n)
}

var zeroChunk = make([]byte, 1<<20)

func (w *writer) writeZeros(off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroChunk)))
		if err := w.pwrite(off, zeroChunk[:k]); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// pwrite writes all of p at off.
func (w *writer) pwrite(off int64, p []byte) error {
	total := len(p)
	for len(p) > 0 {
		n, err := unix.Pwrite(w.t.fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return mapWriteErr(w.t, off, err)
		}
		if n == 0 {
			return mapWriteErr(w.t, off, unix.ENOSPC)
		}
		p, off = p[n:], off+int64(n)
	}
	w.written.Add(int64(total))
	if w.dirty.Add(int64(total)) >= kickEvery {
		w.dirty.Store(0)
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// flusher starts writeback of dirty pages whenever kicked, so the disk is
// busy while we decode and the final fsync is short.
func (w *writer) flusher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
			unix.SyncFileRange(w.t.fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		}
	}
}

// mapWriteErr turns a write or sync error into a clear error.
func mapWriteErr(t *target, off int64, err error) error {
	at := ""
	if off >= 0 {
		at = fmt.Sprintf(" at offset %d", off)
	}
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT), errors.Is(err, unix.EFBIG):
		if t.block {
			return fmt.Errorf("%w: writing %s%s: %v (the image is larger than the device?)", ErrTargetFull, t.path, at, err)
		}
		return fmt.Errorf("%w: writing %s%s: %v", ErrTargetFull, t.path, at, err)
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO), errors.Is(err, unix.EIO):
		return fmt.Errorf("%w: writing %s%s: %v (device removed or failing?)", ErrTarget, t.path, at, err)
	}
	return fmt.Errorf("%w: writing %s%s: %v", ErrTarget, t.path, at, err)
}
