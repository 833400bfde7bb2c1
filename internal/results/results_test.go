package results

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine/result"
)

// tree renders cases one a line, indented by nesting: "status name [message]".
func tree(cases []*result.TestCase) string {
	var b strings.Builder
	var walk func(list []*result.TestCase, depth int)
	walk = func(list []*result.TestCase, depth int) {
		for _, c := range list {
			fmt.Fprintf(&b, "%s%s %s", strings.Repeat("  ", depth), c.Status, c.Name)
			if c.Message != "" {
				fmt.Fprintf(&b, " [%s]", c.Message)
			}
			b.WriteByte('\n')
			walk(c.Children, depth+1)
		}
	}
	walk(cases, 0)
	return b.String()
}

func parseFile(t *testing.T, format, name string) []*result.TestCase {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cases, err := Parse(format, f, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

func parseString(t *testing.T, format, s string) []*result.TestCase {
	t.Helper()
	cases, err := Parse(format, strings.NewReader(s), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

func wantTree(t *testing.T, cases []*result.TestCase, want string) {
	t.Helper()
	want = strings.TrimLeft(want, "\n")
	if got := tree(cases); got != want {
		t.Fatalf("cases:\n%s\nwant:\n%s", got, want)
	}
}

// find returns the case at path (names joined by '/').
func find(t *testing.T, cases []*result.TestCase, path string) *result.TestCase {
	t.Helper()
	list := cases
	var c *result.TestCase
	for _, name := range strings.Split(path, "/") {
		c = nil
		for _, x := range list {
			if x.Name == name {
				c = x
				break
			}
		}
		if c == nil {
			t.Fatalf("no case %q in\n%s", path, tree(cases))
		}
		list = c.Children
	}
	return c
}

func TestUnknownFormat(t *testing.T) {
	if _, err := New("xunit", Limits{}); err == nil || !strings.Contains(err.Error(), "ktap, tap, junit") {
		t.Fatalf("err = %v", err)
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		ok   bool
	}{
		{"*", "", true}, {"*", "a/b", true}, {"net.*", "net.ipv4/route", true}, {"net.*", "xnet.a", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"*/test_2", "main/ex/test_2", true},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"exact", "exact", true}, {"exact", "exac", false},
		{strings.Repeat("*a", 30), strings.Repeat("a", 29) + "b", false},
	} {
		if got := Glob(c.p, c.s); got != c.ok {
			t.Errorf("Glob(%q, %q) = %v", c.p, c.s, got)
		}
	}
}
