package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKey is a multi-line secret (an SSH key's shape).
const testKey = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDzd2VqK2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0AAAAkAAAAA
AAAAtzc2gtZWQyNTUxOQAAACDzd2VqK2VjcmV0c2VjcmV0c2VjcmV0
-----END OPENSSH PRIVATE KEY-----
`

// secretPieces are the parts of a secret nothing may show: every line of
// it long enough to tell, and 8-byte pieces of each.
func secretPieces(secret string) []string {
	var out []string
	for _, l := range strings.Split(secret, "\n") {
		if strings.HasPrefix(l, "-----") || len(l) < 8 {
			continue // PEM armour lines are not secret
		}
		for i := 0; i+8 <= len(l); i += 4 {
			out = append(out, l[i:i+8])
		}
	}
	return out
}

// noSecretAnywhere fails when the artifacts or the output show a piece of
// secret.
func noSecretAnywhere(t *testing.T, art string, r cliRun, secret string) {
	t.Helper()
	for _, p := range secretPieces(secret) {
		if hits := grepTree(t, art, p); len(hits) > 0 {
			t.Errorf("%q of the secret in %v", p, hits)
			return
		}
		if strings.Contains(r.stdout, p) || strings.Contains(r.stderr, p) {
			t.Errorf("%q of the secret in the output:\n%s", p, r)
			return
		}
	}
}

// Issue 11, item 1: a multi-line secret printed on the board's console, by
// a local command and in a failure message is masked in console.log, the
// JSON events and the reports; no line of it shows.
func TestApplyMultiLineSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	params := e.write("params.yaml", "key: |\n  "+strings.ReplaceAll(strings.TrimSuffix(testKey, "\n"), "\n", "\n  ")+"\n")
	pf := e.write("plan.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
name: multi-line
params:
  key: {type: string, secret: true, required: true}
steps:
  - power: on
  - wait-for-login: {username: root, password: sim-password}
  - name: board prints the key
    run: {command: 'printf "%s\n" "$KEY"; printf "%s" "$KEY" | tr -d "\n"; echo', env: {KEY: "${{ params.key }}"}}
  - name: host prints the key
    local: {command: 'printf "%s\n" "$KEY"; printf "%s\n" "$KEY" >&2', env: {KEY: "${{ params.key }}"}}
  - name: key in a failure
    continue-on-error: true
    local: {command: 'printf "%s\n" "$KEY"; exit 3', env: {KEY: "${{ params.key }}"}}
finally:
  - power: off
`)
	r := e.run(e.applyArgs(pf, e.art, "--params-file", params, "--output", "json")...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	noSecretAnywhere(t, e.art, r, testKey)
	clog, _ := os.ReadFile(filepath.Join(e.art, "console.log"))
	if !strings.Contains(string(clog), "***") {
		t.Errorf("console.log shows no mask")
	}
	if !strings.Contains(r.stdout, `"| ***"`) {
		t.Errorf("the local lines are not masked events:\n%s", r.stdout)
	}
}

// Issue 11, item 4: a console wait that times out quotes what the console
// last printed; the quote is masked before it is cut, so a secret the cut
// goes through shows in no part in the reports or the events.
func TestApplyTimeoutTailMasked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret := "Tail-Secret-abcdefghijklmnopqrs" // 31 characters
	var plan strings.Builder
	plan.WriteString(`apiVersion: jsplan.dev/v1
kind: Plan
name: tail
params:
  token: {type: string, secret: true, required: true}
steps:
  - power: on
  - wait-for-login: {username: root, password: sim-password}
`)
	// The 200-byte quote starts inside the secret for these fillers.
	for _, n := range []int{135, 145, 155} {
		plan.WriteString("  - run: {command: 'printf \"%s" + strings.Repeat("f", n) + "\\n\" \"$T\"', env: {T: \"${{ params.token }}\"}}\n")
		plan.WriteString("  - {console: {expect: never-printed}, timeout: 300ms, continue-on-error: true}\n")
	}
	plan.WriteString("finally:\n  - power: off\n")
	pf := e.write("plan.yaml", plan.String())
	r := e.run(e.applyArgs(pf, e.art, "--set", "token="+secret, "--output", "json")...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	if !strings.Contains(r.stdout, "the console last printed") {
		t.Fatalf("no timeout message in the events:\n%s", r.stdout)
	}
	noSecretAnywhere(t, e.art, r, secret)
}

