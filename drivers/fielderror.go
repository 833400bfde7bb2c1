package drivers

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FieldError is a configuration error at a field path, in the spirit of
// Tekton's (knative's) apis.FieldError: a child does not know where it sits,
// and its parent prefixes the path as the error moves up (ViaField,
// ViaIndex, ViaFieldIndex). The engine looks the path up in the inventory's YAML,
// so each message points at its own key.
//
// A *FieldError holds one or more errors. Every method accepts a nil
// receiver and returns a new value; nil means "no error".
type FieldError struct {
	// Level says whether the error rejects the configuration (the zero
	// value) or only warns: jsplan validate prints a warning at its
	// field and the board is used.
	Level Level
	// Path is the field below the driver's configuration: "timeout",
	// "power.on[1]", "env.NAME". Empty means the whole configuration.
	Path string
	// Message says what is wrong; Detail, when set, how to fix it.
	Message string
	Detail  string

	more []*FieldError
}

// Level is how serious a FieldError is.
type Level int

// Levels.
const (
	// LevelError rejects the configuration.
	LevelError Level = iota
	// LevelWarning is a configuration that works but is unwise.
	LevelWarning
)

// WarnField returns a warning at field path (possibly ""): the
// configuration is used, and jsplan validate prints the warning.
func WarnField(path, format string, args ...any) *FieldError {
	return &FieldError{Level: LevelWarning, Path: path, Message: fmt.Sprintf(format, args...)}
}

// Fatal returns err without the warnings of a *FieldError in it: nil when
// it held only warnings. A driver that validates when it opens uses it.
func Fatal(err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	var out *FieldError
	for _, x := range fe.Errors() {
		if x.Level != LevelWarning {
			out = out.Also(x)
		}
	}
	return out.Err()
}

// ErrField returns an error at field path (possibly "").
func ErrField(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Message: fmt.Sprintf(format, args...)}
}

// ErrMissingField reports a required field that is absent.
func ErrMissingField(path string) *FieldError {
	return &FieldError{Path: path, Message: "required"}
}

// WithDetail sets the hint of every error in e.
func (e *FieldError) WithDetail(format string, args ...any) *FieldError {
	if e == nil {
		return nil
	}
	d := fmt.Sprintf(format, args...)
	return e.mapEach(func(f FieldError) FieldError { f.Detail = d; return f })
}

// Also returns e with errs added (nil ones are skipped).
func (e *FieldError) Also(errs ...*FieldError) *FieldError {
	all := e.Errors()
	for _, x := range errs {
		all = append(all, x.Errors()...)
	}
	if len(all) == 0 {
		return nil
	}
	out := *all[0]
	out.more = nil
	for _, x := range all[1:] {
		c := *x
		c.more = nil
		out.more = append(out.more, &c)
	}
	return &out
}

// ViaField prefixes every path in e with the key name.
func (e *FieldError) ViaField(name string) *FieldError {
	return e.prefix(func(p string) string {
		if p == "" || strings.HasPrefix(p, "[") {
			return name + p
		}
		return name + "." + p
	})
}

// ViaIndex prefixes every path in e with a list index.
func (e *FieldError) ViaIndex(i int) *FieldError {
	return e.prefix(func(p string) string {
		idx := "[" + strconv.Itoa(i) + "]"
		if p == "" || strings.HasPrefix(p, "[") {
			return idx + p
		}
		return idx + "." + p
	})
}

// ViaFieldIndex is ViaIndex(i).ViaField(name): "name[i]".
func (e *FieldError) ViaFieldIndex(name string, i int) *FieldError {
	return e.ViaIndex(i).ViaField(name)
}

func (e *FieldError) prefix(f func(string) string) *FieldError {
	if e == nil {
		return nil
	}
	return e.mapEach(func(x FieldError) FieldError { x.Path = f(x.Path); return x })
}

func (e *FieldError) mapEach(f func(FieldError) FieldError) *FieldError {
	var out *FieldError
	for _, x := range e.Errors() {
		c := f(*x)
		c.more = nil
		out = out.Also(&c)
	}
	return out
}

// Errors lists the single errors in e, in the order they were added.
func (e *FieldError) Errors() []*FieldError {
	if e == nil {
		return nil
	}
	first := *e
	first.more = nil
	return append([]*FieldError{&first}, e.more...)
}

// Error formats every error as "path: message", one per line, sorted.
func (e *FieldError) Error() string {
	var lines []string
	for _, x := range e.Errors() {
		s := x.Message
		if x.Level == LevelWarning {
			s = "warning: " + s
		}
		if x.Path != "" {
			s = x.Path + ": " + s
		}
		if x.Detail != "" {
			s += " (" + x.Detail + ")"
		}
		lines = append(lines, s)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Err returns e as an error, or a nil error when e is nil (a nil
// *FieldError in an error interface is not a nil error).
func (e *FieldError) Err() error {
	if e == nil {
		return nil
	}
	return e
}
