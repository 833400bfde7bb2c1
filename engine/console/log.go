package console

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/jsplan/jsplan/engine/redact"
)

// Header starts the first line of a console log; logs of this format tell
// jsplan's own notes from the board's lines by construction.
const Header = "# jsplan console log v2: "

// Log writes console bytes to w one line at a time, each line prefixed
// with the time since start (`[  12.345] `). jsplan's own notes (Note)
// have no space after the time (`[  12.345]### step 2: x`), so nothing a
// board prints can pass for one: a board's line always has that space. The byte stream is masked
// before it is cut into lines, so a secret is masked whole even when it
// spans lines (a key) or arrives in pieces: a tail that may be the start of
// a secret is held back until the next bytes tell (see redact.Stream). A
// partial line (a prompt) is written after a short idle period; a line
// without a newline is cut at 4096 bytes.
type Log struct {
	mu      sync.Mutex
	w       io.Writer
	start   time.Time
	red     *redact.Redactor
	stream  *redact.Stream
	line    bytes.Buffer
	timer   *time.Timer
	closed  bool
	quiet   int   // Suppress calls not yet resumed
	dropped int64 // bytes left out while quiet
}

// maxLine is where a line without a newline is cut.
const maxLine = 4096

// idleFlush is how long a partial line waits before it is written.
const idleFlush = 300 * time.Millisecond

// NewLog returns a console log writer masking red's secrets (nil: none).
func NewLog(w io.Writer, start time.Time, red *redact.Redactor) *Log {
	if red == nil {
		red = &redact.Redactor{}
	}
	return &Log{w: w, start: start, red: red, stream: red.Stream()}
}

// Write implements io.Writer; it never fails so the console reader never
// stops because of the log.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if l.closed {
		return n, nil
	}
	if l.quiet > 0 {
		l.dropped += int64(n)
		return n, nil
	}
	if bytes.IndexByte(p, '\r') >= 0 { // drop the CRs of CRLF line ends
		p = bytes.ReplaceAll(p, []byte{'\r'}, nil)
	}
	l.addLocked(l.stream.Write(string(p)))
	if l.line.Len() > 0 {
		if l.timer == nil {
			l.timer = time.AfterFunc(idleFlush, l.idle)
		} else {
			l.timer.Reset(idleFlush)
		}
	}
	return n, nil
}

// addLocked adds masked text to the current line, writing complete lines.
func (l *Log) addLocked(text string) {
	for len(text) > 0 {
		i := indexNL(text)
		seg := text
		if i >= 0 {
			seg = text[:i]
		}
		l.line.WriteString(seg)
		for l.line.Len() >= maxLine {
			l.cutLocked()
		}
		if i < 0 {
			return
		}
		l.flushLocked()
		text = text[i+1:]
	}
}

func indexNL(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return i
		}
	}
	return -1
}

// cutLocked writes the first maxLine bytes of an overlong line.
func (l *Log) cutLocked() {
	rest := append([]byte(nil), l.line.Bytes()[maxLine:]...)
	l.line.Truncate(maxLine)
	l.flushLocked()
	l.line.Write(rest)
}

func (l *Log) idle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line.Len() > 0 && !l.closed {
		l.flushLocked()
	}
}

// Note writes a line of jsplan's own (a step boundary) into the log, on
// one line: control characters (a newline in a quoted error) are escaped.
func (l *Log) Note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noteLocked(fmt.Sprintf(format, args...))
}

func (l *Log) noteLocked(msg string) {
	if l.closed {
		return
	}
	if l.line.Len() > 0 {
		l.flushLocked()
	}
	fmt.Fprintf(l.w, "[%9.3f]%s%s\n", time.Since(l.start).Seconds(), NotePrefix, OneLine(l.red.String(msg)))
}

// NotePrefix follows the time on a note's line, with no space between.
const NotePrefix = "### "

// OneLine escapes the control characters of s (tabs stay), so that s
// prints as one line and moves no terminal cursor.
func OneLine(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 && c != '\t' || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Suppress leaves the console's bytes out of the log until resume is
// called, e.g. while a file is transferred over the console in an encoding
// masking cannot see through. resume writes a note with summary and the
// number of bytes left out.
func (l *Log) Suppress() (resume func(summary string)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line.Len() > 0 && !l.closed {
		l.flushLocked()
	}
	l.quiet++
	var once sync.Once
	return func(summary string) {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.quiet--
			if l.quiet == 0 {
				l.noteLocked(fmt.Sprintf("%s (%d console bytes not logged)", summary, l.dropped))
				l.dropped = 0
			}
		})
	}
}

// flushLocked writes the current line; its text is already masked.
func (l *Log) flushLocked() {
	fmt.Fprintf(l.w, "[%9.3f] %s\n", time.Since(l.start).Seconds(), l.line.String())
	l.line.Reset()
}

// Close writes what is left.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	l.addLocked(l.stream.Flush())
	if l.line.Len() > 0 {
		l.flushLocked()
	}
	l.closed = true
	return nil
}
