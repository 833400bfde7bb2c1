package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/redact"
)

// newMarkerFilter returns a markerFilter to w and its Close.
func newMarkerFilter(begin, end string, w io.Writer) (io.Writer, func()) {
	f := &markerFilter{begin: begin, end: end, w: w}
	return f, f.Close
}

// The filter between the console and a results parser passes exactly the
// command's output, however the console cuts it, and a last partial line
// when the board dies.
func TestMarkerFilter(t *testing.T) {
	stream := "$ echo \"JSPL\"\"AN-1-B\"; command eval ...\r\nJSPLAN-1-B\r\nok 1 a\r\n" + strings.Repeat("x", 70000) +
		"\r\nnot ok 2 bJSPLAN-1-E:0\r\n$ ok 3 after\r\n"
	want := "ok 1 a\n" + strings.Repeat("x", 70000) + "\nnot ok 2 b\n"
	for _, size := range []int{1, 5, 4096, len(stream)} {
		var got strings.Builder
		w, closeFn := newMarkerFilter("JSPLAN-1-B", "JSPLAN-1-E:", &got)
		for s := stream; len(s) > 0; {
			n := min(size, len(s))
			_, _ = w.Write([]byte(s[:n]))
			s = s[n:]
		}
		closeFn()
		if got.String() != want {
			t.Fatalf("chunks of %d: got %d bytes %.60q...", size, got.Len(), got.String())
		}
	}
	var got strings.Builder
	w, closeFn := newMarkerFilter("JSPLAN-1-B", "JSPLAN-1-E:", &got)
	_, _ = w.Write([]byte("JSPLAN-1-B\nok 1 a\nok 2 cut mid-li"))
	closeFn()
	if got.String() != "ok 1 a\nok 2 cut mid-li" {
		t.Fatalf("partial: %q", got.String())
	}
}

// hostShell is an interactive /bin/sh on pipes, standing in for a board's
// console: stdout and stderr (where its prompt goes) both reach the session.
func hostShell(t *testing.T) *console.Session {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-i")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Env = []string{"PS1=$ ", "PATH=/usr/bin:/bin", "ENV="}
	cmd.WaitDelay = 100 * time.Millisecond
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	con := console.New(struct {
		io.Reader
		io.WriteCloser
	}{pr, in}, console.Options{})
	t.Cleanup(func() {
		_ = con.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = pw.Close()
	})
	return con
}

// A command's output and status come back between the markers; a command
// that ends with a login prompt marks that shell (and only it) gone until a
// login, and the shell types nothing while it is gone.
func TestShellRunAndGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	red := &redact.Redactor{}
	sh := New(hostShell(t), red, func(v string) { red.Add(v) })
	other := New(hostShell(t), red, func(v string) { red.Add(v) })
	res, err := sh.Run(ctx, "echo hello; printf 'a\\nb\\n'; false", 1<<20, Var{Name: "X", Value: "it's"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Output) != "hello\na\nb\n" || res.Code != 1 {
		t.Fatalf("got %q, status %d", res.Output, res.Code)
	}
	if res, err = sh.Run(ctx, `printf '%s\n' "$X"`, 1<<20, Var{Name: "X", Value: "it's"}); err != nil || string(res.Output) != "it's\n" {
		t.Fatalf("env: %q %v", res.Output, err)
	}
	_, err = sh.Run(ctx, `printf '\nboard login: '; sleep 5`, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "login prompt") || diag.ClassOf(err) != diag.Failure {
		t.Fatalf("a login prompt during a command: %v", err)
	}
	if why, gone := sh.Gone(); !gone || !strings.Contains(why, "board login:") {
		t.Fatalf("Gone() = %q, %v", why, gone)
	}
	if _, gone := other.Gone(); gone {
		t.Fatal("another session's shell is gone too")
	}
	if _, err := sh.Run(ctx, "echo never", 1<<20); err == nil || !strings.Contains(err.Error(), "log in again") {
		t.Fatalf("a command on a gone shell: %v", err)
	}
	sh.LoggedIn(defaultPrompt)
	if _, gone := sh.Gone(); gone {
		t.Fatal("still gone after a login")
	}
	if res, err := other.Run(ctx, "echo other", 1<<20); err != nil || string(res.Output) != "other\n" {
		t.Fatalf("other: %q %v", res.Output, err)
	}
}

// WaitError classifies by the error's type, wrapped or not: a fail-on
// match fails the test, a closed console is the infrastructure's.
func TestWaitError(t *testing.T) {
	fe := &console.FailOnError{Pattern: "panic", Text: "Kernel panic"}
	if err := WaitError(fmt.Errorf("expect: %w", fe), "x"); diag.ClassOf(err) != diag.Failure || !errors.Is(err, fe) {
		t.Fatalf("fail-on: %v (%v)", err, diag.ClassOf(err))
	}
	closed := fmt.Errorf("%w: read /dev/ttyUSB0: input/output error", console.ErrClosed)
	if err := WaitError(closed, "no login prompt"); diag.ClassOf(err) != diag.Infra || !strings.HasPrefix(err.Error(), "no login prompt: ") {
		t.Fatalf("closed: %v (%v)", err, diag.ClassOf(err))
	}
	if err := WaitError(context.DeadlineExceeded, "x"); err != context.DeadlineExceeded {
		t.Fatalf("other errors pass: %v", err)
	}
	if WaitError(nil, "x") != nil {
		t.Fatal("nil")
	}
}
