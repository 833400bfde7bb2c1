package redact

import (
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func TestMasksLongestFirst(t *testing.T) {
	var r Redactor
	r.Add("pw12", "pw12-long-secret", "")
	if got := r.String("a pw12-long-secret and pw12"); got != "a *** and ***" {
		t.Fatalf("got %q", got)
	}
	var none *Redactor
	if none.String("x") != "x" {
		t.Fatal("nil redactor must pass text through")
	}
}

func TestMasksEscapedForms(t *testing.T) {
	var r Redactor
	r.Add(`p"w<&`)
	for _, in := range []string{`raw p"w<& end`, `{"v":"p\"w\u003c\u0026"}`, `{"v":"p\"w<&"}`, `<x v="p&#34;w&lt;&amp;"/>`} {
		if got := r.String(in); strings.Contains(got, "w<") || strings.Contains(got, `w\u003c`) || strings.Contains(got, "w&lt;") {
			t.Errorf("%q -> %q: secret left", in, got)
		}
	}
}

func TestRedactor(t *testing.T) {
	var zero Redactor
	if zero.String("a secret") != "a secret" || (*Redactor)(nil).String("x") != "x" {
		t.Errorf("the zero or nil Redactor changed text")
	}
	r := &Redactor{}
	r.Add("", "pass", "password1", "pass")
	if got := r.String("password1 and pass and passw"); got != "*** and *** and ***w" {
		t.Errorf("masked: %q", got)
	}
	if r.MaxLen() != len("password1") {
		t.Errorf("MaxLen %d", r.MaxLen())
	}
	r.AddForms(func(s string) string { return strings.ToUpper(s) })
	if got := r.String("PASSWORD1 PASS pass"); got != "*** *** ***" {
		t.Errorf("forms: %q", got)
	}
	// Forms derive from the secrets only, never from earlier forms, so
	// calling AddForms per command does not pile them up.
	r2 := &Redactor{}
	r2.Add("s3cr3t")
	for i := 0; i < 3; i++ {
		r2.AddForms(func(s string) string { return s + "!" })
	}
	if got := r2.String("s3cr3t!!"); got != "***!" {
		t.Errorf("a form of a form was masked: %q", got)
	}
}

func TestRedactorConcurrent(t *testing.T) {
	r := &Redactor{}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				r.Add("s3cr3t")
				r.AddForms(func(s string) string { return s + "!" })
				if strings.Contains(r.String("x s3cr3t x"), "s3cr3t") {
					t.Error("secret not masked")
					return
				}
			}
		}()
	}
	wg.Wait()
}

const pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDzd2Vqc2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0AAAAkAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"

// Issue 11, item 1: line-oriented output shows a multi-line secret one
// line at a time; each line is masked, and the whole.
func TestMultiLineSecret(t *testing.T) {
	var r Redactor
	r.Add(pem)
	lines := strings.Split(strings.TrimSpace(pem), "\n")
	for _, l := range lines {
		if got := r.String("| " + l); got != "| ***" {
			t.Errorf("line %q -> %q", l, got)
		}
	}
	if got := r.String("key:\n" + pem + "end"); got != "key:\n***end" {
		t.Errorf("whole: %q", got)
	}
	crlf := strings.ReplaceAll(pem, "\n", "\r\n")
	if got := r.String(crlf); strings.Contains(got, "b3Blbn") {
		t.Errorf("CRLF form: %q", got)
	}
	// JSON-escaped whole (a --output json event, ansible's JSON results)
	if got := r.String(jsonEscaped(pem, true)); got != "***" {
		t.Errorf("JSON form: %q", got)
	}
}

