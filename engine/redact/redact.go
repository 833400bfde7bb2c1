// Package redact masks secret values in everything jsplan prints or writes:
// logs, reports, artifacts and error messages.
//
// A secret is masked in the forms it takes in other programs' output too:
// JSON-, Go-, XML- and HTML-escaped, and, for a multi-line secret, each of
// its lines on its own. Text that arrives in pieces (a console, a command's
// output) goes through a Stream, which holds back a tail that may be the
// start of a secret until it knows. Secrets shorter than MinLen characters
// are refused: masking them would mangle every word they occur in.
package redact

import (
	"encoding/json"
	"fmt"
	"html"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Mask replaces a secret.
const Mask = "***"

// MinLen is the shortest secret, in characters, that is masked. Shorter
// values occur inside ordinary words and binary data; the loader refuses
// them as secret parameters.
const MinLen = 4

// TooShort reports whether v is a non-empty value too short to be masked:
// fewer than MinLen characters besides leading and trailing white space (a
// secret of spaces would mask the spaces of every line).
func TooShort(v string) bool {
	return v != "" && utf8.RuneCountInString(strings.TrimSpace(v)) < MinLen
}

// Redactor replaces secret values with Mask. The zero value masks nothing;
// it is safe for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	secrets  []string // the registered values
	masked   []string // secrets and their forms, longest first
	replacer *strings.Replacer
	first    *[256]bool // the first bytes of the masked strings
}

// Add registers secret values. Empty values and values shorter than MinLen
// are ignored.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var forms []string
	for _, v := range values {
		if v == "" || TooShort(v) || slices.Contains(r.secrets, v) {
			continue
		}
		r.secrets = append(r.secrets, v)
		for _, p := range parts(v) {
			forms = append(forms, escaped(p)...)
		}
	}
	r.mask(forms)
}

