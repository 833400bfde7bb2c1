package expr

import (
	"fmt"
	"testing"
)

func TestExpand(t *testing.T) {
	vals := map[string]string{"params.image": "a.img", "board.name": "sim-1"}
	lookup := func(r Ref) (string, bool, error) {
		if r.Namespace() == "bad" {
			return "", false, fmt.Errorf("no such namespace")
		}
		v, ok := vals[r.Path]
		return v, ok, nil
	}
	cases := []struct{ in, want, err string }{
		{"plain ${VAR} $(cmd)", "plain ${VAR} $(cmd)", ""},
		{"${{ params.image }}", "a.img", ""},
		{"x=${{params.image}} on ${{ board.name }}!", "x=a.img on sim-1!", ""},
		{"${{ params.unknown }}", "${{ params.unknown }}", ""}, // pending
		{"$${{ params.image }}", "${{ params.image }}", ""},    // escaped
		{"${{ params.image", "", "unterminated"},
		{"${{ a b }}", "", "malformed"},
		{"${{ bad.x }}", "", "no such namespace"},
	}
	for _, c := range cases {
		got, err := Expand(c.in, lookup, true)
		if c.err != "" {
			if err == nil || !contains(err.Error(), c.err) {
				t.Errorf("Expand(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestWhole(t *testing.T) {
	if r, ok := Whole("  ${{ params.n }} "); !ok || r.Path != "params.n" || r.Rest() != "n" {
		t.Errorf("Whole: %+v %v", r, ok)
	}
	for _, s := range []string{"x${{ params.n }}", "${{ a.b }}${{ c.d }}", "plain"} {
		if _, ok := Whole(s); ok {
			t.Errorf("Whole(%q) = true", s)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
