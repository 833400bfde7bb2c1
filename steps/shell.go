package steps

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
)

// shellResult is a command's outcome on the board's shell.
type shellResult struct {
	Output []byte
	Code   int
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printfQuote turns a script into a printf format string on one line, so a
// multi-line script is typed as one line (no interleaved echo).
func printfQuote(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c == '%':
			b.WriteString("%%")
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\'':
			b.WriteString(`'\''`)
		case c == '\n':
			b.WriteString(`\n`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return "'" + b.String() + "'"
}

func nonce() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runShell runs script in the logged-in shell on the board's console and
// returns its output and exit status. The script is typed as one line (a
// long one in pieces, see typedLines) and framed by markers whose echo cannot match, so neither the echo nor the
// prompt ends up in the output. On cancellation it sends Ctrl-C so the
// shell is usable by the next step.
func runShell(ctx context.Context, r *engine.Run, script string, limit int) (*shellResult, error) {
	con, err := r.Console()
	if err != nil {
		return nil, err
	}
	if why, dead := deadShells.Load(con); dead {
		// Typing now would enter the command at the login prompt, as a
		// user name (into the board's auth log).
		return nil, diag.Failf("the board's shell is gone (%s): log in again (wait-for-login) before running commands", why)
	}
	n := nonce()
	begin := "JSPLAN-" + n + "-B"
	end := "JSPLAN-" + n + "-E:"
	// The console echoes the typed lines, where the script is printf-quoted:
	// mask secrets in that form too.
	r.SecretForms(func(v string) string { q := printfQuote(v); return q[1 : len(q)-1] })
	capture := con.Capture(limit)
	defer capture.Stop()
	for _, line := range typedLines(r, n, script) {
		if _, err := con.Write([]byte(line + "\n")); err != nil {
			return nil, diag.Infraf("console: %v", err)
		}
	}
	// The waits end early enough to stop the command (Ctrl-C and a probe)
	// within the step's time limit.
	wctx, wcancel, budget := reserveProbe(ctx)
	defer wcancel()
	m, err := con.Expect(wctx, []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(begin) + `\r?\n`), shellGone}, nil)
	if err == nil && m.Index == 0 {
		m, err = con.Expect(wctx, []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(end) + `(\d+)\r?\n`), shellGone}, nil)
		if err != nil {
			return nil, stopCommand(ctx, con, budget, err, "the command did not finish")
		}
	} else if err != nil {
		return nil, stopCommand(ctx, con, budget, err, "the shell did not start the command")
	}
	if m.Index == 1 {
		why := fmt.Sprintf("the login prompt %q showed while a command ran: the command ended the login shell (exit, exec?)", strings.TrimSpace(m.Text))
		deadShells.Store(con, why)
		return nil, diag.Failf("%s", why)
	}
	data, ok := capture.Stop()
	if !ok {
		return nil, diag.Failf("command output is larger than %d bytes", limit)
	}
	code, _ := strconv.Atoi(m.Groups[0])
	out := data
	if i := bytes.Index(out, []byte(begin)); i >= 0 {
		out = out[i+len(begin):]
		out = bytes.TrimPrefix(bytes.TrimPrefix(out, []byte("\r")), []byte("\n"))
	}
	if i := bytes.Index(out, []byte(end)); i >= 0 {
		out = out[:i]
	}
	out = bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))
	return &shellResult{Output: out, Code: code}, nil
}

// maxTypedLine bounds a line typed at the board's shell: a Linux tty takes
// 4095 bytes per line, BusyBox ash's line editor 1024.
const maxTypedLine = 768

// typedLines returns the lines to type to run script with markers n. A
// short script is one line. A longer one is first stored, printf-quoted, in
// a shell variable, piece by piece, one line each.
func typedLines(r *engine.Run, n, script string) []string {
	// "JSPL""AN" in the typed line: the echo never contains the marker.
	// `command eval`: a syntax error in the script fails it with status 2;
	// a plain eval would make the interactive shell drop the rest of the
	// line, end marker included, and the step would wait for its timeout.
	run := func(format string) string {
		return fmt.Sprintf(`echo "JSPL""AN-%s-B"; command eval "$(printf -- %s)"; echo "JSPL""AN-%s-E:$?"`, n, format, n)
	}
	if line := run(printfQuote(script)); len(line) <= maxTypedLine {
		return []string{line}
	}
	v := "_jsplan_" + n
	var lines []string
	for _, piece := range splitScript(r, script, maxTypedLine-2*len(v)-8) {
		if len(lines) == 0 {
			lines = append(lines, v+"="+printfQuote(piece))
		} else {
			lines = append(lines, v+`="$`+v+`"`+printfQuote(piece))
		}
	}
	return append(lines, run(`"$`+v+`"`)+"; unset "+v)
}