// Issue 11, item 3: a secret cut between two writes is masked whole, and
// only a possible start of a secret is held back.
func TestStreamSplitSecret(t *testing.T) {
	var r Redactor
	r.Add("hunter2-secret")
	s := r.Stream()
	var out strings.Builder
	out.WriteString(s.Write("login ok\nyour pass is hunter2-"))
	if s.Held() != len("hunter2-") {
		t.Errorf("held %d bytes, want the possible start of the secret", s.Held())
	}
	out.WriteString(s.Write("sec"))
	out.WriteString(s.Write("ret and more\nprompt# "))
	if s.Held() != 0 {
		t.Errorf("held %d bytes of text that cannot start a secret", s.Held())
	}
	out.WriteString(s.Flush())
	if got := out.String(); got != "login ok\nyour pass is *** and more\nprompt# " {
		t.Errorf("stream: %q", got)
	}
	// one byte at a time, with a multi-line secret
	r.Add(pem)
	s = r.Stream()
	out.Reset()
	in := "before\n" + pem + "after hunter2-secret\n"
	for i := 0; i < len(in); i++ {
		out.WriteString(s.Write(in[i : i+1]))
	}
	out.WriteString(s.Flush())
	if got := out.String(); got != "before\n***after ***\n" {
		t.Errorf("byte by byte: %q", got)
	}
	// a new secret added while streaming is masked from then on
	s = r.Stream()
	out.Reset()
	out.WriteString(s.Write("x new-secret-1 y "))
	r.Add("new-secret-2")
	out.WriteString(s.Write("new-secret-2 z"))
	out.WriteString(s.Flush())
	if got := out.String(); got != "x new-secret-1 y *** z" {
		t.Errorf("added later: %q", got)
	}
}

// Issue 11, item 4: a tail cut from a longer text masks before it cuts:
// no piece of a secret the cut went through is shown.
func TestTailMasksBeforeCutting(t *testing.T) {
	var r Redactor
	secret := "abcdefghijklmnopqrstuvwxyz01234" // 31 characters
	r.Add(secret)
	text := strings.Repeat("boot log line\n", 20) + "password: " + secret + "\nlogin: "
	for n := 1; n < 60; n++ {
		got := r.Tail(text, n)
		for i := 0; i+MinLen <= len(secret); i++ {
			if strings.Contains(got, secret[i:i+MinLen]) {
				t.Fatalf("Tail(%d) = %q shows a piece of the secret", n, got)
			}
		}
		if len(got) > n+len(Mask) && n > 10 {
			t.Errorf("Tail(%d) = %q: too long", n, got)
		}
	}
	if got := r.Tail(text[len(text)-40:], 10); got != "\nlogin: " && got != "***\nlogin: " {
		t.Errorf("tail: %q", got)
	}
	// the start of the text may be the end of a secret cut off before it
	if got := r.Tail(secret[5:]+"\nlogin: ", 100); strings.Contains(got, "xyz") {
		t.Errorf("the visible end of a secret cut off before the text: %q", got)
	}
}

// Issue 11, item 5: secrets with quotes in XML and HTML, as ansible's
// JUnit callback (Python's ElementTree), Go and HTML writers escape them.
func TestXMLForms(t *testing.T) {
	var r Redactor
	secret := `p"a's<w>&\rd` + "\t!"
	r.Add(secret)
	for _, in := range []string{
		`<failure message="p&quot;a's&lt;w&gt;&amp;\rd&#09;!">`,
		`<x>p"a's&lt;w&gt;&amp;\rd` + "\t!</x>",
		`p&quot;a&apos;s&lt;w&gt;&amp;\rd` + "\t!",
		`p&#34;a&#39;s&lt;w&gt;&amp;\rd` + "\t!",
		`p&#34;a&#39;s&lt;w&gt;&amp;\rd&#x9;!`,
		`p\"a's\u003cw\u003e\u0026\\rd\t!`,
		`p\"a's<w>&\\rd\t!`,
		`&quot;msg&quot;: &quot;p\&quot;a's&lt;w&gt;&amp;\\rd\t!&quot;`, // JSON in XML text (ansible's junit)
	} {
		if got := r.String(in); strings.Contains(got, "s&lt;w") || strings.Contains(got, "s<w") || strings.Contains(got, `s\u003cw`) {
			t.Errorf("%q -> %q: secret left", in, got)
		}
	}
}

