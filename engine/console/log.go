package console

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Log writes console bytes to w one line at a time, each line prefixed
// with the time since start (`[  12.345] `). Lines pass through redact
// before they are written, so secrets never reach the file. A partial line
// (a prompt) is written after a short idle period.
type Log struct {
	mu     sync.Mutex
	w      io.Writer
	start  time.Time
	redact func(string) string
	line   bytes.Buffer
	timer  *time.Timer
	closed bool
}

// maxLine is where a line without a newline is cut.
const maxLine = 4096

// idleFlush is how long a partial line waits before it is written.
const idleFlush = 300 * time.Millisecond

// NewLog returns a console log writer.
func NewLog(w io.Writer, start time.Time, redact func(string) string) *Log {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	return &Log{w: w, start: start, redact: redact}
}

// Write implements io.Writer; it never fails so the console reader never
// stops because of the log.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	n := len(p)
	for len(p) > 0 {
		seg, rest, nl := bytes.Cut(p, []byte{'\n'})
		for len(seg) > 0 { // drop the CRs of CRLF line ends
			i := bytes.IndexByte(seg, '\r')
			if i < 0 {
				l.line.Write(seg)
				break
			}
			l.line.Write(seg[:i])
			seg = seg[i+1:]
		}
		for l.line.Len() >= maxLine {
			l.cutLocked()
		}
		if nl {
			l.flushLocked(true)
		}
		p = rest
	}
	if l.line.Len() > 0 {
		if l.timer == nil {
			l.timer = time.AfterFunc(idleFlush, l.idle)
		} else {
			l.timer.Reset(idleFlush)
		}
	}
	return n, nil
}

// cutLocked writes the first maxLine bytes of an overlong line.
func (l *Log) cutLocked() {
	rest := append([]byte(nil), l.line.Bytes()[maxLine:]...)
	l.line.Truncate(maxLine)
	l.flushLocked(true)
	l.line.Write(rest)
}

func (l *Log) idle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line.Len() > 0 && !l.closed {
		l.flushLocked(true)
	}
}

// Note writes a line of jsplan's own (a step boundary) into the log.
func (l *Log) Note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.line.Len() > 0 {
		l.flushLocked(true)
	}
	fmt.Fprintf(l.w, "[%9.3f] ### %s\n", time.Since(l.start).Seconds(), l.redact(fmt.Sprintf(format, args...)))
}

func (l *Log) flushLocked(newline bool) {
	text := l.redact(l.line.String())
	l.line.Reset()
	fmt.Fprintf(l.w, "[%9.3f] %s\n", time.Since(l.start).Seconds(), text)
}

// Close writes what is left.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.line.Len() > 0 {
		l.flushLocked(true)
	}
	l.closed = true
	return nil
}
