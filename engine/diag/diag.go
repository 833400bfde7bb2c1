// Package diag holds jsplan's diagnostics: errors and warnings that carry a
// source position, a document path and a class, printed like compiler
// messages (`file:line:col: message`) with the source line and a caret.
package diag

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Severity says whether a diagnostic stops the run. Its zero value is no
// severity: a Diagnostic built without one. It fails closed, counted as an
// error (IsError), and says that it was not set when printed.
type Severity int

// Severities.
const (
	Error Severity = iota + 1
	Warning
)

// IsError reports whether s stops the run: anything but a Warning, so that a
// diagnostic whose severity was not set (or is unknown) is not taken lightly.
func (s Severity) IsError() bool { return s != Warning }

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	case 0:
		return "error (severity not set)"
	}
	return fmt.Sprintf("error (unknown severity %d)", int(s))
}

// MarshalText implements encoding.TextMarshaler: "error" or "warning" (an
// unset or unknown severity is an error).
func (s Severity) MarshalText() ([]byte, error) {
	if s.IsError() {
		return []byte("error"), nil
	}
	return []byte("warning"), nil
}

// Class says who is at fault; it decides the exit status.
type Class int

// Classes, from the least to the most severe for exit-code purposes.
const (
	// Invalid is a mistake in a plan, an inventory or the command line (exit 2).
	Invalid Class = iota
	// Failure is a test failure: the board did not behave as the plan
	// expects (exit 1).
	Failure
	// Infra is an infrastructure error: a driver, the host or a lock failed
	// (exit 3).
	Infra
)

func (c Class) String() string {
	switch c {
	case Failure:
		return "failure"
	case Infra:
		return "infrastructure"
	}
	return "invalid"
}

// MarshalText implements encoding.TextMarshaler.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// ExitCode is the process exit status for an error of class c.
func (c Class) ExitCode() int {
	switch c {
	case Failure:
		return 1
	case Infra:
		return 3
	}
	return 2
}

// Pos is a position in a source file; Line and Column are 1-based.
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Range is a span of a source file. End is exclusive and may be zero when
// only the start is known.
type Range struct {
	Filename string `json:"file"`
	Start    Pos    `json:"start"`
	End      Pos    `json:"end"`
}

// String gives `file:line:col`.
func (r Range) String() string {
	if r.Filename == "" {
		return ""
	}
	if r.Start.Line == 0 {
		return r.Filename
	}
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// Diagnostic is one message about a document.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	Class    Class    `json:"class"`
	// Summary is one short sentence.
	Summary string `json:"message"`
	// Detail says how to fix it, or gives context; may be empty.
	Detail string `json:"detail,omitempty"`
	// Path is the place in the document, e.g. `steps[3].flash.image`.
	Path string `json:"path,omitempty"`
	// Subject is the source range the message is about.
	Subject Range `json:"range"`
}

// Error formats the diagnostic on one line.
func (d *Diagnostic) Error() string {
	var b strings.Builder
	if s := d.Subject.String(); s != "" {
		b.WriteString(s)
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	if d.Path != "" {
		fmt.Fprintf(&b, " (at %s)", d.Path)
	}
	if d.Detail != "" {
		b.WriteString("; ")
		b.WriteString(d.Detail)
	}
	return b.String()
}

// Diagnostics is a list of diagnostics; it is an error when it holds an
// error.
type Diagnostics []*Diagnostic

// Append adds diagnostics and returns the list, like append.
func (ds Diagnostics) Append(more ...*Diagnostic) Diagnostics {
	for _, d := range more {
		if d != nil {
			ds = append(ds, d)
		}
	}
	return ds
}

// Extend adds every diagnostic of other.
func (ds Diagnostics) Extend(other Diagnostics) Diagnostics { return append(ds, other...) }

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity.IsError() {
			return true
		}
	}
	return false
}

// Errs returns only the errors.
func (ds Diagnostics) Errs() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity.IsError() {
			out = append(out, d)
		}
	}
	return out
}

// Class is the most severe class among the errors (Invalid when none).
func (ds Diagnostics) Class() Class {
	c := Invalid
	for _, d := range ds {
		if d.Severity.IsError() && d.Class > c {
			c = d.Class
		}
	}
	return c
}

// Error joins the errors, one per line.
func (ds Diagnostics) Error() string {
	var lines []string
	for _, d := range ds {
		lines = append(lines, d.Error())
	}
	return strings.Join(lines, "\n")
}

// Sort orders diagnostics by file, line, column, then message, and drops
// exact duplicates.
func (ds Diagnostics) Sort() Diagnostics {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].Subject, ds[j].Subject
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		if a.Start.Line != b.Start.Line {
			return a.Start.Line < b.Start.Line
		}
		if a.Start.Column != b.Start.Column {
			return a.Start.Column < b.Start.Column
		}
		return ds[i].Summary < ds[j].Summary
	})
	out := ds[:0]
	for i, d := range ds {
		if i > 0 {
			p := out[len(out)-1]
			if p.Subject == d.Subject && p.Summary == d.Summary && p.Severity == d.Severity {
				continue
			}
		}
		out = append(out, d)
	}
	return out
}

// Errorf returns an error diagnostic of class Invalid at r.
func Errorf(r Range, path string, format string, args ...any) *Diagnostic {
	return &Diagnostic{Severity: Error, Class: Invalid, Subject: r, Path: path, Summary: fmt.Sprintf(format, args...)}
}

// WithDetail sets Detail and returns d.
func (d *Diagnostic) WithDetail(format string, args ...any) *Diagnostic {
	d.Detail = fmt.Sprintf(format, args...)
	return d
}

// ClassOf returns the class of err: the class of a *Diagnostic or
// Diagnostics in its chain, or of an error implementing Classer; Infra for
// anything else.
func ClassOf(err error) Class {
	var ds Diagnostics
	if errors.As(err, &ds) {
		return ds.Class()
	}
	var d *Diagnostic
	if errors.As(err, &d) {
		return d.Class
	}
	var c Classer
	if errors.As(err, &c) {
		return c.Class()
	}
	return Infra
}

// Classer is implemented by errors that know their class.
type Classer interface {
	Class() Class
}

// ClassError is an error with a class.
type ClassError struct {
	C   Class
	Err error
}

func (e *ClassError) Error() string { return e.Err.Error() }
func (e *ClassError) Unwrap() error { return e.Err }

// Class implements Classer.
func (e *ClassError) Class() Class { return e.C }

// Fail wraps err as a test failure.
func Fail(err error) error {
	if err == nil {
		return nil
	}
	return &ClassError{C: Failure, Err: err}
}

// Failf returns a test failure.
func Failf(format string, args ...any) error {
	return &ClassError{C: Failure, Err: fmt.Errorf(format, args...)}
}

// Infraf returns an infrastructure error.
func Infraf(format string, args ...any) error {
	return &ClassError{C: Infra, Err: fmt.Errorf(format, args...)}
}
