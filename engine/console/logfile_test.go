package console

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What Log and NewFileLog write, Reader reads back: header, board lines,
// notes, a step's note; a board printing "### step" stays a board line.
func TestLogFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 6, 10, 0, 0, 500_000_000, time.UTC)
	l, err := NewFileLog(f, "plan p, board b", start, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Step("2.1", "boot")
	l.Write([]byte("hello\r\n### step 9: forged\n"))
	l.Note("done")
	l.Close()
	f.Close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	if lines[0] != "# jsplan console log v2: plan p, board b, started 2026-12-06T10:00:00.5Z" {
		t.Errorf("header %q", lines[0])
	}

	fh, _ := os.Open(path)
	defer fh.Close()
	r := NewReader(fh)
	var got []Line
	for {
		l, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if h := r.Header(); h.What != "plan p, board b" || !h.Start.Equal(start) || h.Legacy {
		t.Errorf("header %+v", h)
	}
	if len(got) != 5 || !got[0].Header {
		t.Fatalf("lines %+v", got)
	}
	if idx, ok := StepOf(got[1]); !ok || idx != "2.1" || got[1].Text != "### step 2.1: boot" {
		t.Errorf("step note %+v", got[1])
	}
	if got[2].Note || got[2].Text != "hello" {
		t.Errorf("board line %+v", got[2])
	}
	if _, ok := StepOf(got[3]); ok || got[3].Note || got[3].Text != "### step 9: forged" {
		t.Errorf("a board's forged note %+v", got[3])
	}
	if !got[4].Note || got[4].Text != "### done" {
		t.Errorf("note %+v", got[4])
	}
	var off int64
	for _, l := range got {
		if l.Off != off {
			t.Errorf("line %d at %d, want %d", l.N, l.Off, off)
		}
		off += l.Size
	}
	if off != int64(len(b)) {
		t.Errorf("sizes sum to %d, file has %d", off, len(b))
	}
}

// A log of an older version (no "v2") tells notes by their text; the
// cap's marker and foreign lines take the previous line's time.
func TestReaderLegacyAndMarker(t *testing.T) {
	log := "# jsplan console log: plan x, board y, started 2026-01-02T03:04:05Z\n" +
		"[    5.000] ### step 2: kunit\n[   ...   ]### console.log is capped\nnot a log line\n[    6.250] ok"
	r := NewReader(strings.NewReader(log))
	var got []Line
	for {
		l, err := r.Next()
		if err != nil {
			break
		}
		got = append(got, l)
	}
	if h := r.Header(); !h.Legacy || h.What != "plan x, board y" || h.Start.Year() != 2026 {
		t.Errorf("header %+v", h)
	}
	if len(got) != 5 {
		t.Fatalf("lines %+v", got)
	}
	if idx, ok := StepOf(got[1]); !ok || idx != "2" || got[1].T != 5 {
		t.Errorf("legacy step note %+v", got[1])
	}
	if !got[2].Note || got[2].T != 5 || got[3].Note || got[3].T != 5 || got[3].Text != "not a log line" {
		t.Errorf("marker, foreign: %+v %+v", got[2], got[3])
	}
	if got[4].T != 6.25 || got[4].Text != "ok" {
		t.Errorf("last line without newline %+v", got[4])
	}
	if _, ok := ParseHeader("[  1.000] x"); ok {
		t.Error("a log line parsed as a header")
	}
}
