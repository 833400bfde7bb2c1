package redact

import (
	"strings"
	"sync"
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

func TestRedactor(t *testing.T) {
	var zero Redactor
	if zero.String("a secret") != "a secret" || (*Redactor)(nil).String("x") != "x" {
		t.Errorf("the zero or nil Redactor changed text")
	}
	r := &Redactor{}
	r.Add("", "pass", "password1", "pass")
	if got := r.String("password1 and pass and passw"); got != "*** and *** and ***w" {
		t.Errorf("masked: %q", got)
	}
	if r.MaxLen() != len("password1") {
		t.Errorf("MaxLen %d", r.MaxLen())
	}
	r.AddForms(func(s string) string { return strings.ToUpper(s) })
	if got := r.String("PASSWORD1 PASS pass"); got != "*** *** ***" {
		t.Errorf("forms: %q", got)
	}
	// Forms derive from the secrets only, never from earlier forms, so
	// calling AddForms per command does not pile them up.
	r2 := &Redactor{}
	r2.Add("s3cr3t")
	for i := 0; i < 3; i++ {
		r2.AddForms(func(s string) string { return s + "!" })
	}
	if got := r2.String("s3cr3t!!"); got != "***!" {
		t.Errorf("a form of a form was masked: %q", got)
	}
}

func TestRedactorConcurrent(t *testing.T) {
	r := &Redactor{}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				r.Add("s3cr3t")
				r.AddForms(func(s string) string { return s + "!" })
				if strings.Contains(r.String("x s3cr3t x"), "s3cr3t") {
					t.Error("secret not masked")
					return
				}
			}
		}()
	}
	wg.Wait()
}
