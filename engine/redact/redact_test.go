package redact

import "testing"

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