// Issue 11, item 6: too short secrets are not registered (they would
// mangle every word), and binary content keeps its length and every byte
// that is not a secret.
func TestShortSecretsAndBinary(t *testing.T) {
	var r Redactor
	r.Add("a", "pi", "xyz")
	if r.MaxLen() != 0 || r.String("apiVersion: jsplan.dev/v1") != "apiVersion: jsplan.dev/v1" {
		t.Errorf("short secrets were registered: %q", r.String("apiVersion: jsplan.dev/v1"))
	}
	if !TooShort("pi") || !TooShort("äöü") || TooShort("") || TooShort("pass") {
		t.Error("TooShort")
	}
	r.Add("s3cret")
	bin := []byte("\x7fELF\x00\x01pi\x00s3cret\x00\xff\xfe")
	got := r.Bytes(bin)
	if want := []byte("\x7fELF\x00\x01pi\x00******\x00\xff\xfe"); string(got) != string(want) {
		t.Errorf("binary: %q", got)
	}
	if string(r.Bytes([]byte("text s3cret\n"))) != "text ***\n" {
		t.Errorf("text file: %q", r.Bytes([]byte("text s3cret\n")))
	}
	if string(r.Bytes([]byte("\x00\x01 no secret"))) != "\x00\x01 no secret" {
		t.Error("binary without a secret changed")
	}
}

// A stream written in any pieces masks like String on the whole text (when
// the text does not end in the beginning of a secret).
func TestStreamMatchesString(t *testing.T) {
	var r Redactor
	r.Add("abcabd-secret", "secret-xyz", "multi\nline-secret\n", "aaaa")
	alphabet := []string{"abc", "abd", "-secret", "secret", "-xyz", "multi\n", "line-", "aa", "\n", "x", "a"}
	rng := uint64(1)
	next := func(n int) int {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for j := next(30); j >= 0; j-- {
			b.WriteString(alphabet[next(len(alphabet))])
		}
		b.WriteString(".")
		text := b.String()
		s := r.Stream()
		var out strings.Builder
		for rest := text; len(rest) > 0; {
			n := 1 + next(min(len(rest), 9))
			out.WriteString(s.Write(rest[:n]))
			rest = rest[n:]
		}
		out.WriteString(s.Flush())
		if want := r.String(text); out.String() != want {
			t.Fatalf("%q:\nstream %q\nString %q", text, out.String(), want)
		}
	}
}

// Issue 22, item 5: the forms Python prints a secret in, as ansible does:
// repr (a list: ['Str\'ong"Pass']) and html.escape, alone and combined.
func TestMasksPythonForms(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	for _, secret := range []string{`Str'ong"Pass`, `it's&<mine>`, `back\slash'"` + "\ttab", `only"double`} {
		out, err := exec.Command(py, "-c", `import sys, html
s = sys.argv[1]
print(repr([s]))
print(repr(s))
print(html.escape(s))
print(html.escape(repr([s])))
print(html.escape(s, quote=False))`, secret).Output()
		if err != nil {
			t.Fatal(err)
		}
		var r Redactor
		r.Add(secret)
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if got := r.String(line); !strings.Contains(got, Mask) || strings.Contains(got, "ong") && strings.Contains(secret, "ong") {
				t.Errorf("secret %q: python printed %q, masked %q", secret, line, got)
			}
		}
	}
}

// Issue 22, item 8: a secret of white space (or nearly) is too short: it
// would mask the spaces of every line.
func TestWhitespaceSecretTooShort(t *testing.T) {
	for _, v := range []string{"    ", "\t\t\t\t", "  a  ", " ab\n"} {
		if !TooShort(v) {
			t.Errorf("%q is not too short", v)
		}
		var r Redactor
		r.Add(v)
		if got := r.String("a    line\twith  spaces"); got != "a    line\twith  spaces" {
			t.Errorf("secret %q masked %q", v, got)
		}
	}
	if TooShort("  abcd  ") {
		t.Errorf("a secret of 4 characters with spaces around is too short")
	}
}
