// Package expr finds and expands jsplan's references, written
// `${{ params.image }}`. The syntax cannot collide with the shell's
// `${VAR}` or `$(cmd)`, so plan commands keep their own expansions. A
// literal `${{` is written `$${{`.
package expr

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jsplan/jsplan/internal/shorten"
)

// Ref is one reference in a string.
type Ref struct {
	// Start and End are byte offsets of the whole `${{ ... }}` in the string.
	Start, End int
	// Path is the trimmed expression, e.g. "params.image".
	Path string
}

// Namespace is the first element of the path ("params", "env", "board").
func (r Ref) Namespace() string {
	ns, _, _ := strings.Cut(r.Path, ".")
	return ns
}

// Rest is the path without its namespace ("image" for "params.image").
func (r Ref) Rest() string {
	_, rest, _ := strings.Cut(r.Path, ".")
	return rest
}

var pathRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)

// Has reports quickly whether s may contain a reference.
func Has(s string) bool { return strings.Contains(s, "${{") }

// Find returns the references in s, in order. It fails on an unterminated
// reference or one that is not a dotted name.
func Find(s string) ([]Ref, error) {
	var refs []Ref
	i := 0
	for {
		j := strings.Index(s[i:], "${{")
		if j < 0 {
			return refs, nil
		}
		j += i
		if j > 0 && s[j-1] == '$' { // escaped: $${{
			i = j + 3
			continue
		}
		k := strings.Index(s[j+3:], "}}")
		if k < 0 {
			return refs, fmt.Errorf("unterminated reference %q: close it with }}", shorten.Clip(s[j:], 40))
		}
		end := j + 3 + k + 2
		p := strings.TrimSpace(s[j+3 : j+3+k])
		if !pathRE.MatchString(p) {
			return refs, fmt.Errorf("malformed reference %q: expected a dotted name such as params.image", s[j:end])
		}
		refs = append(refs, Ref{Start: j, End: end, Path: p})
		i = end
	}
}

// Whole reports whether s is exactly one reference with nothing around it
// (spaces aside); such a value takes the type of what it refers to.
func Whole(s string) (Ref, bool) {
	t := strings.TrimSpace(s)
	refs, err := Find(t)
	if err != nil || len(refs) != 1 || refs[0].Start != 0 || refs[0].End != len(t) {
		return Ref{}, false
	}
	return refs[0], true
}

// Lookup resolves one reference. ok=false leaves the reference in place
// (its value is not known yet); err reports a reference that can never
// resolve.
type Lookup func(r Ref) (value string, ok bool, err error)

// Expand replaces every reference in s that lookup knows. Escaped `$${{`
// become `${{` only when unescape is true (the final expansion).
func Expand(s string, lookup Lookup, unescape bool) (string, error) {
	if !Has(s) {
		return s, nil
	}
	refs, err := Find(s)
	if err != nil {
		return s, err
	}
	var b strings.Builder
	last := 0
	for _, r := range refs {
		v, ok, err := lookup(r)
		if err != nil {
			return s, err
		}
		b.WriteString(s[last:r.Start])
		if ok {
			b.WriteString(v)
		} else {
			b.WriteString(s[r.Start:r.End])
		}
		last = r.End
	}
	b.WriteString(s[last:])
	out := b.String()
	if unescape {
		out = strings.ReplaceAll(out, "$${{", "${{")
	}
	return out, nil
}
