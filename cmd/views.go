package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/internal/lock"
)

// humanView prints one line when a step starts and one when it ends, in a
// form that reads well in a Tekton or CI log.
type humanView struct {
	w     io.Writer
	start time.Time
	// console shows what the board prints, as it prints it (apply
	// --console, the default on a terminal).
	console bool
	// colour marks the outcomes in colour (on a terminal, see useColour).
	colour bool
}

// statusColour is the ANSI colour of each outcome's word.
var statusColour = map[result.Status]string{
	result.Passed: "32", result.Failed: "31;1", result.Error: "31;1",
	result.Skipped: "33", result.Interrupted: "33;1",
}

// useColour tells whether to colour what goes to w: on a terminal unless
// NO_COLOR is set (no-color.org), or anywhere with CLICOLOR_FORCE=1.
func useColour(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	return os.Getenv("CLICOLOR_FORCE") == "1" || isTerminal(w)
}

// paint colours word for status when the view is in colour.
func (v *humanView) paint(status result.Status, word string) string {
	if !v.colour || statusColour[status] == "" {
		return word
	}
	return "\x1b[" + statusColour[status] + "m" + word + "\x1b[0m"
}

var statusWord = map[result.Status]string{
	result.Passed: "PASS", result.Failed: "FAIL", result.Error: "ERROR",
	result.Skipped: "SKIP", result.Interrupted: "STOP",
}

func (v *humanView) Event(e engine.Event) {
	// What a board, a command or a plan printed reaches the terminal as
	// text: control characters (escape sequences) are shown escaped.
	// A console line loses its escape sequences first (see printable), so
	// they are left out rather than shown escaped.
	if e.Type == "console" {
		e.Message = printable(e.Message)
	}
	e.Message, e.Step = termText(e.Message), termText(e.Step)
	on := ""
	if e.Board != "" {
		// a run on several boards: which one (multi-board plans only)
		on = "[" + termText(e.Board) + "] "
	}
	switch e.Type {
	case "run-start":
		v.start = e.Time
		fmt.Fprintf(v.w, "jsplan: %s\n", e.Message)
	case "step-start":
		fmt.Fprintf(v.w, "RUN   %-6s %s%s\n", e.Index, on, e.Step)
	case "step-end":
		line := fmt.Sprintf("%s %-6s %s%s (%.1fs)", v.paint(e.Status, fmt.Sprintf("%-5s", statusWord[e.Status])), e.Index, on, e.Step, e.Seconds)
		if e.Attempt > 1 {
			line += fmt.Sprintf(" after %d attempts", e.Attempt)
		}
		if e.Message != "" {
			line += ": " + indentRest(e.Message)
		}
		fmt.Fprintln(v.w, line)
	case "log":
		fmt.Fprintf(v.w, "      %-6s %s%s\n", e.Index, on, indentRest(e.Message))
	case "console":
		if v.console {
			fmt.Fprintf(v.w, "             %s| %s\n", on, e.Message)
		}
	case "run-end":
		r := e.Result
		if r == nil {
			return
		}
		fmt.Fprintln(v.w, strings.Repeat("-", 60))
		fmt.Fprintf(v.w, "%s\n", v.paint(r.Status, termText(strings.ToUpper(r.Summary[:1])+r.Summary[1:])))
	}
}

// ansiSeq matches terminal escape sequences (colours, cursor moves, queries).
var ansiSeq = regexp.MustCompile(`\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])`)

// printable is a console line as it can be shown among jsplan's own lines:
// without escape sequences and control characters (a board's line must not
// move the cursor or change the terminal).
func printable(s string) string {
	s = ansiSeq.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return r
		}
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
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
