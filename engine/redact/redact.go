// Package redact masks secret values in everything jsplan prints or writes:
// logs, reports, artifacts and error messages.
package redact

import (
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
	secrets  []string
	replacer *strings.Replacer
}

// Add registers secret values. Empty values are ignored.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	added := false
	for _, v := range values {
		if v == "" {
			continue
		}
		dup := false
		for _, s := range r.secrets {
			if s == v {
				dup = true
			}
		}
		if !dup {
			r.secrets = append(r.secrets, v)
			added = true
		}
	}
	if !added {
		return
	}
	// longest first, so a secret containing another is masked whole
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	var pairs []string
	for _, s := range r.secrets {
		pairs = append(pairs, s, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

// AddForms also masks fn(v) for every secret v registered so far: the form
// a secret takes once quoted or escaped, e.g. in a command line a step types
// on a console, which the console echoes.
func (r *Redactor) AddForms(fn func(string) string) {
	r.mu.RLock()
	values := append([]string(nil), r.secrets...)
	r.mu.RUnlock()
	var forms []string
	for _, v := range values {
		if f := fn(v); f != v {
			forms = append(forms, f)
		}
	}
	r.Add(forms...)
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

// MaxLen is the length of the longest secret.
func (r *Redactor) MaxLen() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return 0
	}
	return len(r.secrets[0])
}
