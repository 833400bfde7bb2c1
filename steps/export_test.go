package steps

import "io"

// Internals the external tests (package steps_test) exercise.
var (
	ExpandKeys  = expandKeys
	PrintfQuote = printfQuote
	ShellQuote  = shellQuote
	BoardGlob   = boardGlob
)

// DestName is where collect writes a source file, inside to.
func DestName(to, src string) (string, error) { return (&collectAction{To: to}).destName(src) }

// MarkerFilter exposes markerFilter: it passes what w should receive of a
// command's output framed by the begin and end markers.
func MarkerFilter(begin, end string, w io.Writer) (io.Writer, func()) {
	f := &markerFilter{begin: begin, end: end, w: w}
	return f, f.Close
}
