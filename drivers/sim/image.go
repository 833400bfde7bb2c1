//go:build linux

package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
)

const (
	// imageMarker precedes the image id token in a disk image.
	imageMarker = "JSPLAN_IMAGE_ID="
	// imageScanLimit is how much of the disk is searched for the marker.
	imageScanLimit = 64 << 20
	// maxTokenLen bounds the image id token.
	maxTokenLen = 128
)

// imageID identifies the image on the disk file at path: the token after
// JSPLAN_IMAGE_ID= in its first 64 MiB (printable ASCII up to a space or
// control byte, at most 128 bytes), else "sha256:" and the first 12 hex
// digits of the file's SHA-256, or "none" when the file does not exist.
func imageID(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "none", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()

	tok, err := findToken(io.LimitReader(f, imageScanLimit))
	if err != nil || tok != "" {
		return tok, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// findToken returns the first non-empty token after imageMarker in r, or "".
func findToken(r io.Reader) (string, error) {
	const chunk = 1 << 20
	// A marker whose token may run past the end of the window starts in
	// its last keep bytes; those are carried into the next window.
	const keep = len(imageMarker) + maxTokenLen
	buf := make([]byte, 0, chunk+keep)
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		final := err != nil
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return "", err
		}
		for off := 0; ; {
			i := bytes.Index(buf[off:], []byte(imageMarker))
			if i < 0 {
				break
			}
			start := off + i + len(imageMarker)
			end := start
			for end < len(buf) && end-start < maxTokenLen && buf[end] > ' ' && buf[end] < 0x7f {
				end++
			}
			if end == len(buf) && end-start < maxTokenLen && !final {
				break // the token may go on in the next window
			}
			if end > start {
				return string(buf[start:end]), nil
			}
			off = start
		}
		if final {
			return "", nil
		}
		if len(buf) > keep {
			n := copy(buf, buf[len(buf)-keep:])
			buf = buf[:n]
		}
	}
}
