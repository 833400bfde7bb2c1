package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// image is the opened image file.
type image struct {
	path    string
	f       *os.File
	regular bool  // a regular file (seekable, size known)
	size    int64 // file size of a regular file
	format  string
	dev     uint64
	ino     uint64
	head    []byte // bytes already read from a non-regular image
	// peeked: a pipe whose format was told from its first bytes without
	// reading them (tee), so that a decoder program can read the pipe
	// itself
	peeked bool
}

// detectFormat names the compression of data starting with head.
func detectFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	case len(head) >= 4 && binary.LittleEndian.Uint32(head)&^0xf == 0x184d2a50:
		return "zstd" // starts with a skippable frame
	case len(head) >= 4 && bytes.HasPrefix(head, []byte("BZh")) && head[3] >= '1' && head[3] <= '9':
		return "bzip2"
	}
	return "raw"
}

func openImage(path string) (*image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	img := &image{path: path, f: f}
	// Stat, not Fd: Fd would put a pipe into blocking mode, and then
	// closing it could not interrupt a read on cancellation.
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	img.dev, img.ino = uint64(st.Dev), st.Ino
	switch {
	case fi.IsDir():
		f.Close()
		return nil, fmt.Errorf("%w: %s is a directory", ErrImage, path)
	case fi.Mode().IsRegular():
		img.regular, img.size = true, fi.Size()
		head := make([]byte, 8)
		n, err := f.ReadAt(head, 0)
		if err != nil && err != io.EOF {
			f.Close()
			return nil, fmt.Errorf("%w: %v", ErrImage, err)
		}
		img.format = detectFormat(head[:n])
	default:
		head := make([]byte, 8)
		if peekPipe(f, head) {
			img.peeked = true
			img.format = detectFormat(head)
			break
		}
		// A device, or a pipe that has fewer bytes so far: read the magic
		// and keep it.
		n, err := io.ReadFull(f, head)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			f.Close()
			return nil, fmt.Errorf("%w: %v", ErrImage, err)
		}
		img.head = head[:n]
		img.format = detectFormat(img.head)
	}
	return img, nil
}

type sumResult struct {
	sum string
	err error
}

// hashImage computes the sha256 of the image file. A regular file is read
// through its own descriptor (holes are hashed without reading them);
// a stream is hashed by the decoding reader (see streamReader).
func (j *job) hashImage(ctx context.Context) sumResult {
	if !j.img.regular {
		return <-j.streamSum()
	}
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", j.img.f.Fd()))
	if err != nil {
		return sumResult{err: fmt.Errorf("%w: %v", ErrImage, err)}
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	fd := int(f.Fd())
	size := j.img.size
	var pos int64
	for pos < size {
		if ctx.Err() != nil {
			return sumResult{err: ctx.Err()}
		}
		data, hole := nextExtent(fd, pos, size)
		for ; pos < data; pos += int64(min(data-pos, int64(len(zeroChunk)))) {
			h.Write(zeroChunk[:min(data-pos, int64(len(zeroChunk)))])
		}
		for pos < hole {
			if ctx.Err() != nil {
				return sumResult{err: ctx.Err()}
			}
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			h.Write(buf[:n])
			pos += int64(n)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return sumResult{err: fmt.Errorf("%w: %s shrank while it was read", ErrImage, j.img.path)}
				}
				return sumResult{err: fmt.Errorf("%w: %v", ErrImage, err)}
			}
		}
	}
	return sumResult{sum: hex.EncodeToString(h.Sum(nil))}
}

// nextExtent returns where the next data at or after pos starts and where
// it ends (the next hole), as far as the file system tells; without
// SEEK_DATA support everything is data.
func nextExtent(fd int, pos, size int64) (data, hole int64) {
	d, err := unix.Seek(fd, pos, unix.SEEK_DATA)
	if err != nil {
		if errors.Is(err, unix.ENXIO) {
			return size, size // only a hole remains
		}
		return pos, size
	}
	h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
	if err != nil || h > size {
		h = size
	}
	return min(d, size), h
}

// PrefersFile reports whether an image whose first bytes are head (8 or
// more, fewer only for a shorter image) is written faster from a regular
// file than decoded from a stream as it arrives. True for xz: from a file
// its blocks are located through the index at its end and decoded in
// parallel, and bmap-unmapped blocks are skipped; from a stream it goes
// through the xz program front to back. The other formats are decoded
// front to back either way (a raw image from a stream has its zero runs
// skipped instead of its holes), so a receiver can decode them while they
// arrive.
func PrefersFile(head []byte) bool { return detectFormat(head) == "xz" }

// peekPipe fills p from the start of the pipe f without consuming what it
// reads: tee(2) duplicates it into a pipe of our own. It waits for the
// pipe's first bytes and returns false when f is no pipe, or ends or holds
// fewer than len(p) bytes when they come.
func peekPipe(f *os.File, p []byte) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	r, w, err := os.Pipe()
	if err != nil {
		return false
	}
	defer r.Close()
	defer w.Close()
	wfd := int(w.Fd())
	var n int64
	var terr error
	err = rc.Read(func(fd uintptr) bool {
		n, terr = unix.Tee(int(fd), wfd, len(p), unix.SPLICE_F_NONBLOCK)
		return terr != unix.EAGAIN
	})
	if err != nil || terr != nil || n != int64(len(p)) {
		return false
	}
	_, err = io.ReadFull(r, p)
	return err == nil
}
