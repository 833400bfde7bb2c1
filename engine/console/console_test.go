package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/jsplan/jsplan/engine/redact"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// line is the board end of a console: what the test writes to w, the
// session reads; what the session writes is kept in sent.
type line struct {
	r    *io.PipeReader
	w    *io.PipeWriter
	mu   sync.Mutex
	sent bytes.Buffer
}

func newLine() *line {
	r, w := io.Pipe()
	return &line{r: r, w: w}
}

func (l *line) Read(p []byte) (int, error) { return l.r.Read(p) }

func (l *line) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent.Write(p)
}

func (l *line) Close() error { return l.r.CloseWithError(errClosedByUs) }

// session opens a session on a new line and closes both at the end of
// the test.
func session(t testing.TB, opts Options) (*Session, *line) {
	t.Helper()
	l := newLine()
	s := New(l, opts)
	t.Cleanup(func() {
		l.w.Close()
		s.Close()
	})
	return s, l
}

// feed writes chunks one Write each, so the reader sees them as separate
// reads (a pipe returns at most one Write per Read).
func feed(t testing.TB, l *line, chunks ...string) {
	t.Helper()
	for _, c := range chunks {
		if _, err := l.w.Write([]byte(c)); err != nil {
			t.Errorf("feed: %v", err)
			return
		}
	}
}

func res(patterns ...string) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, p := range patterns {
		out = append(out, regexp.MustCompile(p))
	}
	return out
}

// expectAsync starts Expect and returns a channel with its outcome.
type outcome struct {
	m   *Match
	err error
}

func expectAsync(ctx context.Context, s *Session, patterns, failOn []*regexp.Regexp) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		m, err := s.Expect(ctx, patterns, failOn)
		ch <- outcome{m, err}
	}()
	return ch
}

// wait returns the outcome, failing the test if Expect does not return
// within a generous bound (it must end on its own).
func wait(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(30 * time.Second):
		t.Fatal("Expect did not return")
		return outcome{}
	}
}

func TestExpectAcrossChunkBoundaries(t *testing.T) {
	s, l := session(t, Options{})
	ctx := context.Background()
	ch := expectAsync(ctx, s, res(`sim login: $`), nil)
	// The prompt arrives in pieces, the first after more than a read
	// buffer of boot log.
	feed(t, l, strings.Repeat("boot log line\r\n", 3000)+"sim lo", "g", "in", ": ")
	o := wait(t, ch)
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.m.Text != "sim login: " || o.m.Index != 0 {
		t.Errorf("match %q index %d", o.m.Text, o.m.Index)
	}
	if !strings.HasSuffix(o.m.Before, "boot log line\r\n") || len(o.m.Before) > DefaultWindow {
		t.Errorf("Before has %d bytes, ends %q", len(o.m.Before), o.m.Before[max(0, len(o.m.Before)-20):])
	}

	// What was matched is consumed: the same pattern waits for new text.
	ch = expectAsync(ctx, s, res(`login: `), nil)
	feed(t, l, "Password: ", "\r\nLogin incorrect\r\nsim ", "login: ")
	o = wait(t, ch)
	if o.err != nil || o.m.Before != "Password: \r\nLogin incorrect\r\nsim " {
		t.Errorf("second Expect: %+v %v", o.m, o.err)
	}
}

func TestExpectSubmatches(t *testing.T) {
	s, l := session(t, Options{})
	ch := expectAsync(context.Background(), s, res(`image (\S+) (ok|bad)?`), nil)
	feed(t, l, "booting image demo-12", "34 \r\n")
	o := wait(t, ch)
	if o.err != nil || len(o.m.Groups) != 2 || o.m.Groups[0] != "demo-1234" || o.m.Groups[1] != "" {
		t.Errorf("groups %q, %v", o.m.Groups, o.err)
	}
}

func TestExpectFirstMatchByPositionWins(t *testing.T) {
	s, l := session(t, Options{})
	ctx := context.Background()
	feed(t, l, "aaa BETA bbb ALPHA ccc\n")
	// Whatever the order of the patterns, the earliest text wins.
	for i, want := range []struct {
		index int
		text  string
	}{{1, "BETA"}, {0, "ALPHA"}} {
		o := wait(t, expectAsync(ctx, s, res(`ALPHA`, `BETA`), nil))
		if o.err != nil || o.m.Index != want.index || o.m.Text != want.text {
			t.Errorf("Expect %d: %+v %v, want %s (pattern %d)", i, o.m, o.err, want.text, want.index)
		}
	}
	// Nothing is left to match.
	ctx2, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if o := wait(t, expectAsync(ctx2, s, res(`ALPHA`, `BETA`), nil)); o.err == nil {
		t.Errorf("matched consumed text: %+v", o.m)
	}
}

