package redact

import (
	"strings"
	"testing"
)

func TestMasksLongestFirst(t *testing.T) {
	var r Redactor
	r.Add("pw", "pw-long-secret", "")
	if got := r.String("a pw-long-secret and pw"); got != "a *** and ***" {
		t.Fatalf("got %q", got)
	}
	var none *Redactor
	if none.String("x") != "x" {
		t.Fatal("nil redactor must pass text through")
	}
}

func TestMasksEscapedForms(t *testing.T) {
	var r Redactor
	r.Add(`p"w<&`)
	for _, in := range []string{`raw p"w<& end`, `{"v":"p\"w\u003c\u0026"}`, `{"v":"p\"w<&"}`, `<x v="p&#34;w&lt;&amp;"/>`} {
		if got := r.String(in); strings.Contains(got, "w<") || strings.Contains(got, `w\u003c`) || strings.Contains(got, "w&lt;") {
			t.Errorf("%q -> %q: secret left", in, got)
		}
	}
}
