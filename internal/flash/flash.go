// Package flash writes disk images to regular files and block devices, fast.
//
// Write streams an image (raw, or gzip, xz, zstd or bzip2 compressed; the
// format is told by its magic bytes) onto a target, never decompressing it
// to disk first. With a bmaptool block map it writes only the mapped ranges
// and checks each range's checksum. Without one, a regular-file target is
// rebuilt sparse: it is emptied first and runs of zeros are left as holes;
// a block device gets every byte (long zero runs through BLKZEROOUT).
//
// How each format is read:
//   - raw: only the data extents of a sparse image (SEEK_DATA), or only the
//     bmap's ranges, in large reads;
//   - xz (seekable): the stream index is read and blocks are decoded in
//     parallel by an in-process LZMA2 decoder that turns the long matches
//     encoding zero runs into memclr (liblzma copies them a byte at a time);
//     with a bmap, blocks without mapped data are skipped and decoding stops
//     after the last mapped byte. Files with BCJ or delta filters go to the
//     xz program;
//   - zstd, and xz from a pipe: the zstd/xz program writes into a memfd,
//     which it fills sparsely (seeking over zeros); we follow it, pass its
//     data extents on and punch out what we consumed, pausing the program
//     when it gets too far ahead. A pipe's format is peeked at (tee), so
//     that the program reads the pipe itself unless the image's sha256 is
//     asked for (then we read it, hash it and pass it on). Without the
//     program: klauspost/compress (zstd) or ulikunitz/xz;
//   - gzip: klauspost/pgzip; bzip2: compress/bzip2.
//
// The in-process LZMA2 decoder and the xz block parsing live in
// internal/xz, fuzzed against github.com/ulikunitz/xz and the xz program.
// It stays because it is measurably faster on disk images (BenchmarkLZMA2
// and BenchmarkLZMA2Ref, raw LZMA2 preset 6, on 2 shared cores): 775 MB/s
// on zeros where `xz -dc` gives 245 MB/s and ulikunitz/xz 21 MB/s, and
// 20 MB/s on shared-library data (xz 19, ulikunitz/xz 12).
//
// Reading and decoding, writing and hashing overlap in goroutines; writeback
// of the target starts while writing (sync_file_range), so the final fsync
// is short.
//
// Write refuses a target that is neither a regular file nor a block device,
// a block device that is mounted or used as swap (or whose partitions or
// holders are), and the disk of the running system's root file system, or
// any partition on it. Everything written is durable (fsync) when Write
// returns without error.
package flash

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Errors returned by Write wrap one of these (test with errors.Is).
var (
	// ErrRefused: the target must not or cannot be written.
	ErrRefused = errors.New("flash: target refused")
	// ErrImage: the image cannot be read, or is truncated or corrupt.
	ErrImage = errors.New("flash: bad image")
	// ErrBmap: the bmap cannot be read or is invalid.
	ErrBmap = errors.New("flash: bad bmap")
	// ErrChecksum: the image does not match its expected checksum or the
	// checksums of its bmap.
	ErrChecksum = errors.New("flash: checksum mismatch")
	// ErrTargetFull: the target is too small or its file system is full.
	ErrTargetFull = errors.New("flash: target full")
	// ErrTarget: writing or syncing the target failed.
	ErrTarget = errors.New("flash: target write failed")
	// ErrVerify: reading back the target found different data.
	ErrVerify = errors.New("flash: verification failed")
)

// Options tell Write what to write and how.
type Options struct {
	// Image is the path of the image: raw, or gzip, xz, zstd or bzip2
	// compressed (detected by magic bytes, not by name). A pipe works too,
	// though without the seek-based speedups.
	Image string
	// Bmap is the path of a bmaptool .bmap. Empty: look next to the image
	// (IMAGE.bmap, then with extensions removed one by one: foo.wic.zst.bmap,
	// foo.wic.bmap, foo.bmap).
	Bmap string
	// NoBmap ignores any bmap.
	NoBmap bool
	// SHA256 is the expected sha256 (hex) of the image file as given (its
	// bytes on disk, compressed or not); checked while streaming.
	SHA256 string
	// Verify reads back what was written, bypassing the page cache, and
	// compares it against the bmap range checksums, or without a bmap
	// against hashes of the decoded stream taken while writing.
	Verify bool
	// Progress receives progress; nil for none. A terminal gets a bar with
	// rate and ETA; anything else a plain line every few seconds.
	Progress io.Writer
}