// Issue 11, items 6 and 7: a secret parameter's value is never printed in a
// diagnostic (Go-quoted or otherwise), and a secret too short to mask is
// refused, from --set, a params file or a default.
func TestSecretParamDiagnostics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("plan.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
name: secret-params
params:
  pin: {type: integer, secret: true}
  pw: {type: string, secret: true}
  mode: {type: enum, values: [a, b], secret: true}
steps:
  - log: hello
`)
	bad := `s3cr"et\x`
	params := e.write("params.yaml", "pin: '"+bad+"'\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "pin=" + bad}, "the secret value is not an integer"},
		{[]string{"--params-file", params}, "the secret value is not an integer"},
		{[]string{"--set", "mode=" + bad}, "the secret value is not one of: a, b"},
		{[]string{"--set", "pw=ab"}, "shorter than 4 characters"},
	} {
		for _, cmd := range []string{"render", "apply"} {
			args := append([]string{cmd, pf}, tc.args...)
			if cmd == "apply" {
				args = append(e.applyArgs(pf, e.art), tc.args...)
			}
			r := e.run(args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%v: want exit 2 and %q, got %s", args, tc.want, r)
			}
			for _, leak := range []string{"s3cr", `\"et`, "ab\"", "=ab"} {
				if strings.Contains(r.stderr+r.stdout, leak) {
					t.Errorf("%v: the output shows %q:\n%s", args, leak, r)
				}
			}
		}
	}
	short := e.write("short.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: short\nparams:\n  pw: {type: string, secret: true, default: 'x'}\nsteps:\n  - log: hello\n")
	if r := e.run("validate", short); r.code != 2 || !strings.Contains(r.stdout+r.stderr, "short.yaml:5:") || !strings.Contains(r.stdout+r.stderr, "shorter than 4 characters") {
		t.Errorf("a short secret default: %s", r)
	}
	// A secret of the minimum length masks whole words only where they
	// are the secret; nothing else in the rendered plan changes.
	r := e.run("render", pf, "--set", "pw=pi12")
	if r.code != 0 || !strings.Contains(r.stdout, "apiVersion: jsplan.dev/v1") || strings.Contains(r.stdout, "pi12") {
		t.Errorf("render: %s", r)
	}
}

// Issue 11, item 16: --set takes a value whole, commas included, and a
// parameter set twice is an error, not the last value silently.
func TestSetTakesValuesWhole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("plan.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: set\nparams:\n  image-id: {type: string}\n  other: {type: string, default: x}\nsteps:\n  - log: \"id=[${{ params.image-id }}]\"\n")
	for _, tc := range []struct{ arg, want string }{
		{"image-id=a,b", "id=[a,b]"},
		{"image-id=a,image-id=zzz", "id=[a,image-id=zzz]"},
		{"image-id=,", "id=[,]"},
	} {
		r := e.run("render", pf, "--set", tc.arg, "--set", "other=y,z")
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("--set %s: want %q, got %s", tc.arg, tc.want, r)
		}
	}
	r := e.run("render", pf, "--set", "image-id=a", "--set", "image-id=zzz")
	if r.code != 2 || !strings.Contains(r.stderr, `parameter "image-id" is set twice`) {
		t.Errorf("a parameter set twice: %s", r)
	}
	// apply too (the Tekton Task passes its params this way)
	r = e.run(e.applyArgs(pf, e.art, "--set", "image-id=a,b,c")...)
	if r.code != 0 || !strings.Contains(r.stdout, "id=[a,b,c]") {
		t.Errorf("apply: %s", r)
	}
}

// Issue 11, item 6: a password too short to mask (from the inventory or
// written in the plan) is not masked, and the run says so; nothing else in
// the output is mangled.
func TestShortPasswordWarns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	boards := e.write("short-boards.yaml", strings.Replace(testBoards, "sim-password", "pi", 1))
	pf := e.write("plan.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nname: short\nsteps:\n  - power: on\n  - wait-for-login: {username: root, password: pi}\n  - run: echo apiVersion pipe\nfinally:\n  - power: off\n")
	r := e.run(e.applyArgs(pf, e.art, "--boards", boards)...)
	if r.code != 0 {
		t.Fatalf("want exit 0, got %s", r)
	}
	if !strings.Contains(r.stdout, "shorter than 4 characters is not masked") {
		t.Errorf("no warning:\n%s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(e.art, "console.log")); !strings.Contains(string(b), "apiVersion pipe") {
		t.Errorf("console.log was mangled:\n%s", b)
	}
}
