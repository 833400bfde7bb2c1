package shell

import (
	"io"
	"strings"
	"testing"
)

// newMarkerFilter returns a markerFilter to w and its Close.
func newMarkerFilter(begin, end string, w io.Writer) (io.Writer, func()) {
	f := &markerFilter{begin: begin, end: end, w: w}
	return f, f.Close
}

// The filter between the console and a results parser passes exactly the
// command's output, however the console cuts it, and a last partial line
// when the board dies.
func TestMarkerFilter(t *testing.T) {
	stream := "$ echo \"JSPL\"\"AN-1-B\"; command eval ...\r\nJSPLAN-1-B\r\nok 1 a\r\n" + strings.Repeat("x", 70000) +
		"\r\nnot ok 2 bJSPLAN-1-E:0\r\n$ ok 3 after\r\n"
	want := "ok 1 a\n" + strings.Repeat("x", 70000) + "\nnot ok 2 b\n"
	for _, size := range []int{1, 5, 4096, len(stream)} {
		var got strings.Builder
		w, closeFn := newMarkerFilter("JSPLAN-1-B", "JSPLAN-1-E:", &got)
		for s := stream; len(s) > 0; {
			n := min(size, len(s))
			_, _ = w.Write([]byte(s[:n]))
			s = s[n:]
		}
		closeFn()
		if got.String() != want {
			t.Fatalf("chunks of %d: got %d bytes %.60q...", size, got.Len(), got.String())
		}
	}
	var got strings.Builder
	w, closeFn := newMarkerFilter("JSPLAN-1-B", "JSPLAN-1-E:", &got)
	_, _ = w.Write([]byte("JSPLAN-1-B\nok 1 a\nok 2 cut mid-li"))
	closeFn()
	if got.String() != "ok 1 a\nok 2 cut mid-li" {
		t.Fatalf("partial: %q", got.String())
	}
}
