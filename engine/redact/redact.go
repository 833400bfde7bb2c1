// Package redact masks secret values in everything jsplan prints or writes:
// logs, reports, artifacts and error messages.
package redact

import (
	"encoding/json"
	"html"
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
	var all []string
	for _, v := range values {
		if v == "" {
			continue
		}
		// the forms a value takes inside JSON and XML reports of other tools
		all = append(all, v, jsonEscaped(v, true), jsonEscaped(v, false), html.EscapeString(v))
	}
	for _, v := range all {
		dup := false
		for _, s := range r.secrets {
			if s == v {
				dup = true
			}
		}
		if !dup {
			r.secrets = append(r.secrets, v)
		}
	}
	// longest first, so a secret containing another is masked whole
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	var pairs []string
	for _, s := range r.secrets {
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