func TestExpectFailOn(t *testing.T) {
	s, l := session(t, Options{})
	ctx := context.Background()
	ch := expectAsync(ctx, s, res(`login:`), res(`Kernel panic`))
	feed(t, l, "[ 0.6] Kernel pa", "nic - not syncing\r\nlogin:")
	o := wait(t, ch)
	var fe *FailOnError
	if !errors.As(o.err, &fe) || fe.Text != "Kernel panic" || fe.Pattern != "Kernel panic" {
		t.Fatalf("want a FailOnError, got %+v %v", o.m, o.err)
	}
	// The login prompt printed after the panic is still there; a fail-on
	// pattern printed after the expected text does not matter.
	o = wait(t, expectAsync(ctx, s, res(`login:`), res(`oops`)))
	if o.err != nil {
		t.Errorf("login after the panic: %v", o.err)
	}
	feed(t, l, "ready\r\n oops")
	if o := wait(t, expectAsync(ctx, s, res(`ready`), res(`oops`))); o.err != nil {
		t.Errorf("expected text before a fail-on pattern: %v", o.err)
	}
}

func TestSessionFailOnWithoutExpect(t *testing.T) {
	got := make(chan [2]string, 1)
	s, l := session(t, Options{FailOn: res(`Kernel panic - not syncing`), OnFail: func(p, m string) { got <- [2]string{p, m} }})
	// Split across reads and after more than the overlap of text.
	feed(t, l, strings.Repeat("x", 10000)+"Kernel panic - not ", "syncing: VFS\r\n")
	select {
	case g := <-got:
		if g[0] != "Kernel panic - not syncing" || g[1] != "Kernel panic - not syncing" {
			t.Errorf("OnFail(%q, %q)", g[0], g[1])
		}
	case <-time.After(30 * time.Second):
		t.Fatal("OnFail was not called")
	}
	// once only
	feed(t, l, "Kernel panic - not syncing again\r\n")
	_ = s
	select {
	case g := <-got:
		t.Errorf("OnFail called twice: %v", g)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestExpectTimeoutWhileOutputFlows(t *testing.T) {
	s, l := session(t, Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		chunk := []byte(strings.Repeat("flood flood flood\r\n", 100))
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := l.w.Write(chunk); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); l.w.Close(); wg.Wait() }()
	cause := errors.New("step timed out after 200ms")
	ctx, cancel := context.WithTimeoutCause(context.Background(), 200*time.Millisecond, cause)
	defer cancel()
	o := wait(t, expectAsync(ctx, s, res(`never printed`), nil))
	if !errors.Is(o.err, cause) {
		t.Errorf("want the context's cause, got %v", o.err)
	}
}

func TestWindowStaysBounded(t *testing.T) {
	s, l := session(t, Options{})
	const total = 50 << 20
	ch := expectAsync(context.Background(), s, res(`THE END`), nil)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<12) // 64 KiB
	maxCap := 0
	for n := 0; n < total; n += len(chunk) {
		feed(t, l, string(chunk))
		s.mu.Lock()
		maxCap = max(maxCap, cap(s.buf))
		if len(s.buf) > DefaultWindow {
			t.Fatalf("window holds %d bytes, more than %d", len(s.buf), DefaultWindow)
		}
		s.mu.Unlock()
	}
	feed(t, l, "THE END\r\n")
	if o := wait(t, ch); o.err != nil || o.m.Text != "THE END" {
		t.Fatalf("marker after 50 MB: %+v %v", o.m, o.err)
	}
	// append may grow the slice by one read before it is trimmed, never more.
	if limit := 2*DefaultWindow + 32<<10; maxCap > limit {
		t.Errorf("window buffer grew to %d bytes (limit %d)", maxCap, limit)
	}
	if tail := s.Tail(100); !strings.HasSuffix(tail, "THE END\r\n") || len(tail) != 100 {
		t.Errorf("Tail: %q", tail)
	}
}

