package flash

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/ulikunitz/xz"
)

// inputReader reads the image file for a decoder: it counts bytes for
// progress, stops on cancellation, and for a non-regular image hashes what
// it reads (the image checksum).
type inputReader struct {
	ctx  context.Context
	r    io.Reader
	pos  *atomic.Int64
	hash hash.Hash
}

func (in *inputReader) Read(p []byte) (int, error) {
	if err := in.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := in.r.Read(p)
	if n > 0 {
		in.pos.Add(int64(n))
		if in.hash != nil {
			in.hash.Write(p[:n])
		}
	}
	return n, err
}

func newSHA256() hash.Hash { return sha256.New() }

// teeResult drains the rest of the image into its checksum (after a clean
// decode) and returns the checksum or the error.
func teeResult(in *inputReader, err error) sumResult {
	if err == nil {
		_, err = io.Copy(io.Discard, in)
	}
	if err != nil {
		return sumResult{err: err}
	}
	return sumResult{sum: hex.EncodeToString(in.hash.Sum(nil))}
}

// streamSum returns the channel on which the sha256 of a non-regular image
// is delivered once the stream has been read.
func (j *job) streamSum() chan sumResult { return j.teeSum }

// runStream decodes the image front to back through one decoder.
func (j *job) runStream(ctx context.Context) (err error) {
	var src io.Reader = j.img.f
	if len(j.img.head) > 0 {
		src = io.MultiReader(bytes.NewReader(j.img.head), j.img.f)
	}
	if !j.img.regular {
		// Closing the pipe unblocks a read waiting on it.
		stop := context.AfterFunc(ctx, func() { j.img.f.Close() })
		defer stop()
	}
	in := &inputReader{ctx: ctx, r: bufio.NewReaderSize(src, 1<<20), pos: &j.inPos}
	if j.teeSum != nil {
		in.hash = sha256.New()
		defer func() { j.teeSum <- teeResult(in, err) }()
	}

	dec, closeDec, err := j.newDecoder(in)
	if err != nil {
		return err
	}
	defer closeDec()
	stopAt := j.startBmap()
	var off int64
	err = j.pipeline(ctx, func(p *pipe) error {
		for stopAt < 0 || off < stopAt {
			buf, err := p.buffer()
			if err != nil {
				return err
			}
			want := len(buf)
			if stopAt >= 0 {
				want = int(min(int64(want), stopAt-off))
			}
			n, rerr := readFull(dec, buf[:want])
			if n > 0 {
				if err := p.send(chunk{off: off, buf: buf, data: buf[:n]}); err != nil {
					return err
				}
				off += int64(n)
			} else {
				p.pool <- buf
			}
			if rerr != nil {
				if isEOF(rerr) {
					return nil
				}
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return fmt.Errorf("%w: decoding %s (%s) failed after %d bytes: %v (truncated or corrupt?)", ErrImage, j.img.path, j.img.format, off, rerr)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return j.streamEnd(off, stopAt)
}

// newDecoder returns a reader of the decoded image.
func (j *job) newDecoder(in io.Reader) (io.Reader, func(), error) {
	bad := func(err error) (io.Reader, func(), error) {
		return nil, nil, fmt.Errorf("%w: %s is not valid %s: %v", ErrImage, j.img.path, j.img.format, err)
	}
	switch j.img.format {
	case "raw":
		j.decoder = "raw"
		return in, func() {}, nil
	case "gzip":
		// pgzip decompresses ahead of the reader and checks the CRC in
		// parallel: measured faster than compress/gzip and than piping
		// from pigz.
		z, err := pgzip.NewReaderN(in, 1<<20, 4)
		if err != nil {
			return bad(err)
		}
		j.decoder = "gzip (klauspost/pgzip)"
		return z, func() { z.Close() }, nil
	case "zstd":
		// One goroutine: the concurrent mode measured slower here, as the
		// pipeline already keeps the other cores busy writing and hashing.
		// The frame checksum is redundant when bmap ranges are checked.
		z, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(1<<31), zstd.WithDecoderMaxMemory(1<<40),
			zstd.IgnoreChecksum(j.bm != nil && j.bm.Checksum != ""))
		if err != nil {
			return bad(err)
		}
		j.decoder = "zstd (klauspost/compress)"
		return z, z.Close, nil
	case "bzip2":
		j.decoder = "bzip2 (compress/bzip2)"
		return bzip2.NewReader(in), func() {}, nil
	case "xz":
		z, err := xz.NewReader(in)
		if err != nil {
			return bad(err)
		}
		j.decoder = "xz (ulikunitz/xz, no xz program found)"
		return z, func() {}, nil
	}
	return nil, nil, fmt.Errorf("%w: unknown format %q", ErrImage, j.img.format)
}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// startBmap sets up the range hasher when the job has a bmap and returns the
// offset after which decoding may stop: the end of the last mapped range, or
// -1 without a bmap (decode everything).
func (j *job) startBmap() int64 {
	if j.bm == nil {
		return -1
	}
	j.rh = newRangeHasher(j.bm.Checksum, j.bm.Ranges)
	if n := len(j.bm.Ranges); n > 0 {
		return j.bm.Ranges[n-1].End()
	}
	return 0
}
