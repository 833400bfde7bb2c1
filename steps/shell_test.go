package steps_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/engine/shell"
	"github.com/jsplan/jsplan/steps"
)

func TestExpandKeys(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"root<ENTER>", "root\r"},
		{"<enter>", "\r"},
		{"a<TAB>b<LF>", "a\tb\n"},
		{"<CTRL-C>", "\x03"},
		{"<ctrl-d>", "\x04"},
		{"<CTRL-[>", "\x1b"},
		{"<CTRL-Z><CTRL-A>", "\x1a\x01"},
		{"<ESC>:wq<ENTER>", "\x1b:wq\r"},
		{"<F2>", "\x1bOQ"},
		{"<F12>", "\x1b[24~"},
		{"<UP><DOWN><LEFT><RIGHT>", "\x1b[A\x1b[B\x1b[D\x1b[C"},
		{"<BACKSPACE><DEL>", "\x7f\x1b[3~"},
		{"<SPACE>", " "},
		// not macros: left as typed
		{"<NOPE>", "<NOPE>"},
		{"<CTRL-1>", "<CTRL-1>"},
		{"<CTRL-AB>", "<CTRL-AB>"},
		{"if [ $a -lt 3 ] && x <y> z", "if [ $a -lt 3 ] && x <y> z"},
		{"<<ENTER>>", "<\r>"},
		{"< ENTER >", "< ENTER >"},
		{"no macros at all", "no macros at all"},
		{"", ""},
	} {
		if got := steps.ExpandKeys(tc.in); got != tc.want {
			t.Errorf("ExpandKeys(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// scripts exercise the quoting of run commands.
var scripts = []string{
	"echo hello",
	`printf '%s\n' "it's" 'a "quoted" word' 'don'"'"'t'`,
	"x=5\nprintf '%s\\n' \"$x%\" '100%' \"50%%\" '%d %s %%'\n",
	`printf '%s\n' 'back\slash' "two\\\\" 'a\nb' '\\'`,
	"for i in 1 2 3; do\n  printf 'line %s\\n' \"$i\"\ndone",
	"cat <<'EOF'\n$HOME `not run` \\n %d $((1+1))\nEOF",
	"cat <<EOF\nexpanded $((6*7)) \\$ \\\\\nEOF",
	"printf 'a\\tb\\n'; printf '%%\\n'",
	"printf '%s\\n' \"$(printf '%s' 'nested $(x)')\"",
	"printf '[%s]\\n' 'tab\there' 'héllo ✓' \"ctl:\x01\x02\x7f:\"",
	"echo a   \n\n\n",
	"a='x'\\''y'; printf '%s\\n' \"$a\" ; : '\\'''",
	"true \\\n  && echo continued",
}

// sh runs /bin/sh with args and returns its output.
func sh(t testing.TB, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sh %q: %v\n%s", args, err, out)
	}
	return out
}

func TestPrintfQuoteRoundTrip(t *testing.T) {
	extra := []string{"-0", "--", "-n x", "-v var %s", "", "%", "%%s", "\\", "\\\\n", "'", "''\\''", "\x00nul", "\x1b[1m", "\n", "trailing\n\n", "\r\n", strings.Repeat("%'\\\n", 100)}
	for _, s := range append(append([]string{}, scripts...), extra...) {
		q := shell.PrintfQuote(s)
		if strings.ContainsAny(q, "\n\r\x00") {
			t.Errorf("PrintfQuote(%q) is not one line: %q", s, q)
		}
		if got := sh(t, "-c", "printf -- "+q); !bytes.Equal(got, []byte(s)) {
			t.Errorf("printf -- %s printed %q, want %q", q, got, s)
		}
	}
}

func TestPrintfQuoteEvalMatchesScript(t *testing.T) {
	for _, s := range scripts {
		direct := sh(t, "-c", s)
		viaEval := sh(t, "-c", `command eval "$(printf -- `+shell.PrintfQuote(s)+`)"`)
		if !bytes.Equal(direct, viaEval) {
			t.Errorf("script %q:\n direct %q\n eval   %q", s, direct, viaEval)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", `"$HOME" $(x) *`, "a\nb", `\'`} {
		if got := sh(t, "-c", "printf %s "+shell.Quote(s)); string(got) != s {
			t.Errorf("ShellQuote(%q): printed %q", s, got)
		}
	}
}

func FuzzPrintfQuote(f *testing.F) {
	for _, s := range scripts {
		f.Add(s)
	}
	f.Add("%\\'\x00\x7f\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		if got := sh(t, "-c", "printf -- "+shell.PrintfQuote(s)); !bytes.Equal(got, []byte(s)) {
			t.Errorf("round trip of %q gave %q", s, got)
		}
	})
}

// TestRunScriptsOnTheBoard types every script on the sim board's shell and
// compares the output with the script run directly.
func TestRunScriptsOnTheBoard(t *testing.T) {
	var plan strings.Builder
	plan.WriteString(head + login)
	for i, s := range scripts {
		fmt.Fprintf(&plan, "  - name: script %d\n    timeout: 20s\n    run:\n      command: %q\n", i, s)
	}
	r := execute(t, "", "", plan.String(), true, nil)
	if r.res.Status != result.Passed {
		for _, s := range r.res.Steps {
			if s.Status != result.Passed {
				t.Errorf("%s: %s %s", s.Name, s.Status, s.Error)
			}
		}
		t.Fatalf("run: %s %s", r.res.Status, r.res.Error)
	}
	for i, s := range scripts {
		want := string(sh(t, "-c", s))
		if got := r.step(t, fmt.Sprintf("script %d", i)).Output; got != want {
			t.Errorf("script %q on the board printed %q, want %q", s, got, want)
		}
	}
}

func TestRunExitCodeAndOutputChecks(t *testing.T) {
	r := execute(t, "", "", head+login+`  - name: status 3 expected
    run: {command: "sh -c 'exit 3'", exit-code: 3}
  - name: output matches
    run: {command: "echo image demo-42", expect-output: 'demo-\d+'}
  - name: output forbidden
    continue-on-error: true
    run: {command: "echo all ok; echo ERROR: disk", fail-output: "ERROR: .*"}
  - name: wrong status
    continue-on-error: true
    run: "echo last words; false"
  - name: syntax error
    continue-on-error: true
    timeout: 20s
    run: echo "unterminated
  - name: script starting with a dash
    continue-on-error: true
    timeout: 20s
    run: "-x"
  - name: shell state persists
    run: {command: "cd /; X=kept; export X", exit-code: 0}
  - name: state seen
    run: {command: 'echo "$X in $PWD"', expect-output: '(?m)^kept in /$'}
`, true, nil)
	for name, want := range map[string]result.Status{
		"status 3 expected": result.Passed, "output matches": result.Passed,
		"output forbidden": result.Failed, "wrong status": result.Failed, "syntax error": result.Failed,
		"script starting with a dash": result.Failed,
		"shell state persists":        result.Passed, "state seen": result.Passed,
	} {
		if s := r.step(t, name); s.Status != want {
			t.Errorf("step %q: %s (%s), want %s", name, s.Status, s.Error, want)
		}
	}
	if e := r.step(t, "output forbidden").Error; !strings.Contains(e, `"ERROR: disk"`) {
		t.Errorf("fail-output error: %q", e)
	}
	if e := r.step(t, "syntax error").Error; !strings.Contains(e, "status 2") {
		t.Errorf("a syntax error should fail the step at once with status 2, got %q", e)
	}
	if e := r.step(t, "script starting with a dash").Error; !strings.Contains(e, "status 127") {
		t.Errorf("running -x: want status 127 (command not found), got %q", e)
	}
	if e := r.step(t, "wrong status").Error; !strings.Contains(e, "status 1 (expected 0)") || !strings.Contains(e, "last words") {
		t.Errorf("exit status error: %q", e)
	}
}

// TestRunLongScript types a script longer than a tty line (4095 bytes) and
// than BusyBox's line editor takes (1024).
func TestRunLongScript(t *testing.T) {
	var b strings.Builder
	b.WriteString("s=0\n")
	for i := 1; i <= 400; i++ {
		fmt.Fprintf(&b, "s=$((s + %d)) # %s\n", i, strings.Repeat("%'\\", 3))
	}
	b.WriteString("x='" + strings.Repeat("y", 6000) + "'\n")
	b.WriteString(`printf 'sum=%s len=%s\n' "$s" "${#x}"`)
	r := execute(t, "", "", head+login+fmt.Sprintf("  - name: long\n    timeout: 30s\n    run:\n      command: %q\n      expect-output: '^sum=80200 len=6000\\n$'\n", b.String()), true, nil)
	if s := r.step(t, "long"); s.Status != result.Passed {
		t.Errorf("long script (%d bytes): %s %s; output %q", b.Len(), s.Status, s.Error, s.Output)
	}
}

// TestRunSecretInLongScript checks a long value holding a secret never
// shows the secret, whole or in part, wherever the value is cut.
func TestRunSecretInLongScript(t *testing.T) {
	secret := "s3cr%t\\VALUE-42-" + strings.Repeat("k", 40)
	for _, pad := range []int{0, 300, 660, 680, 700} {
		t.Run(fmt.Sprint(pad), func(t *testing.T) {
			// The secret reaches the command through env, inside a long value
			// that is typed in pieces.
			val := strings.Repeat("p", pad) + "${{ params.token }}" + strings.Repeat("q", 2000)
			plan := head + "params:\n  token: {type: string, secret: true}\n" + login +
				fmt.Sprintf("  - name: secret\n    timeout: 30s\n    run: {command: 'echo \"${#Y}\"', env: {Y: %q}, expect-output: '^%d$'}\n", val, pad+len(secret)+2000)
			r := execute(t, "", "", plan, true, map[string]string{"token": secret})
			if s := r.step(t, "secret"); s.Status != result.Passed {
				t.Fatalf("%s %s", s.Status, s.Error)
			}
			clog := r.consoleLog(t)
			// Typed in pieces, the values are not echoed at all (stty -echo):
			// no prompt can land inside a secret's echo.
			if strings.Contains(clog, strings.Repeat("q", 100)) {
				t.Errorf("console.log shows the echo of a value typed in pieces")
			}
			for _, part := range []string{"VALUE-42", strings.Repeat("k", 10)} {
				if strings.Contains(clog, part) {
					t.Errorf("console.log shows %q of the secret", part)
				}
			}
		})
	}
}

// TestRunAfterATimeout checks the shell takes the next command after a
// step timed out and was interrupted with Ctrl-C.
func TestRunAfterATimeout(t *testing.T) {
	var plan strings.Builder
	plan.WriteString(head + login)
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&plan, "  - name: hang %d\n    continue-on-error: true\n    timeout: 500ms\n    run: sleep 30\n", i)
		fmt.Fprintf(&plan, "  - name: next %d\n    timeout: 10s\n    run: {command: 'echo next-$((%d+1))', expect-output: next-%d}\n", i, i, i+1)
		fmt.Fprintf(&plan, "  - name: idle %d\n    continue-on-error: true\n    timeout: 500ms\n    run: read x\n", i)
	}
	plan.WriteString("  - name: last\n    timeout: 10s\n    run: echo last\n")
	r := execute(t, "", "", plan.String(), true, nil)
	for _, s := range r.res.Steps {
		if strings.HasPrefix(s.Name, "next") || s.Name == "last" {
			if s.Status != result.Passed {
				t.Errorf("%s after an interrupted step: %s %s", s.Name, s.Status, s.Error)
			}
		}
	}
}
