package steps_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// pieces returns every substring of s of length n (to look for a secret
// shown in part).
func pieces(s string, n int) []string {
	var out []string
	for i := 0; i+n <= len(s); i += n / 2 {
		out = append(out, s[i:i+n])
	}
	return out
}

// noPiece fails when text shows any 8-byte piece of secret.
func noPiece(t *testing.T, where, text, secret string) {
	t.Helper()
	for _, line := range strings.Split(secret, "\n") {
		for _, p := range pieces(line, 8) {
			if strings.Contains(text, p) {
				t.Errorf("%s shows %q of the secret", where, p)
				return
			}
		}
	}
}

// Issue 11, item 8: values reach a run command through env, quoted on the
// way whatever they hold, exported for that command only; a secret passed
// this way never shows in the console log or the reports.
func TestRunEnvPassesValuesSafely(t *testing.T) {
	odd := "it's \"quoted\" $(touch /tmp/jsplan-pwned) `id` %s \\ 100%\nsecond line\n\n"
	secret := "pa'ss\"w0rd-$(reboot)-%d\\x"
	long := strings.Repeat("L0ng-S3cret-", 250) // 3000 bytes: typed in pieces
	plan := head + "params:\n  odd: {type: string}\n  token: {type: string, secret: true}\n  long: {type: string, secret: true}\n" + login +
		"  - name: values\n    timeout: 30s\n    run:\n      command: printf '[%s]' \"$ODD\" \"$TOKEN\"; echo \"${#LONG}\"\n" +
		"      env: {ODD: '${{ params.odd }}', TOKEN: '${{ params.token }}', LONG: '${{ params.long }}'}\n" +
		"  - name: gone after\n    timeout: 30s\n    run: {command: 'echo \"[${ODD-unset}][${TOKEN-unset}]\"', expect-output: '^\\[unset\\]\\[unset\\]$'}\n"
	r := execute(t, "", "", plan, true, map[string]string{"odd": odd, "token": secret, "long": long})
	s := r.step(t, "values")
	if s.Status != result.Passed {
		t.Fatalf("values: %s %s", s.Status, s.Error)
	}
	if want := "[" + odd + "][***]3000\n"; s.Output != want {
		t.Errorf("output %q, want %q", s.Output, want)
	}
	if g := r.step(t, "gone after"); g.Status != result.Passed {
		t.Errorf("env stays set after the command: %s %s %q", g.Status, g.Error, g.Output)
	}
	if _, err := os.Stat("/tmp/jsplan-pwned"); err == nil {
		os.Remove("/tmp/jsplan-pwned")
		t.Errorf("a value was run as a command")
	}
	clog := r.consoleLog(t)
	if testing.Verbose() {
		t.Log(clog)
	}
	for _, sec := range []string{secret, long} {
		noPiece(t, "console.log", clog, sec)
		for _, f := range []string{"report.json"} {
			b, _ := os.ReadFile(filepath.Join(r.artifacts, f))
			noPiece(t, f, string(b), sec)
		}
	}
	if !strings.Contains(clog, "***") {
		t.Error("console.log shows no mask")
	}
}

// Issue 11, item 8: a secret pasted into a run command is refused when the
// plan is loaded, with a hint to use env.
func TestRunRefusesPastedSecret(t *testing.T) {
	for _, cmd := range []string{
		"run: echo ${{ params.token }}",
		"run: {command: \"echo '${{ params.token }}'\"}",
	} {
		plan := head + "params:\n  token: {type: string, secret: true}\nsteps:\n  - " + cmd + "\n"
		for _, mode := range []engine.Mode{engine.ModeValidate, engine.ModeRun} {
			opts := engine.Options{Mode: mode}
			if mode == engine.ModeRun {
				opts.Values = map[string]engine.Value{"token": {Text: "s3cret-value"}}
			}
			l := engine.NewLoader(opts)
			l.LoadPlanBytes(filepath.Join(t.TempDir(), "plan.yaml"), []byte(plan))
			got := fmt.Sprint(l.Diagnostics())
			if !strings.Contains(got, "params.token is a secret") || !strings.Contains(got, "env:") {
				t.Errorf("%s (mode %v): diagnostics %s", cmd, mode, got)
			}
			if strings.Contains(got, "s3cret-value") {
				t.Errorf("the diagnostic shows the secret: %s", got)
			}
		}
	}
}

