// Package yamlerr is the one place that reads gopkg.in/yaml.v3's error
// messages. yaml.v3 reports syntax and type errors as text ("yaml: line 5:
// did not find expected key", "line 3: cannot unmarshal !!str `x` into
// int"); this package turns them into an *Error with a position, so that the
// rest of jsplan branches on values, never on text.
//
// The table of messages and the off-by-one corrections are those of the
// pinned yaml.v3 (v3.0.1); yamlerr_test.go feeds it real bad YAML and fails
// when an upgrade changes them.
package yamlerr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a YAML problem at a position. Line and Column are 1-based; zero
// means unknown (Column is 1 when only the line is known).
type Error struct {
	Line, Column int
	// Msg says what is wrong, without position or "yaml: " prefix.
	Msg string
	// Tab is set when the problem is a tab in indentation (YAML indents
	// with spaces); Line and Column then point at the tab.
	Tab bool
}

// Error formats the error as yaml.v3 would ("line N: msg").
func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return "line " + strconv.Itoa(e.Line) + ": " + e.Msg
}

// At returns an *Error positioned at n, for an UnmarshalYAML method that
// rejects a value: the caller then points at that value. yaml.v3 passes an
// UnmarshalYAML error through Node.Decode unchanged.
func At(n *yaml.Node, format string, args ...any) error {
	return &Error{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

// Syntax converts an error from yaml.Unmarshal or (*yaml.Decoder).Decode of
// src into an *Error. A tab in indentation is located in src.
func Syntax(src []byte, err error) *Error {
	if e := (*Error)(nil); errors.As(err, &e) {
		return e
	}
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line, rest, ok := splitLine(msg)
	if !ok {
		return &Error{Msg: msg}
	}
	if parserErrors[rest] {
		// yaml.v3 gives a parser error the 0-based line of the
		// construct it was parsing (scanner errors are 1-based).
		line++
	}
	e := &Error{Line: line, Column: 1, Msg: rest}
	switch {
	case strings.Contains(rest, "tab character"):
		// yaml.v3 names the line of the construct the tab breaks
		// (often the one before): point at the tab itself.
		e.Line, e.Column = firstIndentTab(src, line)
		e.Tab = true
	case rest == "found character that cannot start any token" && hasIndentTab(src, line):
		if l, c := firstIndentTab(src, line); l == line {
			e.Column, e.Tab = c, true
			e.Msg += " (a tab: YAML indents with spaces)"
		}
	}
	return e
}

// Decode converts an error from (*yaml.Node).Decode into an *Error: the
// first of a *yaml.TypeError's messages in plain words ("expected int, got
// the string ..."), an *Error from At as it is, anything else with no
// position.
func Decode(err error) *Error {
	if e := (*Error)(nil); errors.As(err, &e) {
		return e
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return &Error{Msg: err.Error()}
	}
	e := &Error{Msg: te.Errors[0]}
	if line, rest, ok := splitLine(e.Msg); ok {
		e.Line, e.Column, e.Msg = line, 1, rest
	}
	e.Msg = strings.Replace(e.Msg, "cannot unmarshal !!str", "expected another type, got the string", 1)
	e.Msg = strings.Replace(e.Msg, "cannot unmarshal !!map into", "expected", 1)
	e.Msg = strings.Replace(e.Msg, "cannot unmarshal !!seq into", "expected", 1)
	return e
}

// splitLine splits "line N: rest".
func splitLine(msg string) (int, string, bool) {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, "", false
	}
	num, rest, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, "", false
	}
	return n, rest, true
}

// parserErrors are the messages of yaml.v3's parser (as opposed to its
// scanner), whose line numbers are one too low.
var parserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found undefined tag handle":             true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// firstIndentTab is the position of the first tab in the indentation of a
// line at or after line (1-based), or line itself (column 1) when there is
// none.
func firstIndentTab(src []byte, line int) (int, int) {
	lines := strings.Split(string(src), "\n")
	for i := line - 1; i >= 0 && i < len(lines); i++ {
		if j := strings.IndexByte(indent(lines[i]), '\t'); j >= 0 {
			return i + 1, j + 1
		}
	}
	return line, 1
}

// hasIndentTab tells whether line (1-based) has a tab in its indentation.
func hasIndentTab(src []byte, line int) bool {
	lines := strings.Split(string(src), "\n")
	if line < 1 || line > len(lines) {
		return false
	}
	return strings.Contains(indent(lines[line-1]), "\t")
}

func indent(l string) string { return l[:len(l)-len(strings.TrimLeft(l, " \t-"))] }
