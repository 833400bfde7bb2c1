package steps

import "testing"

func TestReplacesShell(t *testing.T) {
	for script, want := range map[string]string{
		"exec sh":                      "sh",
		"cd /tmp; exec bash -l":        "bash",
		"true && exec -a x prog":       "-a",
		"if true; then exec sh; fi":    "sh",
		"A=1 exec sh":                  "sh",
		"exec >log 2>&1; echo hi":      "",
		"exec > log; exec 3< in":       "",
		"exec 2>/dev/null":             "",
		"sh -c 'exec prog'":            "",
		`sh -c "x; exec prog"`:         "",
		"(exec prog)":                  "",
		"echo exec sh":                 "",
		"# exec sh\necho hi":           "",
		"executor --flag":              "",
		"for i in 1; do exec sh; done": "sh",
		"echo a \\; exec b":            "",
	} {
		if got := replacesShell(script); got != want {
			t.Errorf("%q: %q, want %q", script, got, want)
		}
	}
}
