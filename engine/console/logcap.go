package console

import (
	"bytes"
	"fmt"
	"os"
)

// DefaultLogMax is the default size cap of console.log.
const DefaultLogMax = 64 << 20

// TailCap writes to a file and keeps it at most Max bytes: when a write
// would take it past Max, the middle is cut out. The file keeps what was
// written before the TailCap was made (the log's header), a marker line
// saying how much was cut, and the most recent text (about half of Max,
// from the start of a line). Its writes are not safe for concurrent use
// (console.Log serializes them).
type TailCap struct {
	f      *os.File
	max    int64
	head   int64 // the header's length: never cut
	size   int64
	marker int64 // length of the marker line after the header, 0 before a cut
	cut    int64 // bytes of log left out so far
}

// NewTailCap caps the file f, positioned at its end, at max bytes (no cap
// if max <= 0).
func NewTailCap(f *os.File, max int64) (*TailCap, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &TailCap{f: f, max: max, head: fi.Size(), size: fi.Size()}, nil
}

// Write implements io.Writer.
func (c *TailCap) Write(p []byte) (int, error) {
	n := len(p)
	if c.max > 0 && c.size+int64(len(p)) > c.max {
		if err := c.compact(int64(len(p))); err != nil {
			return 0, err
		}
		if room := c.max - c.size; int64(len(p)) > room {
			c.cut += int64(len(p)) - room
			p = p[int64(len(p))-room:]
		}
	}
	w, err := c.f.WriteAt(p, c.size)
	c.size += int64(w)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// compact cuts the file down to its header, a marker and its tail, leaving
// room for incoming bytes.
func (c *TailCap) compact(incoming int64) error {
	keep := c.max/2 - incoming
	body := c.size - c.head - c.marker
	if keep > body {
		keep = body
	}
	if keep < 0 {
		keep = 0
	}
	tail := make([]byte, keep)
	if _, err := c.f.ReadAt(tail, c.size-keep); err != nil {
		return err
	}
	if i := bytes.IndexByte(tail, '\n'); i >= 0 && i+1 < len(tail) {
		tail = tail[i+1:]
	} else {
		tail = nil
	}
	c.cut += body - int64(len(tail))
	marker := fmt.Sprintf("[   ...   ]### console.log is capped at %d bytes: %d bytes cut here, the most recent output follows\n", c.max, c.cut)
	buf := append([]byte(marker), tail...)
	if _, err := c.f.WriteAt(buf, c.head); err != nil {
		return err
	}
	c.marker = int64(len(marker))
	c.size = c.head + int64(len(buf))
	return c.f.Truncate(c.size)
}
