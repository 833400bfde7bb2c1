package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/lock"
)

// humanView prints one line when a step starts and one when it ends, in a
// form that reads well in a Tekton or CI log.
type humanView struct {
	w     io.Writer
	start time.Time
}

var statusWord = map[string]string{
	engine.StatusPassed: "PASS", engine.StatusFailed: "FAIL", engine.StatusError: "ERROR",
	engine.StatusSkipped: "SKIP", engine.StatusInterrupted: "STOP",
}

func (v *humanView) Event(e engine.Event) {
	// What a board, a command or a plan printed reaches the terminal as
	// text: control characters (escape sequences) are shown escaped.
	e.Message, e.Step = termText(e.Message), termText(e.Step)
	switch e.Type {
	case "run-start":
		v.start = e.Time
		fmt.Fprintf(v.w, "jsplan: %s\n", e.Message)
	case "step-start":
		fmt.Fprintf(v.w, "RUN   %-6s %s\n", e.Index, e.Step)
	case "step-end":
		line := fmt.Sprintf("%-5s %-6s %s (%.1fs)", statusWord[e.Status], e.Index, e.Step, e.Seconds)
		if e.Attempt > 1 {
			line += fmt.Sprintf(" after %d attempts", e.Attempt)
		}
		if e.Message != "" {
			line += ": " + indentRest(e.Message)
		}
		fmt.Fprintln(v.w, line)
	case "log":
		fmt.Fprintf(v.w, "      %-6s %s\n", e.Index, indentRest(e.Message))
	case "run-end":
		r := e.Result
		if r == nil {
			return
		}
		fmt.Fprintln(v.w, strings.Repeat("-", 60))
		fmt.Fprintf(v.w, "%s\n", termText(strings.ToUpper(r.Summary[:1])+r.Summary[1:]))
	}
}

// termText escapes the control characters of s but newlines and tabs.
func termText(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r != '\n' && r != '\t' && (unicode.IsControl(r) || r == utf8.RuneError) }) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		parts := strings.Split(l, "\t")
		for j, p := range parts {
			parts[j] = lock.Printable(p)
		}
		lines[i] = strings.Join(parts, "\t")
	}
	return strings.Join(lines, "\n")
}

func indentRest(s string) string { return strings.ReplaceAll(s, "\n", "\n             ") }

// jsonView writes one JSON object per event (JSON lines).
type jsonView struct{ enc *json.Encoder }

func newJSONView(w io.Writer) *jsonView { return &jsonView{enc: json.NewEncoder(w)} }

func (v *jsonView) Event(e engine.Event) { _ = v.enc.Encode(e) }
