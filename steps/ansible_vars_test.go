package steps

import (
	"strings"
	"testing"
	"time"
)

// Issue 11, item 15 (unit level): every string of the extra vars is tagged
// !unsafe, keys and other types stay plain.
func TestUnsafeVars(t *testing.T) {
	b, err := unsafeVars(map[string]any{
		"cmd":   "{{ lookup('pipe', 'id -un; touch PWNED') }}",
		"n":     3,
		"ok":    true,
		"list":  []any{"{% raw %}", 1.5},
		"map":   map[string]any{"k": "a\nb \"q\" 'x' \\ \x01"},
		"empty": nil,
		"when":  time.Date(2001, 12, 14, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		`"cmd": !unsafe "{{ lookup('pipe', 'id -un; touch PWNED') }}"`,
		`"n": 3`, `"ok": true`, `- !unsafe "{% raw %}"`, `- 1.5`, `"k": !unsafe "a\nb \"q\" 'x' \\ \x01"`, `"empty": null`, `"when": 2001-12-14T00:00:00Z`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("vars file lacks %s:\n%s", want, got)
		}
	}
}
