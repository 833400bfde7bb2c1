package diag

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Sources maps a file name to its contents, for snippets.
type Sources map[string][]byte

// WriteText prints diagnostics like a compiler:
//
//	plans/boot.yaml:12:7: error: unknown key "timout" (at steps[1])
//	   12 |     timout: 30s
//	      |     ^~~~~~
//	  did you mean "timeout"?
//
// Nothing depends on color, so CI logs keep the caret.
func WriteText(w io.Writer, ds Diagnostics, src Sources) {
	for _, d := range ds {
		loc := d.Subject.String()
		if loc != "" {
			loc += ": "
		}
		fmt.Fprintf(w, "%s%s: %s", loc, d.Severity, d.Summary)
		if d.Path != "" {
			fmt.Fprintf(w, " (at %s)", d.Path)
		}
		fmt.Fprintln(w)
		if line, ok := sourceLine(src, d.Subject); ok {
			n := fmt.Sprintf("%d", d.Subject.Start.Line)
			pad := strings.Repeat(" ", len(n))
			fmt.Fprintf(w, " %s | %s\n", n, expandTabs(line))
			fmt.Fprintf(w, " %s | %s\n", pad, caret(line, d.Subject))
		}
		if d.Detail != "" {
			for _, l := range strings.Split(d.Detail, "\n") {
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
	}
}

// Summary returns a line such as "2 errors, 1 warning".
func Summary(ds Diagnostics) string {
	var e, wn int
	for _, d := range ds {
		if d.Severity.IsError() {
			e++
		} else {
			wn++
		}
	}
	s := plural(e, "error")
	if wn > 0 {
		s += ", " + plural(wn, "warning")
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func sourceLine(src Sources, r Range) (string, bool) {
	b, ok := src[r.Filename]
	if !ok || r.Start.Line < 1 {
		return "", false
	}
	line := 1
	start := 0
	for i := 0; i < len(b) && line < r.Start.Line; i++ {
		if b[i] == '\n' {
			line++
			start = i + 1
		}
	}
	if line != r.Start.Line {
		return "", false
	}
	end := start
	for end < len(b) && b[end] != '\n' {
		end++
	}
	return strings.TrimRight(string(b[start:end]), "\r"), true
}

func expandTabs(s string) string { return strings.ReplaceAll(s, "\t", " ") }

// caret draws ^~~~ under the subject; columns count characters, as
// yaml.v3 reports them.
func caret(line string, r Range) string {
	col := r.Start.Column
	if col < 1 {
		col = 1
	}
	width := 1
	if r.End.Line == r.Start.Line && r.End.Column > col {
		width = r.End.Column - col
	}
	n := utf8.RuneCountInString(line)
	if col-1+width > n && n >= col {
		width = n - col + 1
	}
	if width < 1 {
		width = 1
	}
	return strings.Repeat(" ", col-1) + "^" + strings.Repeat("~", width-1)
}

// jsonDiag is the wire form of a diagnostic for --output json.
type jsonDiag struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Column   int      `json:"column"`
	Severity Severity `json:"severity"`
	Class    Class    `json:"class"`
	Message  string   `json:"message"`
	Path     string   `json:"path,omitempty"`
	Detail   string   `json:"detail,omitempty"`
	Range    Range    `json:"range"`
}

// JSON returns the diagnostics in their machine form.
func (ds Diagnostics) JSON() []any {
	out := make([]any, 0, len(ds))
	for _, d := range ds {
		out = append(out, jsonDiag{
			File: d.Subject.Filename, Line: d.Subject.Start.Line, Column: d.Subject.Start.Column,
			Severity: d.Severity, Class: d.Class, Message: d.Summary, Path: d.Path, Detail: d.Detail,
			Range: d.Subject,
		})
	}
	return out
}

// MarshalJSON encodes the list in its machine form.
func (ds Diagnostics) MarshalJSON() ([]byte, error) { return json.Marshal(ds.JSON()) }
