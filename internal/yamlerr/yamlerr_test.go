package yamlerr

import (
	"errors"
	"testing"

	"gopkg.in/yaml.v3"
)

// The cases feed real bad YAML to the pinned yaml.v3: a new yaml.v3 that
// words or numbers its errors differently fails here, not in a user's
// terminal.
func TestSyntax(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line, col int
		msg       string
		tab       bool
	}{
		{"flow sequence (parser, 0-based)", "a: 1\nb:\n  - [unclosed\n", 3, 1, "did not find expected ',' or ']'", false},
		{"block sequence (parser)", "steps:\n  - log: a\n   bad: x\n", 2, 1, "did not find expected '-' indicator", false},
		{"mapping key (parser)", "a:\n  b: 1\n c: 2\n", 3, 1, "did not find expected key", false},
		{"scanner (1-based)", "steps:\n  - log: a: b\n", 2, 1, "mapping values are not allowed in this context", false},
		{"tab in indentation", "a:\n\tb: 1\n", 2, 1, "found character that cannot start any token (a tab: YAML indents with spaces)", true},
		{"tab after spaces", "a:\n  b: 1\n  \tc: 2\n", 3, 3, "found a tab character that violates indentation", true},
		{"unterminated quote", "a: \"x\nb: 1\n", 3, 1, "found unexpected end of stream", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			err := yaml.Unmarshal([]byte(tc.src), &n)
			if err == nil {
				t.Fatal("yaml.v3 accepted the document")
			}
			e := Syntax([]byte(tc.src), err)
			if e.Line != tc.line || e.Column != tc.col || e.Msg != tc.msg || e.Tab != tc.tab {
				t.Errorf("Syntax(%q) = %d:%d %q tab=%v, want %d:%d %q tab=%v (yaml.v3 said %q)",
					tc.src, e.Line, e.Column, e.Msg, e.Tab, tc.line, tc.col, tc.msg, tc.tab, err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	type cfg struct {
		N    int      `yaml:"n"`
		L    []string `yaml:"l"`
		S    struct{} `yaml:"s"`
		When dur      `yaml:"when"`
	}
	for _, tc := range []struct {
		name, src string
		line, col int
		msg       string
	}{
		{"string for an int", "l: []\nn2: 0\nn: lots\n", 3, 1, "expected another type, got the string `lots` into int"},
		{"mapping for a list", "l:\n  a: 1\n", 2, 1, "expected []string"},
		{"list for a struct", "s: [1]\n", 1, 1, "expected struct {}"},
		{"UnmarshalYAML error keeps its node", "n: 1\nwhen:   soon\n", 2, 9, "bad duration \"soon\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tc.src), &n); err != nil {
				t.Fatal(err)
			}
			var c cfg
			err := n.Decode(&c)
			if err == nil {
				t.Fatal("decoded")
			}
			e := Decode(err)
			if e.Line != tc.line || e.Column != tc.col || e.Msg != tc.msg {
				t.Errorf("Decode = %d:%d %q, want %d:%d %q (yaml.v3 said %q)", e.Line, e.Column, e.Msg, tc.line, tc.col, tc.msg, err)
			}
		})
	}
	if e := Decode(errors.New("plain")); e.Line != 0 || e.Msg != "plain" {
		t.Errorf("Decode(plain) = %+v", e)
	}
}

func TestErrorText(t *testing.T) {
	if got := (&Error{Line: 4, Column: 2, Msg: "m"}).Error(); got != "line 4: m" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&Error{Msg: "m"}).Error(); got != "m" {
		t.Errorf("Error() = %q", got)
	}
}

type dur struct{}

func (*dur) UnmarshalYAML(n *yaml.Node) error {
	return At(n, "bad duration %q", n.Value)
}
