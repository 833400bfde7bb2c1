package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// maxGap is the largest unmapped gap read through rather than seeked over
// when gathering bmap ranges into one read.
const maxGap = 256 << 10

// runRaw copies a raw image file. With a bmap it reads only the mapped
// ranges (neighbours gathered into large reads); without, it reads only the
// data extents of a sparse image and reports its holes as zero runs.
func (j *job) runRaw(ctx context.Context) error {
	if j.bm != nil {
		j.rh = newRangeHasher(j.bm.Checksum, j.bm.Ranges)
	}
	err := j.pipeline(ctx, func(p *pipe) error {
		if j.bm != nil {
			return j.produceRanges(p)
		}
		return j.produceExtents(p)
	})
	if err != nil {
		return err
	}
	if j.rh != nil {
		j.ownSums(j.rh.own)
		return j.rh.finish(j.img.path)
	}
	return nil
}

// readChunk reads n bytes of the image at off into a pipeline buffer and
// sends it on.
func (j *job) readChunk(p *pipe, off int64, n int) error {
	buf, err := p.buffer()
	if err != nil {
		return err
	}
	k, err := j.img.f.ReadAt(buf[:n], off)
	if k < n {
		p.pool <- buf
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s ended at byte %d while reading it (did it shrink?)", ErrImage, j.img.path, off+int64(k))
		}
		return fmt.Errorf("%w: reading %s: %v", ErrImage, j.img.path, err)
	}
	j.inPos.Store(off + int64(n))
	return p.send(chunk{off: off, buf: buf, data: buf[:n]})
}

func (j *job) produceRanges(p *pipe) error {
	rs := j.bm.Ranges
	if len(rs) == 0 {
		return nil
	}
	pos := rs[0].Off
	for i := 0; i < len(rs); {
		// Gather ranges close to each other into one read of at most
		// chunkSize bytes; split long ones.
		off := pos
		end := min(rs[i].End(), off+chunkSize)
		if end == rs[i].End() {
			i++
			for i < len(rs) && rs[i].Off-end <= maxGap && rs[i].End()-off <= chunkSize {
				end = rs[i].End()
				i++
			}
			if i < len(rs) {
				pos = rs[i].Off
			}
		} else {
			pos = end
		}
		if err := j.readChunk(p, off, int(end-off)); err != nil {
			return err
		}
	}
	return nil
}

func (j *job) produceExtents(p *pipe) error {
	fd := int(j.img.f.Fd())
	size := j.img.size
	var pos int64
	for pos < size {
		data, hole := nextExtent(fd, pos, size)
		if data > pos {
			if err := p.send(chunk{off: pos, zeros: data - pos}); err != nil {
				return err
			}
			pos = data
		}
		for pos < hole {
			n := min(hole-pos, chunkSize)
			if err := j.readChunk(p, pos, int(n)); err != nil {
				return err
			}
			pos += n
		}
	}
	return nil
}