// Result describes a finished write.
type Result struct {
	BytesWritten int64         // bytes written to the target (holes and skipped ranges excluded)
	ImageSize    int64         // size of the decoded image
	Mapped       int64         // bytes the bmap maps (ImageSize without a bmap)
	Duration     time.Duration // wall time of Write
	Format       string        // "raw", "gzip", "xz", "zstd" or "bzip2"
	UsedBmap     string        // path of the bmap used, "" if none
	Decoder      string        // how the image was decoded, e.g. "xz (2 workers)"
	SHA256       string        // sha256 of the image file, when it was computed
	Verified     bool          // the target was read back and matched
	BlockDevice  bool          // the target is a block device (else a regular file)
}

// Tunables.
const (
	chunkSize   = 4 << 20  // pipeline buffer size
	numBuffers  = 8        // buffers in flight per pipeline
	minHoleFile = 32 << 10 // shortest zero run left as a hole in a file target
	minZeroout  = 1 << 20  // shortest zero run zeroed with BLKZEROOUT on a block device
	kickEvery   = 32 << 20 // start writeback after this many dirty bytes
)

// Write writes the image opts.Image to target, a regular file (created if
// missing) or a block device, and returns once it is durable.
func Write(ctx context.Context, target string, opts Options) (Result, error) {
	start := time.Now()
	res := Result{}
	if opts.Image == "" {
		return res, fmt.Errorf("%w: no image given", ErrImage)
	}
	if opts.SHA256 != "" {
		s := strings.ToLower(strings.TrimSpace(opts.SHA256))
		if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
			return res, fmt.Errorf("flash: expected sha256 %q is not 64 hex digits", opts.SHA256)
		}
		opts.SHA256 = s
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	img, err := openImage(opts.Image)
	if err != nil {
		return res, err
	}
	defer img.f.Close()
	res.Format = img.format

	var bm *Bmap
	if !opts.NoBmap {
		p := opts.Bmap
		if p == "" {
			p = findBmap(opts.Image)
		}
		if p != "" {
			if bm, err = ReadBmap(p); err != nil {
				return res, fmt.Errorf("%w: %v", ErrBmap, err)
			}
			res.UsedBmap = p
		}
	}

	t, err := openTarget(target)
	if err != nil {
		return res, err
	}
	defer t.f.Close()
	res.BlockDevice = t.block
	if !t.block {
		if t.dev == img.dev && t.ino == img.ino {
			return res, fmt.Errorf("%w: target %s is the image itself", ErrRefused, target)
		}
		if bm != nil {
			var st unix.Stat_t
			if unix.Stat(bm.Path, &st) == nil && st.Dev == t.dev && st.Ino == t.ino {
				return res, fmt.Errorf("%w: target %s is the bmap file", ErrRefused, target)
			}
		}
	}

	j := &job{opts: opts, img: img, bm: bm, t: t, size: -1}
	err = j.run(ctx)
	res.BytesWritten = j.w.written.Load()
	res.ImageSize = j.size
	res.Mapped = j.size
	if bm != nil {
		res.Mapped = bm.MappedSize
	}
	res.Decoder = j.decoder
	res.SHA256 = j.imageSum
	res.Verified = j.verified
	res.Duration = time.Since(start)
	j.progressDone(err)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return res, err
	}
	return res, nil
}

// job is one Write in progress.
type job struct {
	opts Options
	img  *image
	bm   *Bmap
	t    *target
	w    writer

	size     int64 // decoded image size, -1 while unknown
	decoder  string
	imageSum string
	verified bool

	// progress counters
	knownSize atomic.Int64 // size once known, for the progress goroutine
	inPos     atomic.Int64 // compressed bytes consumed
	outPos    atomic.Int64 // decoded bytes handled (written, skipped or discarded)
	prog      *progress

	rh     *rangeHasher     // checks bmap ranges of in-order sources
	teeSum chan sumResult   // sha256 of a non-regular image, from runStream
	ownMu  sync.Mutex       // guards own
	own    map[int64][]byte // computed sums of bmap ranges that carry none
	segs   segments         // decoded-stream hashes for Verify without a bmap
	post   []BmapRange      // bmap ranges to check by reading back (xz ranges across blocks)
}