// Issue 11, items 2 and 6: collect over the console keeps the transfer (the
// file's base64, which decodes to any secret in it) out of console.log, and
// masks a binary file's secret without changing any other byte or its
// length.
func TestCollectConsoleKeepsSecretsOut(t *testing.T) {
	secret := "s3cret-pw"
	plan := head + "params:\n  token: {type: string, secret: true}\n" + login +
		"  - run: {command: 'printf \"\\000\\001ab\\377 %s \\000\" \"$T\" > bin.dat; printf \"\\000\\001ab\\377\" > plain.dat; printf \"conf: password=%s\\n\" \"$T\" > app.conf', env: {T: '${{ params.token }}'}}\n" +
		"  - name: collect\n    collect: {paths: [bin.dat, plain.dat, app.conf], to: files}\n"
	r := execute(t, "", "", plan, true, map[string]string{"token": secret})
	if s := r.step(t, "collect"); s.Status != result.Passed {
		t.Fatalf("collect: %s %s", s.Status, s.Error)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(r.artifacts, "files", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := read("bin.dat"), "\x00\x01ab\xff *********"+" \x00"; got != want {
		t.Errorf("bin.dat: %q, want %q", got, want)
	}
	if got := read("plain.dat"); got != "\x00\x01ab\xff" {
		t.Errorf("plain.dat was changed: %q", got)
	}
	if got := read("app.conf"); got != "conf: password=***\n" {
		t.Errorf("app.conf: %q", got)
	}
	clog := r.consoleLog(t)
	for _, content := range []string{"conf: password=" + secret + "\n", "\x00\x01ab\xff " + secret + " \x00"} {
		if b64 := base64.StdEncoding.EncodeToString([]byte(content)); strings.Contains(clog, b64[:12]) {
			t.Errorf("console.log holds the base64 of a collected file:\n%s", clog)
		}
	}
	if strings.Count(clog, "transferred over the console") != 3 {
		t.Errorf("console.log lacks the transfer notes:\n%s", clog)
	}
}

// Issue 11, item 3: a secret the console log cuts (the 4096-byte line cut)
// or that the board prints slowly (across the idle flush) is masked whole.
func TestConsoleLogSecretAcrossLines(t *testing.T) {
	secret := "Split-Secret-0123456789abcdef"
	plan := head + "params:\n  token: {type: string, secret: true}\n" + login +
		"  - run: {command: 'printf \"%4090s%s tail\\n\" x \"$T\"; printf \"pw: %.9s\" \"$T\"; sleep 1; printf \"%s done\\n\" \"${T#?????????}\"', env: {T: '${{ params.token }}'}}\n"
	r := execute(t, "", "", plan, true, map[string]string{"token": secret})
	if r.res.Status != result.Passed {
		t.Fatalf("%s: %s", r.res.Status, r.res.Error)
	}
	clog := r.consoleLog(t)
	noPiece(t, "console.log", clog, secret)
	// The line is cut after the mask: 4090 bytes of padding, ***, " ta".
	for _, want := range []string{"x*** ta\n", "*** done"} {
		if !strings.Contains(clog, want) {
			t.Errorf("console.log lacks %q", want)
		}
	}
}

// A run step's env names must be shell variable names.
func TestRunEnvNames(t *testing.T) {
	plan := head + "steps:\n  - run: {command: 'echo \"$A\"', env: {A: x, 1B: y, C-D: z}}\n"
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	l.LoadPlanBytes(filepath.Join(t.TempDir(), "plan.yaml"), []byte(plan))
	if got := fmt.Sprint(l.Diagnostics()); !strings.Contains(got, `"1B" is not a shell variable name`) {
		t.Errorf("diagnostics: %s", got)
	}
}

// Issue 11, item 8: a secret handed to a used plan that pastes it into a
// run command is refused too when the plan is loaded for a run.
func TestRunRefusesSecretThroughUse(t *testing.T) {
	dir := t.TempDir()
	lib := head + "params:\n  val: {type: string}\nsteps:\n  - run: echo ${{ params.val }}\n"
	if err := os.WriteFile(filepath.Join(dir, "lib.yaml"), []byte(lib), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := head + "params:\n  token: {type: string, secret: true}\nsteps:\n  - use: {plan: lib.yaml, with: {val: '${{ params.token }}'}}\n"
	l := engine.NewLoader(engine.Options{Mode: engine.ModeRun, Values: map[string]engine.Value{"token": {Text: "s3cret-value"}}})
	l.LoadPlanBytes(filepath.Join(dir, "plan.yaml"), []byte(plan))
	got := fmt.Sprint(l.Diagnostics())
	if !strings.Contains(got, "params.val is a secret") || strings.Contains(got, "s3cret-value") {
		t.Errorf("diagnostics: %s", got)
	}
}