func TestCapture(t *testing.T) {
	s, l := session(t, Options{Window: 1024})
	feed(t, l, "before\n")
	waitFor(t, s, "before")
	c := s.Capture(1 << 20)
	big := strings.Repeat("y", 5000) // more than the window
	feed(t, l, "one\n", big, "\ntwo\n")
	waitFor(t, s, "two")
	data, ok := c.Stop()
	if !ok || string(data) != "one\n"+big+"\ntwo\n" {
		t.Errorf("capture: ok=%v %d bytes", ok, len(data))
	}
	feed(t, l, "after\n")
	waitFor(t, s, "after")
	if again, _ := c.Stop(); len(again) != len(data) {
		t.Errorf("capture grew after Stop")
	}

	small := s.Capture(10)
	feed(t, l, "0123456789ABCDEF\n")
	waitFor(t, s, "ABCDEF")
	if data, ok := small.Stop(); ok || len(data) > 10 {
		t.Errorf("capture over its limit: ok=%v %d bytes", ok, len(data))
	}
}

func waitFor(t *testing.T, s *Session, text string) {
	t.Helper()
	o := wait(t, expectAsync(context.Background(), s, res(regexp.QuoteMeta(text)), nil))
	if o.err != nil {
		t.Fatalf("waiting for %q: %v", text, o.err)
	}
}

func TestSessionEndOfStream(t *testing.T) {
	s, l := session(t, Options{})
	ch := expectAsync(context.Background(), s, res(`never`), nil)
	feed(t, l, "last words\n")
	l.w.Close()
	o := wait(t, ch)
	if !errors.Is(o.err, ErrClosed) || !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("Expect after the end: %v, Err %v", o.err, s.Err())
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Errorf("Write after the end succeeded")
	}
	// Text received before the end can still be matched.
	if o := wait(t, expectAsync(context.Background(), s, res(`last words`), nil)); o.err != nil {
		t.Errorf("text before the end: %v", o.err)
	}
}