func (j *job) run(ctx context.Context) error {
	t, bm := j.t, j.bm
	// What is known about the size before decoding.
	switch {
	case bm != nil:
		j.size = bm.ImageSize
	case j.img.format == "raw" && j.img.regular:
		j.size = j.img.size
	}
	var xzIdx *xzIndex
	if j.img.format == "xz" && j.img.regular {
		idx, err := readXZIndex(j.img.f, j.img.size)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrImage, j.img.path, err)
		}
		xzIdx = idx
		switch ok, err := idx.lzma2Only(j.img.f); {
		case err != nil:
			return fmt.Errorf("%w: %s: %v", ErrImage, j.img.path, err)
		case !ok && tool("xz") == "":
			return fmt.Errorf("%w: %s uses an xz filter (BCJ, delta) that needs the xz program; install xz-utils", ErrImage, j.img.path)
		case !ok:
			xzIdx = nil // the xz program decodes it as a stream
		}
		if bm != nil && idx.size != bm.ImageSize {
			return fmt.Errorf("%w: the image decodes to %d bytes but bmap %s is for an image of %d bytes", ErrBmap, idx.size, bm.Path, bm.ImageSize)
		}
		j.size = idx.size
	}
	if j.img.format == "raw" && j.img.regular && bm != nil && j.img.size != bm.ImageSize {
		return fmt.Errorf("%w: the image is %d bytes but bmap %s is for an image of %d bytes", ErrBmap, j.img.size, bm.Path, bm.ImageSize)
	}

	// Prepare the target.
	j.w = writer{t: t, bm: bm, kick: make(chan struct{}, 1)}
	if t.block {
		if j.size > t.devSize {
			return fmt.Errorf("%w: the image is %d bytes, block device %s holds only %d", ErrTargetFull, j.size, t.path, t.devSize)
		}
		j.w.zeroout = bm == nil
	} else {
		// Empty the file, so whatever is not written reads as zeros.
		if err := t.f.Truncate(0); err != nil {
			return fmt.Errorf("%w: cannot empty %s: %v", ErrTarget, t.path, err)
		}
		if j.size >= 0 {
			if err := t.f.Truncate(j.size); err != nil {
				return mapWriteErr(t, j.size, err)
			}
		}
		j.w.skipZeros = true
		if bm != nil {
			var sfs unix.Statfs_t
			if unix.Fstatfs(t.fd, &sfs) == nil {
				if free := int64(sfs.Bavail) * sfs.Bsize; free < bm.MappedSize {
					return fmt.Errorf("%w: the image maps %d bytes, the file system of %s has %d free", ErrTargetFull, bm.MappedSize, t.path, free)
				}
			}
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Writeback starts while we are still writing, so the final fsync has
	// little left to do.
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		j.w.flusher(ctx)
	}()
	defer bg.Wait()
	defer cancel()

	// The image checksum, from its own reader.
	var sumCh chan sumResult
	if j.opts.SHA256 != "" {
		if !j.img.regular {
			j.teeSum = make(chan sumResult, 1)
		}
		sumCh = make(chan sumResult, 1)
		go func() { sumCh <- j.hashImage(ctx) }()
	}
	j.knownSize.Store(j.size)
	j.startProgress()

	var err error
	switch {
	case j.img.format == "raw" && j.img.regular:
		j.decoder = "raw"
		err = j.runRaw(ctx)
	case xzIdx != nil:
		err = j.runXZ(ctx, xzIdx)
	case j.img.format == "zstd" && tool("zstd") != "":
		// The zstd program with sparse output: measured about twice as
		// fast as klauspost/compress here, which fills zero blocks byte by
		// byte and hands us every zero.
		j.decoder = "zstd -dc --sparse (memfd)"
		err = j.runSparseProc(ctx, tool("zstd"), "-dc", "-q", "--sparse", "--long=31")
	case j.img.format == "xz" && tool("xz") != "":
		j.decoder = "xz -dc -T0 (memfd, stream)"
		err = j.runSparseProc(ctx, tool("xz"), "-dc", "-q", "-T0")
	default:
		err = j.runStream(ctx)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		if sumCh != nil {
			<-sumCh
		}
		return err
	}
	if !t.block && j.size >= 0 {
		if fi, e := t.f.Stat(); e == nil && fi.Size() != j.size {
			if e := t.f.Truncate(j.size); e != nil {
				return mapWriteErr(t, j.size, e)
			}
		}
	}
	// bmap ranges that no single decoder saw whole.
	if len(j.post) > 0 {
		if err := j.checkRanges(ctx, j.post, false); err != nil {
			return err
		}
	}
	if sumCh != nil {
		r := <-sumCh
		if r.err != nil {
			return r.err
		}
		j.imageSum = r.sum
		if r.sum != j.opts.SHA256 {
			return fmt.Errorf("%w: image %s has sha256 %s, expected %s", ErrChecksum, j.img.path, r.sum, j.opts.SHA256)
		}
	}
	if err := j.sync(); err != nil {
		return err
	}
	if j.opts.Verify {
		if err := j.verify(ctx); err != nil {
			return err
		}
		j.verified = true
	}
	return nil
}

// sync makes the target durable and checks it is still where we wrote it.
func (j *job) sync() error {
	t := j.t
	if err := unix.Fsync(t.fd); err != nil {
		return mapWriteErr(t, -1, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(t.path, &st); err != nil || st.Dev != t.dev || st.Ino != t.ino {
		return fmt.Errorf("%w: target %s disappeared or was replaced while it was written", ErrTarget, t.path)
	}
	if t.created {
		if d, err := os.Open(filepath.Dir(t.path)); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}
