// Package redact masks secret values in everything jsplan prints or writes:
// logs, reports, artifacts and error messages.
package redact

import (
	"encoding/json"
	"html"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Mask replaces a secret.
const Mask = "***"

// Redactor replaces secret values with Mask. The zero value masks nothing;
// it is safe for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	secrets  []string // the registered values
	masked   []string // secrets and their forms, longest first
	replacer *strings.Replacer
}

// Add registers secret values. Empty values are ignored.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if v != "" && !slices.Contains(r.secrets, v) {
			r.secrets = append(r.secrets, v)
		}
	}
	var forms []string
	for _, v := range values {
		if v != "" {
			// the forms a value takes inside JSON and XML reports of other tools
			forms = append(forms, v, jsonEscaped(v, true), jsonEscaped(v, false), html.EscapeString(v))
		}
	}
	r.mask(forms)
}

// AddForms also masks fn(v) for every secret v registered so far (not for
// forms added before): the form a secret takes once quoted or escaped, e.g.
// in a command line a step types on a console, which the console echoes.
func (r *Redactor) AddForms(fn func(string) string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	forms := make([]string, 0, len(r.secrets))
	for _, v := range r.secrets {
		forms = append(forms, fn(v))
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
	sort.Slice(r.masked, func(i, j int) bool { return len(r.masked[i]) > len(r.masked[j]) })
	pairs := make([]string, 0, 2*len(r.masked))
	for _, s := range r.masked {
		pairs = append(pairs, s, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
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