func TestSendPaced(t *testing.T) {
	s, l := session(t, Options{})
	text := strings.Repeat("abcdefgh", 10)
	if err := s.Send(context.Background(), []byte(text), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	got := l.sent.String()
	l.mu.Unlock()
	if got != text {
		t.Errorf("sent %q", got)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stopped")
	cancel(stop)
	if err := s.Send(ctx, []byte(text), time.Hour); !errors.Is(err, stop) {
		t.Errorf("paced Send on a cancelled context: %v", err)
	}
}

func TestLogTimestampsAndRedacts(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := &lockedBuffer{mu: &mu, b: &buf}
	red := &redact.Redactor{}
	red.Add("hunter2")
	lg := NewLog(w, time.Now(), red)
	io.WriteString(lg, "first line\r\nsecond ")
	io.WriteString(lg, "line has hunter2\r\n")
	lg.Note("step %d: %s", 3, "hunter2 in a note")
	io.WriteString(lg, "a prompt# ") // no newline: flushed when idle
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		done := strings.Contains(buf.String(), "a prompt# ")
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	io.WriteString(lg, strings.Repeat("z", 5000)+"\n")
	lg.Close()
	io.WriteString(lg, "after close\n")
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	stamp := regexp.MustCompile(`^\[ *\d+\.\d{3}\] ?`)
	want := []string{"first line", "second line has ***", "### step 3: *** in a note", "a prompt# ", strings.Repeat("z", maxLine), strings.Repeat("z", 5000-maxLine)}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		if !stamp.MatchString(l) || stamp.ReplaceAllString(l, "") != want[i] {
			t.Errorf("line %d: %q, want a timestamp and %q", i, l[:min(len(l), 60)], want[i][:min(len(want[i]), 60)])
		}
	}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// BenchmarkExpectThroughput measures how fast the session takes console
// text in while an Expect waits: 1 MiB of boot-log-like text, then the
// awaited line.
func BenchmarkExpectThroughput(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts func() Options
	}{
		{"plain", func() Options { return Options{} }},
		{"log+fail-on", func() Options {
			return Options{Log: NewLog(io.Discard, time.Now(), nil), FailOn: res(`Kernel panic`, `Oops: `, `BUG: `)}
		}},
		{"log+fail-on+secrets", func() Options {
			red := &redact.Redactor{}
			red.Add("board-password", `p"w'<&>-quoted`, "-----BEGIN KEY-----\n"+strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n", 30)+"-----END KEY-----\n")
			return Options{Log: NewLog(io.Discard, time.Now(), red), FailOn: res(`Kernel panic`, `Oops: `, `BUG: `)}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var text bytes.Buffer
			for i := 0; text.Len() < 1<<20; i++ {
				text.WriteString("[    1.234567] usb 1-1: new high-speed USB device number 2 using xhci_hcd\r\n")
			}
			payload := text.Bytes()
			pats := res(`login: $`)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				l := newLine()
				s := New(l, bc.opts())
				go func() {
					for p := payload; len(p) > 0; {
						n := min(len(p), 4096) // a pty hands out at most 4 KiB per read
						l.w.Write(p[:n])
						p = p[n:]
					}
					l.w.Write([]byte("sim login: "))
				}()
				if _, err := s.Expect(context.Background(), pats, nil); err != nil {
					b.Fatal(err)
				}
				l.w.Close()
				s.Close()
			}
		})
	}
}

// logLines returns the log's lines without timestamps.
func logLines(mu *sync.Mutex, buf *bytes.Buffer) []string {
	mu.Lock()
	defer mu.Unlock()
	stamp := regexp.MustCompile(`(?m)^\[ *\d+\.\d{3}\] ?`)
	return strings.Split(strings.TrimSuffix(stamp.ReplaceAllString(buf.String(), ""), "\n"), "\n")
}

// Issue 11, items 1 and 3: a multi-line secret, a secret cut by the 4096-byte
// line cut, and one printed slowly across an idle flush are masked whole in
// the console log.
func TestLogMasksSecretsAcrossLines(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := &lockedBuffer{mu: &mu, b: &buf}
	red := &redact.Redactor{}
	key := "-----BEGIN KEY-----\r\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ\r\nsecondlineofthekey\r\n-----END KEY-----"
	slow := "slowly-typed-secret"
	red.Add(strings.ReplaceAll(key, "\r", ""), slow, "cut-secret-0123456789")
	lg := NewLog(w, time.Now(), red)
	// the board prints the key with CRLF line ends, in pieces
	io.WriteString(lg, "cat key\r\n"+key[:30])
	io.WriteString(lg, key[30:]+"\r\n# ")
	// a line cut at 4096 bytes in the middle of a secret
	io.WriteString(lg, strings.Repeat("x", maxLine-10)+"cut-secret-0123456789 tail\r\n")
	// a secret printed slowly: the first half waits longer than the idle flush
	io.WriteString(lg, "pw: "+slow[:8])
	time.Sleep(2 * idleFlush)
	io.WriteString(lg, slow[8:]+" done\r\n")
	// the console ends in the middle of a secret
	io.WriteString(lg, "last: "+slow[:10])
	lg.Close()
	all := strings.Join(logLines(&mu, &buf), "\n")
	for _, piece := range []string{"AAAAB3", "secondline", "cut-sec", "0123456789", "slowly", "typed-secret"} {
		if strings.Contains(all, piece) {
			t.Errorf("the log shows %q:\n%s", piece, all)
		}
	}
	for _, want := range []string{"cat key", "pw: ", "*** done", "*** tail", "last: ***"} {
		if !strings.Contains(all, want) {
			t.Errorf("the log lacks %q:\n%s", want, all)
		}
	}
}

// Issue 11, item 2: while suppressed (a file transfer), console bytes stay
// out of the log; a note says what was left out.
func TestLogSuppress(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	lg := NewLog(&lockedBuffer{mu: &mu, b: &buf}, time.Now(), nil)
	io.WriteString(lg, "before\n")
	resume := lg.Suppress()
	io.WriteString(lg, "c2VjcmV0LXBhc3N3b3JkCg==\n")
	resume("collect /etc/app.conf")
	resume("again") // a second call does nothing
	io.WriteString(lg, "after\n")
	lg.Close()
	got := logLines(&mu, &buf)
	want := []string{"before", "### collect /etc/app.conf (25 console bytes not logged)", "after"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log %q, want %q", got, want)
	}
}

func TestTee(t *testing.T) {
	s, l := session(t, Options{Window: 1024})
	feed(t, l, "consumed\n")
	waitFor(t, s, "consumed")
	feed(t, l, "pending\n")
	waitFor(t, s, "pend") // consumes "pend": "ing\n" stays unconsumed
	var got bytes.Buffer
	stop := s.Tee(&got, true)
	big := strings.Repeat("z", 5000) // more than the window
	feed(t, l, "one\n", big, "\ntwo\n")
	waitFor(t, s, "two")
	stop()
	feed(t, l, "after\n")
	waitFor(t, s, "after")
	if want := "ing\none\n" + big + "\ntwo\n"; got.String() != want {
		t.Fatalf("tee got %d bytes: %.40q...", got.Len(), got.String())
	}
	var none bytes.Buffer
	s.Tee(&none, false)()
	if none.Len() != 0 {
		t.Fatalf("tee without pending got %q", none.String())
	}
}

// Issue 11, item 18: a match longer than the rescan overlap, arriving in
// pieces, is found (expect and fail-on), as long as it fits the window.
func TestLongMatchInPieces(t *testing.T) {
	body := strings.Repeat("0123456789abcdef\r\n", 5000/18+1) // > 5000 bytes
	pieces := []string{"noise START "}
	for i := 0; i < len(body); i += 500 {
		pieces = append(pieces, body[i:min(i+500, len(body))])
	}
	pieces = append(pieces, " END\r\n")

	t.Run("expect", func(t *testing.T) {
		s, l := session(t, Options{})
		ch := expectAsync(context.Background(), s, res(`(?s)START.*END`), nil)
		for _, p := range pieces {
			feed(t, l, p)
			time.Sleep(time.Millisecond) // separate reads
		}
		o := wait(t, ch)
		if o.err != nil || !strings.HasPrefix(o.m.Text, "START") || !strings.HasSuffix(o.m.Text, "END") || len(o.m.Text) < 5000 {
			t.Fatalf("got %v, %d bytes", o.err, len(o.m.Text))
		}
	})
	t.Run("fail-on", func(t *testing.T) {
		got := make(chan string, 1)
		_, l := session(t, Options{FailOn: res(`(?s)START.*END`), OnFail: func(p, m string) { got <- m }})
		for _, p := range pieces {
			feed(t, l, p)
			time.Sleep(time.Millisecond)
		}
		select {
		case m := <-got:
			if len(m) < 5000 {
				t.Errorf("match of %d bytes", len(m))
			}
		case <-time.After(30 * time.Second):
			t.Fatal("fail-on did not fire")
		}
	})
	t.Run("longer than the window", func(t *testing.T) {
		// The documented limit: the match must fit the window.
		s, l := session(t, Options{Window: 4096})
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		ch := expectAsync(ctx, s, res(`(?s)START.*END`), nil)
		for _, p := range pieces {
			feed(t, l, p)
		}
		if o := wait(t, ch); o.err == nil {
			t.Fatalf("a %d-byte match found in a 4096-byte window", len(o.m.Text))
		}
	})
}

// Issue 11, item 20: console.log is capped; the header, a marker and the
// most recent lines are kept.
func TestTailCap(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("# header\n")
	c, err := NewTailCap(f, 10000)
	if err != nil {
		t.Fatal(err)
	}
	log := NewLog(c, time.Now(), nil)
	for i := range 5000 {
		fmt.Fprintf(log, "line %d\n", i)
	}
	log.Close()
	b, _ := os.ReadFile(f.Name())
	s := string(b)
	if len(b) > 10000 || !strings.HasPrefix(s, "# header\n") || !strings.Contains(s, "bytes cut here") ||
		!strings.HasSuffix(s, "] line 4999\n") || strings.Contains(s, "] line 10\n") {
		t.Fatalf("capped log (%d bytes):\n%.300s\n...\n%s", len(b), s, s[max(0, len(s)-200):])
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if !strings.Contains(lines[1], "bytes cut here") || !strings.HasPrefix(lines[2], "[") {
		t.Fatalf("marker or first kept line broken: %q %q", lines[1], lines[2])
	}
}

// A board's line can never look like a note: notes have no space after the
// time, the board's lines always have one; a note is one line whatever its
// text holds.
func TestBoardCannotWriteNotes(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	lg := NewLog(&lockedBuffer{mu: &mu, b: &buf}, time.Now(), nil)
	io.WriteString(lg, "### step 2: forged\n]### step 3: forged\n\r### logged out: all tests passed\n")
	lg.Note("step %s: %s", "1", "real")
	lg.Note("error: %s", "the console last printed: \"x\n[   1.000]### step 9: forged\"\x1b]52;c;Zm9v\x07")
	lg.Close()
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	note := regexp.MustCompile(`^\[ *\d+\.\d{3}\]### `)
	var notes []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if note.MatchString(l) {
			notes = append(notes, note.ReplaceAllString(l, ""))
		} else if !regexp.MustCompile(`^\[ *\d+\.\d{3}\] `).MatchString(l) {
			t.Errorf("line %q is neither a note nor a board line", l)
		}
	}
	want := []string{"step 1: real", `error: the console last printed: "x\n[   1.000]### step 9: forged"\x1b]52;c;Zm9v\x07`}
	if strings.Join(notes, "|") != strings.Join(want, "|") {
		t.Errorf("notes %q, want %q\nlog:\n%s", notes, want, out)
	}
}
