package console

// The console log's file format, written by Log (lines and notes), TailCap
// (the cap's marker) and WriteHeader, read by Reader:
//
//	# jsplan console log v2: WHAT, started RFC3339NANO
//	[%9.3f] a line the board printed
//	[%9.3f]### a note of jsplan's own
//	[%9.3f]### step IDX: NAME
//	[   ...   ]### console.log is capped at ...
//
// Times are seconds since the log's start. A board's line always has the
// space after the time, so it cannot pass for a note. In logs of older
// versions (no "v2" in the header) a note was "[%9.3f] ### text", told by
// its text.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jsplan/jsplan/engine/redact"
)

// legacyHeader starts the first line of a log written before v2.
const legacyHeader = "# jsplan console log: "

// WriteHeader writes a console log's first line: what the log is of (a
// plan on a board, a console session) and when it started.
func WriteHeader(w io.Writer, what string, start time.Time) error {
	_, err := fmt.Fprintf(w, "%s%s, started %s\n", Header, what, start.Format(time.RFC3339Nano))
	return err
}

// LogHeader is what a console log's first line says.
type LogHeader struct {
	// What the log is of ("plan P, board B").
	What string
	// Start is the wall-clock time of the log's zero; zero when the header
	// does not say.
	Start time.Time
	// Legacy is set for a log written before v2, whose notes are told by
	// their text.
	Legacy bool
}

// ParseHeader parses a log's first line; ok is false when it is no header.
func ParseHeader(line string) (h LogHeader, ok bool) {
	rest, v2 := strings.CutPrefix(line, Header)
	if !v2 {
		if rest, ok = strings.CutPrefix(line, legacyHeader); !ok {
			return LogHeader{Legacy: true}, false
		}
	}
	h.Legacy = !v2
	h.What = strings.TrimRight(rest, " \r\n")
	if i := strings.LastIndex(h.What, "started "); i >= 0 {
		if t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(h.What[i+len("started "):])); err == nil {
			h.Start = t
			h.What = strings.TrimSuffix(strings.TrimSpace(h.What[:i]), ",")
		}
	}
	return h, true
}

// stepNote is the text of the note that starts a step (Log.Step).
const stepNote = "step "

// Step writes the note that starts step idx: a reader assigns the lines
// that follow to it (StepOf).
func (l *Log) Step(idx, name string) { l.Note("%s%s: %s", stepNote, idx, name) }

// Line is one line of a console log.
type Line struct {
	// N is the line's number (the header is line 1).
	N int
	// Off is the line's byte offset in the file; Size its length with
	// its newline.
	Off, Size int64
	// T is when the line was logged, in seconds since the log's start
	// (the previous line's for the cap's marker and foreign lines).
	T float64
	// Text is the board's text, or a note's with its "### ".
	Text string
	// Note is set for jsplan's own notes.
	Note bool
	// Header is set for the header line.
	Header bool
}

// StepOf returns the index of the step a note line starts.
func StepOf(l Line) (idx string, ok bool) {
	if !l.Note {
		return "", false
	}
	rest, ok := strings.CutPrefix(l.Text, NotePrefix+stepNote)
	if !ok {
		return "", false
	}
	idx, _, ok = strings.Cut(rest, ": ")
	if !ok || idx == "" || strings.ContainsAny(idx, " \t") {
		return "", false
	}
	return idx, true
}

// ParseLine splits a log line (without its newline), `[%9.3f] text` or
// `[%9.3f]### note`, into its time and text; hasT is false for the cap's
// marker and for lines of no known form (their Text is the line). legacy
// reads a log written before v2. By hand: a regexp costs more than the rest
// of a report page for long logs.
func ParseLine(raw string, legacy bool) (t float64, hasT bool, text string, note bool) {
	end := strings.IndexByte(raw, ']')
	if len(raw) < 3 || raw[0] != '[' || end < 0 {
		return 0, false, raw, false
	}
	stamp := strings.TrimSpace(raw[1:end])
	t, err := strconv.ParseFloat(stamp, 64)
	if err != nil && stamp != "..." { // "..." is the cap's marker note
		return 0, false, raw, false
	}
	hasT = err == nil
	rest := raw[end+1:]
	if legacy {
		text = strings.TrimPrefix(rest, " ")
		return t, hasT, text, strings.HasPrefix(text, NotePrefix)
	}
	if strings.HasPrefix(rest, NotePrefix) {
		return t, hasT, rest, true
	}
	return t, hasT, strings.TrimPrefix(rest, " "), false
}

// Reader reads a console log line by line, in one pass.
type Reader struct {
	br     *bufio.Reader
	n      int
	off    int64
	prevT  float64
	header LogHeader
	err    error
}

// NewReader returns a Reader of the log r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 256<<10), header: LogHeader{Legacy: true}}
}

// ContinueReader returns a Reader of a log with header h from line n+1 on,
// r starting at that line (a range of the file read again by its offset).
// Its lines' Off count from r's start.
func ContinueReader(r io.Reader, h LogHeader, n int) *Reader {
	cr := NewReader(r)
	cr.header, cr.n = h, n
	return cr
}

// Header is what the log's header says, once Next has returned line 1.
func (r *Reader) Header() LogHeader { return r.header }

// Next returns the next line, or io.EOF after the last. A line of any
// length is returned whole; a last line without a newline too.
func (r *Reader) Next() (Line, error) {
	if r.err != nil {
		return Line{}, r.err
	}
	raw, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull { // a line longer than the buffer: take it whole
		long := append([]byte(nil), raw...)
		for err == bufio.ErrBufferFull {
			raw, err = r.br.ReadSlice('\n')
			long = append(long, raw...)
		}
		raw = long
	}
	if err != nil {
		r.err = err
		if len(raw) == 0 {
			return Line{}, err
		}
	}
	r.n++
	l := Line{N: r.n, Off: r.off, Size: int64(len(raw)), T: r.prevT}
	r.off += l.Size
	text := string(bytes.TrimRight(raw, "\r\n"))
	if l.N == 1 {
		if h, ok := ParseHeader(text); ok {
			r.header = h
			l.Header, l.Text = true, text
			return l, nil
		}
	}
	t, hasT, body, note := ParseLine(text, r.header.Legacy)
	if hasT {
		l.T, r.prevT = t, t
	}
	l.Text, l.Note = body, note
	return l, nil
}

// NewFileLog starts a console log in f, a new file: its header (what the
// log is of, start), then a Log of the lines masking red's secrets, the file
// capped at max bytes past the header (TailCap; max <= 0: no cap). Closing
// the Log leaves f open.
func NewFileLog(f *os.File, what string, start time.Time, max int64, red *redact.Redactor) (*Log, error) {
	if err := WriteHeader(f, what, start); err != nil {
		return nil, err
	}
	capped, err := NewTailCap(f, max)
	if err != nil {
		return nil, err
	}
	return NewLog(capped, start, red), nil
}
