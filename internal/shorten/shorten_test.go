package shorten

import "testing"

func TestShorten(t *testing.T) {
	if got := FirstLine("a b\nc\n"); got != "a b" {
		t.Errorf("FirstLine = %q", got)
	}
	if got := FirstLine("one"); got != "one" {
		t.Errorf("FirstLine = %q", got)
	}
	for _, tc := range []struct {
		s    string
		n    int
		want string
		cut  int
	}{
		{"short", 10, "short", 0},
		{"exactly", 7, "exactly", 0},
		{"abcdef", 3, "abc", 3},
		{"aé", 2, "a", 2}, // é is 2 bytes: not cut inside
		{"€uro", 2, "", 6},
		{"x", 0, "", 1},
	} {
		head, cut := Cut(tc.s, tc.n)
		if head != tc.want || cut != tc.cut {
			t.Errorf("Cut(%q, %d) = %q, %d; want %q, %d", tc.s, tc.n, head, cut, tc.want, tc.cut)
		}
	}
	if got := Clip("abcdef", 3); got != "abc..." {
		t.Errorf("Clip = %q", got)
	}
	if got := Clip("abc", 3); got != "abc" {
		t.Errorf("Clip = %q", got)
	}
}