// parts are the strings masked for a secret: the value, and for a
// multi-line value its other line ends and each line long enough to mask
// (line-oriented output shows them one by one).
func parts(v string) []string {
	out := []string{v}
	if !strings.ContainsAny(v, "\r\n") {
		return out
	}
	lf := strings.ReplaceAll(v, "\r\n", "\n")
	out = append(out, lf, strings.ReplaceAll(lf, "\n", "\r\n"), strings.TrimRight(lf, "\n"))
	for _, l := range strings.Split(lf, "\n") {
		if l = strings.TrimRight(l, "\r"); !TooShort(l) && strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// xmlForms are the ways XML and HTML writers escape text: minimal text
// escaping, Python's minidom text and ElementTree attributes, &quot; and
// &apos; entities, and
// Go's html and xml escaping (numeric references).
var xmlForms = []*strings.Replacer{
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "\n", "&#10;", "\r", "&#13;", "\t", "&#09;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "\n", "&#xA;", "\r", "&#xD;", "\t", "&#x9;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#x22;", "'", "&#x27;"),
	// Python's html.escape (quote=True).
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#x27;"),
}

// pyRepr is the inside of Python's repr of a string (as ansible prints a
// list): single-quoted, ' escaped when the string also holds a " (else
// Python picks double quotes and escapes no quote).
func pyRepr(v string, escapeQuote bool) string {
	var b strings.Builder
	for _, r := range v {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\'' && escapeQuote:
			b.WriteString(`\'`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escaped returns v and the forms it takes inside JSON, Go-quoted strings,
// XML and HTML, and inside XML once JSON- or Go-quoted (a JSON result in a
// JUnit report).
func escaped(v string) []string {
	q, qa := strconv.Quote(v), strconv.QuoteToASCII(v)
	quoted := []string{v, jsonEscaped(v, true), jsonEscaped(v, false), q[1 : len(q)-1], qa[1 : len(qa)-1],
		pyRepr(v, true), pyRepr(v, false)}
	out := append([]string{html.EscapeString(v)}, quoted...)
	for _, b := range quoted {
		if !strings.ContainsAny(b, `&<>"'`+"\r\n\t") {
			continue
		}
		for _, x := range xmlForms {
			out = append(out, x.Replace(b))
		}
	}
	return out
}

// AddForms also masks fn(v) for every secret v registered so far (and each
// line of a multi-line one), not for forms added before: the form a secret
// takes once quoted or escaped, e.g. in a command line a step types on a
// console, which the console echoes.
func (r *Redactor) AddForms(fn func(string) string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	forms := make([]string, 0, len(r.secrets))
	for _, v := range r.secrets {
		for _, p := range parts(v) {
			if f := fn(p); !TooShort(f) {
				forms = append(forms, f)
			}
		}
	}
	r.mask(forms)
}

// mask adds values to the masked strings; the caller holds mu.
func (r *Redactor) mask(values []string) {
	added := false
	for _, v := range values {
		if v != "" && !slices.Contains(r.masked, v) {
			r.masked = append(r.masked, v)
			added = true
		}
	}
	if !added {
		return
	}
	// longest first, so a secret containing another is masked whole
	sort.SliceStable(r.masked, func(i, j int) bool { return len(r.masked[i]) > len(r.masked[j]) })
	pairs := make([]string, 0, 2*len(r.masked))
	for _, s := range r.masked {
		pairs = append(pairs, s, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
	first := new([256]bool)
	for _, s := range r.masked {
		first[s[0]] = true
	}
	r.first = first
}

func jsonEscaped(v string, escapeHTML bool) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(v)
	out := strings.TrimSpace(b.String())
	return out[1 : len(out)-1]
}

// String masks every secret in s.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.replacer
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// Bytes masks the secrets in a file's content. Text (valid UTF-8 without
// NUL bytes) is masked like String. Any other content keeps its length and
// every byte that is not part of a secret: each occurrence of a secret (or a
// line of one) becomes as many '*'.
func (r *Redactor) Bytes(data []byte) []byte {
	if r == nil {
		return data
	}
	if utf8.Valid(data) && !slices.Contains(data, 0) {
		return []byte(r.String(string(data)))
	}
	r.mu.RLock()
	var raw []string
	for _, v := range r.secrets {
		raw = append(raw, parts(v)...)
	}
	r.mu.RUnlock()
	sort.SliceStable(raw, func(i, j int) bool { return len(raw[i]) > len(raw[j]) })
	out := slices.Clone(data)
	for _, v := range raw {
		for i := 0; ; {
			j := strings.Index(string(out[i:]), v)
			if j < 0 {
				break
			}
			for k := i + j; k < i+j+len(v); k++ {
				out[k] = '*'
			}
			i += j + len(v)
		}
	}
	return out
}

// MaxLen is the length of the longest masked string.
func (r *Redactor) MaxLen() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.masked) == 0 {
		return 0
	}
	return len(r.masked[0])
}

// snapshot returns the masked strings, the replacer and the first bytes.
func (r *Redactor) snapshot() ([]string, *strings.Replacer, *[256]bool) {
	if r == nil {
		return nil, nil, nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.masked, r.replacer, r.first
}

// straddle moves cut back to the start of any occurrence of a masked
// string in s that begins before cut and ends after it.
func straddle(s string, cut int, masked []string) int {
	for changed := true; changed; {
		changed = false
		for _, m := range masked {
			lo, hi := max(0, cut-len(m)+1), min(len(s), cut+len(m)-1)
			if hi-lo < len(m) {
				continue
			}
			for off := lo; off < cut; {
				i := strings.Index(s[off:hi], m)
				if i < 0 || off+i >= cut {
					break
				}
				if off+i+len(m) > cut {
					cut, changed = off+i, true
					break
				}
				off += i + 1
			}
		}
	}
	return cut
}

// Tail masks the last n bytes or so of s, which may be the end of a longer
// text cut anywhere (inside a secret, too). Pass at least n+MaxLen() bytes:
// the first MaxLen()-1 are never shown, since they may be the visible end of
// a secret that began before s. The result is masked, then cut to n bytes.
func (r *Redactor) Tail(s string, n int) string {
	masked, rep, _ := r.snapshot()
	if rep == nil {
		if len(s) > n {
			s = s[len(s)-n:]
		}
		return trimRuneStart(s)
	}
	cut := max(len(s)-n, len(masked[0])-1)
	if cut >= len(s) {
		return ""
	}
	cut = straddle(s, cut, masked)
	return trimRuneStart(rep.Replace(s[cut:]))
}

func trimRuneStart(s string) string {
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return s
}

// Stream masks text that arrives in pieces (a console, a command's output):
// a secret split between two writes is masked whole. It is not safe for
// concurrent use.
type Stream struct {
	r    *Redactor
	pend string
}

// Stream returns a Stream masking with r's secrets, including those added
// later.
func (r *Redactor) Stream() *Stream { return &Stream{r: r} }

// Write takes the next piece of text and returns the masked text that is
// safe to pass on: all of it except a tail that may be the beginning of a
// secret, held back until the next Write or Flush.
func (s *Stream) Write(p string) string {
	text := s.pend + p
	masked, rep, first := s.r.snapshot()
	if rep == nil {
		s.pend = ""
		return text
	}
	cut := holdFrom(text, masked, first)
	if cut < len(text) { // nothing can straddle the end of the text
		cut = straddle(text, cut, masked)
	}
	s.pend = text[cut:]
	return rep.Replace(text[:cut])
}

// holdFrom returns where the longest tail of text that is the beginning
// (not the whole) of a masked string starts, or len(text).
func holdFrom(text string, masked []string, first *[256]bool) int {
	for h := max(0, len(text)-len(masked[0])+1); h < len(text); h++ {
		if !first[text[h]] {
			continue
		}
		tail := text[h:]
		for _, m := range masked {
			if len(m) > len(tail) && strings.HasPrefix(m, tail) {
				return h
			}
		}
	}
	return len(text)
}

// Held is the number of bytes held back.
func (s *Stream) Held() int { return len(s.pend) }

// Flush returns the text held back, masked. The text ends there: a held
// tail of MinLen or more characters that begins a secret is masked too.
func (s *Stream) Flush() string {
	text := s.pend
	s.pend = ""
	masked, rep, first := s.r.snapshot()
	if rep == nil || text == "" {
		return text
	}
	cut := holdFrom(text, masked, first)
	if TooShort(text[cut:]) {
		return rep.Replace(text)
	}
	return rep.Replace(text[:cut]) + Mask
}

// Spans returns where masked strings occur in s, as sorted, merged
// [start, end) byte ranges.
func (r *Redactor) Spans(s string) [][2]int {
	masked, _, _ := r.snapshot()
	var out [][2]int
	for _, m := range masked {
		for off := 0; ; {
			i := strings.Index(s[off:], m)
			if i < 0 {
				break
			}
			out = append(out, [2]int{off + i, off + i + len(m)})
			off += i + 1
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	merged := out[:0]
	for _, sp := range out {
		if n := len(merged); n > 0 && sp[0] < merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], sp[1])
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}