// splitScript cuts s into pieces whose printf-quoted form is at most budget
// bytes, never inside a UTF-8 sequence nor inside a secret (each piece is
// echoed on its own line; a secret cut in two would not be masked).
func splitScript(r *engine.Run, s string, budget int) []string {
	hasSecret := r.Redact(s) != s
	var out []string
	for len(s) > 0 {
		end, size := 0, 0
		for ; end < len(s); end++ {
			w := len(printfQuote(s[end:end+1])) - 2
			if size+w > budget {
				break
			}
			size += w
		}
		if end == len(s) {
			return append(out, s)
		}
		cut := end
		for cut > 0 && (!utf8.RuneStart(s[cut]) || hasSecret && cutsSecret(r, s, cut)) {
			cut--
		}
		if cut == 0 {
			cut = end // a secret longer than a line: no way around it
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return out
}

// cutsSecret reports whether cutting s at i splits a secret.
func cutsSecret(r *engine.Run, s string, i int) bool {
	const window = 4096
	lo, hi := max(0, i-window), min(len(s), i+window)
	return r.Redact(s[lo:i])+r.Redact(s[i:hi]) != r.Redact(s[lo:hi])
}

// shellGone matches a login prompt: a getty's (or the sim's) after the login
// shell ended. Only at the very end of what the console printed, so a
// command that prints such a line and goes on is not mistaken for it.
var shellGone = regexp.MustCompile(`(?m)^[\w.-]+ login: \z`)

// deadShells holds, per console session, why its login shell is known to be
// gone; a successful wait-for-login clears it.
var deadShells sync.Map // *console.Session -> string

// probeMax bounds the time spent stopping a command (Ctrl-C and the probe
// until the shell answers).
const probeMax = 5 * time.Second

// reserveProbe returns a context for the waits of a command that ends early
// enough, before ctx's deadline, to stop the command within it: a step never
// overruns its timeout because of the probe. budget is the time reserved.
func reserveProbe(ctx context.Context) (context.Context, context.CancelFunc, time.Duration) {
	dl, ok := ctx.Deadline()
	if !ok {
		c, cancel := context.WithCancel(ctx)
		return c, cancel, probeMax
	}
	budget := min(probeMax, time.Until(dl)/4)
	c, cancel := context.WithDeadline(ctx, dl.Add(-budget))
	return c, cancel, budget
}

// stopCommand stops the command after a wait ended with err, within budget,
// and returns the error to report: the cause of ctx once ctx has ended (the
// step's timeout, which the reserve anticipated), else err explained.
func stopCommand(ctx context.Context, con *console.Session, budget time.Duration, err error, what string) error {
	interrupt(con, budget)
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		// The reserve before the deadline: the deadline is next.
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return waitError(err, what)
}

// interrupt stops the command running in the shell with Ctrl-C, then waits
// (budget at most) until the shell answers again: the shell drops input that
// arrives while it handles the interrupt, so the next step's command line
// would be lost. The probe is a harmless echo, typed again until its answer
// shows.
func interrupt(con *console.Session, budget time.Duration) {
	if _, err := con.Write([]byte{3}); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	n := nonce()
	probe := []byte(`echo "JSPL""AN-` + n + `-S"` + "\n")
	answer := []*regexp.Regexp{regexp.MustCompile(`JSPLAN-` + n + `-S`)}
	for ctx.Err() == nil {
		if _, err := con.Write(probe); err != nil {
			return
		}
		wctx, wcancel := context.WithTimeout(ctx, min(500*time.Millisecond, budget))
		_, err := con.Expect(wctx, answer, nil)
		wcancel()
		if err == nil || wctx.Err() == nil {
			return // answered, or the console is gone
		}
	}
}

// waitError explains why a console wait ended.
func waitError(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*console.FailOnError); ok {
		return diag.Fail(err)
	}
	if err == console.ErrClosed || strings.HasPrefix(err.Error(), console.ErrClosed.Error()) {
		return diag.Infraf("%s: %v", what, err)
	}
	return err
}

// expandKeys turns key macros such as <ENTER> or <CTRL-C> into bytes.
func expandKeys(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	return keyRE.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.ToUpper(m[1 : len(m)-1])
		if v, ok := keys[name]; ok {
			return v
		}
		if strings.HasPrefix(name, "CTRL-") && len(name) == 6 {
			c := name[5]
			if c >= 'A' && c <= 'Z' || c >= '[' && c <= '_' {
				return string([]byte{c & 0x1f})
			}
		}
		return m
	})
}

var keyRE = regexp.MustCompile(`<(?:(?i:ctrl-)[\[\\\]^_]|[A-Za-z0-9-]+)>`)

var keys = map[string]string{
	"ENTER": "\r", "LF": "\n", "CR": "\r", "TAB": "\t", "ESC": "\x1b", "SPACE": " ",
	"BACKSPACE": "\x7f", "DEL": "\x1b[3~", "UP": "\x1b[A", "DOWN": "\x1b[B", "RIGHT": "\x1b[C", "LEFT": "\x1b[D",
	"HOME": "\x1b[H", "END": "\x1b[F",
	"F1": "\x1bOP", "F2": "\x1bOQ", "F3": "\x1bOR", "F4": "\x1bOS", "F5": "\x1b[15~", "F6": "\x1b[17~",
	"F7": "\x1b[18~", "F8": "\x1b[19~", "F9": "\x1b[20~", "F10": "\x1b[21~", "F11": "\x1b[23~", "F12": "\x1b[24~",
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
