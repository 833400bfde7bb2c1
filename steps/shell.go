package steps

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
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
	return runShellTo(ctx, r, script, limit, nil)
}

// runShellTo is runShell that also streams the command's output, as the
// board prints it, to stream (nil: nowhere); it stops when the command ends or
// the wait does, so stream has what the board printed up to then.
func runShellTo(ctx context.Context, r *engine.Run, script string, limit int, stream io.Writer) (*shellResult, error) {
	con, err := r.Console()
	if err != nil {
		return nil, err
	}
	n := nonce()
	begin := "JSPLAN-" + n + "-B"
	end := "JSPLAN-" + n + "-E:"
	// The console echoes the typed lines, where the script is printf-quoted:
	// mask secrets in that form too.
	r.SecretForms(func(v string) string { q := printfQuote(v); return q[1 : len(q)-1] })
	capture := con.Capture(limit)
	defer capture.Stop()
	if stream != nil {
		f := &markerFilter{begin: begin, end: end, w: stream}
		stop := con.Tee(f, false)
		defer f.Close()
		defer stop()
	}
	for _, line := range typedLines(r, n, script) {
		if _, err := con.Write([]byte(line + "\n")); err != nil {
			return nil, diag.Infraf("console: %v", err)
		}
	}
	if _, err := con.Expect(ctx, []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(begin) + `\r?\n`)}, nil); err != nil {
		interrupt(con)
		return nil, waitError(err, "the shell did not start the command")
	}
	m, err := con.Expect(ctx, []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(end) + `(\d+)\r?\n`)}, nil)
	if err != nil {
		interrupt(con)
		return nil, waitError(err, "the command did not finish")
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

// interrupt stops the command running in the shell with Ctrl-C, then waits
// (a few seconds at most) until the shell answers again: the shell drops
// input that arrives while it handles the interrupt, so the next step's
// command line would be lost. The probe is a harmless echo, typed again
// until its answer shows.
func interrupt(con *console.Session) {
	if _, err := con.Write([]byte{3}); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := nonce()
	probe := []byte(`echo "JSPL""AN-` + n + `-S"` + "\n")
	answer := []*regexp.Regexp{regexp.MustCompile(`JSPLAN-` + n + `-S`)}
	for ctx.Err() == nil {
		if _, err := con.Write(probe); err != nil {
			return
		}
		wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
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
