// Package shell is the protocol jsplan speaks with the login shell on a
// board's console: a command is typed as printf formats framed by markers
// whose echo cannot match, its output is read between the markers, a
// command that overruns is stopped with Ctrl-C and a probe until the shell
// answers again, and a login prompt that shows while a command runs says
// the login shell is gone. It sits beside engine/console, the byte stream
// it runs on; steps (run, collect, wait-for-login) use it.
package shell

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/redact"
)

// Result is a command's outcome on the board's shell.
type Result struct {
	// Output is what the command printed, without the typed line, the
	// markers or the prompt, with line ends as "\n".
	Output []byte
	// Code is the command's exit status.
	Code int
}

// Quote quotes s for a POSIX shell.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// PrintfQuote turns a script into a printf format string on one line, so a
// multi-line script is typed as one line (no interleaved echo).
func PrintfQuote(s string) string {
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

// Var is a variable set for one command on the board.
type Var struct{ Name, Value string }

// Shell is the login shell on one console session, and what is known of
// it: whether a command ended it, and the prompt it prints. The run that
// opened the console holds it (engine.StepRun.Shell), so it lives as long
// as the session; it is safe for use by one command at a time.
type Shell struct {
	con    *console.Session
	red    *redact.Redactor
	secret func(string)

	mu sync.Mutex
	// gone says why the login shell is known to be gone ("" while it is
	// there); a login (LoggedIn) clears it.
	gone string
	// prompt is the shell prompt a command's end waits for: the one the
	// login saw, DefaultPrompt before a login, nil once it did not show
	// after a command (the board's prompt is not what it looks for: no
	// more waiting).
	prompt *regexp.Regexp
}

// New returns the shell on con. Output is masked with red (the values of a
// command are also masked in the form they are typed in); secret registers
// the pieces of a secret that had to be typed cut in two (a long script).
func New(con *console.Session, red *redact.Redactor, secret func(string)) *Shell {
	return &Shell{con: con, red: red, secret: secret, prompt: defaultPrompt}
}

// Console is the session the shell runs on.
func (sh *Shell) Console() *console.Session { return sh.con }

// Run runs script in the logged-in shell on the board's console and
// returns its output and exit status. The script is typed as one line (a
// long one in pieces, see typedLines) and framed by markers whose echo
// cannot match, so neither the echo nor the prompt ends up in the output.
// env is exported for the script only. On cancellation it sends Ctrl-C so
// the shell is usable by the next step.
func (sh *Shell) Run(ctx context.Context, script string, limit int, env ...Var) (*Result, error) {
	return sh.RunTo(ctx, script, limit, nil, env...)
}

// RunTo is Run that also streams the command's output, as the
// board prints it, to stream (nil: nowhere); it stops when the command ends or
// the wait does, so stream has what the board printed up to then.
func (sh *Shell) RunTo(ctx context.Context, script string, limit int, stream io.Writer, env ...Var) (*Result, error) {
	con := sh.con
	if why, gone := sh.Gone(); gone {
		// Typing now would enter the command at the login prompt, as a
		// user name (into the board's auth log).
		return nil, diag.Failf("the board's shell is gone (%s): log in again (wait-for-login) before running commands", why)
	}
	n := nonce()
	begin := "JSPLAN-" + n + "-B"
	end := "JSPLAN-" + n + "-E:"
	lines := sh.typedLines(n, script, env)
	// The console echoes the typed lines, where values are printf-quoted:
	// mask secrets in that form too (after typedLines, which may register
	// the pieces of a secret it had to cut).
	sh.red.AddForms(func(v string) string { q := PrintfQuote(v); return q[1 : len(q)-1] })
	capture := con.Capture(limit)
	defer capture.Stop()
	if stream != nil {
		f := &markerFilter{begin: begin, end: end, w: stream}
		stop := con.Tee(f, false)
		defer f.Close()
		defer stop()
	}
	// The waits end early enough to stop the command (Ctrl-C and a probe)
	// within the step's time limit.
	wctx, wcancel, budget := reserveProbe(ctx)
	defer wcancel()
	if len(lines) > 1 {
		// Lines typed ahead are echoed while the shell prints its prompt
		// for the line before, which can land inside the echo of a value
		// and cut a secret into pieces no mask recognises: the values are
		// typed with echo off (where the board has stty), and echo comes
		// back before the command runs.
		quiet := "JSPLAN-" + n + "-Q"
		if _, err := con.Write([]byte(`stty -echo 2>/dev/null; printf '%s\n' "` + quiet[:4] + `""` + quiet[4:] + `"` + "\n")); err != nil {
			return nil, diag.Infraf("console: %v", err)
		}
		if _, err := con.Expect(wctx, []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(quiet) + `\r?\n`)}, nil); err != nil {
			return nil, sh.stopCommand(ctx, budget, err, "the shell did not answer")
		}
		lines = append(lines[:len(lines)-1:len(lines)-1], "stty echo 2>/dev/null; "+lines[len(lines)-1])
	}
	for _, line := range lines {
		if _, err := con.Write([]byte(line + "\n")); err != nil {
			return nil, diag.Infraf("console: %v", err)
		}
	}
	m, err := con.Expect(wctx, []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(begin) + `\r?\n`), shellGone}, nil)
	if err == nil && m.Index == 0 {
		m, err = con.Expect(wctx, []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(end) + `(\d+)\r?\n`), shellGone}, nil)
		if err != nil {
			return nil, sh.stopCommand(ctx, budget, err, "the command did not finish")
		}
	} else if err != nil {
		return nil, sh.stopCommand(ctx, budget, err, "the shell did not start the command")
	}
	if m.Index == 1 {
		why := fmt.Sprintf("the login prompt %q showed while a command ran: the command ended the login shell (exit, exec?)", strings.TrimSpace(m.Text))
		sh.mu.Lock()
		sh.gone = why
		sh.mu.Unlock()
		return nil, diag.Failf("%s", why)
	}
	data, ok := capture.Stop()
	sh.consumePrompt(wctx)
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
	return &Result{Output: out, Code: code}, nil
}

// maxTypedLine bounds a line typed at the board's shell: a Linux tty takes
// 4095 bytes per line, BusyBox ash's line editor 1024.
const maxTypedLine = 768

// typedLines returns the lines to type to run script with markers n and
// env exported for it. Every value reaches the shell as a printf format
// (PrintfQuote): nothing in it is shell syntax, and a newline or a quote in
// a value is typed as an escape. A short command is one line:
//
//	echo B; _jsplan_N_0="$(printf -- 'VALUE'; printf .)"; NAME="${_jsplan_N_0%.}" command eval "$(printf -- 'SCRIPT')"; echo E:$?; unset _jsplan_N_0
//
// (the "." keeps trailing newlines of the value). When that line is too
// long, each value's format is first stored in a shell variable, piece by
// piece, one line each.
func (sh *Shell) typedLines(n, script string, env []Var) []string {
	values := make([]string, 0, len(env)+1)
	for _, e := range env {
		values = append(values, e.Value)
	}
	values = append(values, script)
	line := func(formats []string) string {
		// "JSPL""AN" in the typed line: the echo never contains the marker.
		// `command eval`: a syntax error in the script fails it with status 2;
		// a plain eval would make the interactive shell drop the rest of the
		// line, end marker included, and the step would wait for its timeout.
		// Assignments before `command eval` are exported to the script and
		// gone after it (dash, bash, BusyBox ash).
		var b, assign, unset strings.Builder
		fmt.Fprintf(&b, `echo "JSPL""AN-%s-B"; `, n)
		for i, e := range env {
			tmp := fmt.Sprintf("_jsplan_%s_%d", n, i)
			fmt.Fprintf(&b, `%s="$(printf -- %s; printf .)"; `, tmp, formats[i])
			fmt.Fprintf(&assign, `%s="${%s%%.}" `, e.Name, tmp)
			fmt.Fprintf(&unset, " %s", tmp)
		}
		fmt.Fprintf(&b, `%scommand eval "$(printf -- %s)"; echo "JSPL""AN-%s-E:$?"`, assign.String(), formats[len(env)], n)
		if unset.Len() > 0 {
			b.WriteString("; unset" + unset.String())
		}
		return b.String()
	}
	formats := make([]string, len(values))
	for i, v := range values {
		formats[i] = PrintfQuote(v)
	}
	if l := line(formats); len(l) <= maxTypedLine {
		return []string{l}
	}
	var lines []string
	var unset []string
	for i, val := range values {
		v := fmt.Sprintf("_jsplan_%s_f%d", n, i)
		unset = append(unset, v)
		for j, piece := range sh.splitScript(val, maxTypedLine-2*len(v)-8) {
			if j == 0 {
				lines = append(lines, v+"="+PrintfQuote(piece))
			} else {
				lines = append(lines, v+`="$`+v+`"`+PrintfQuote(piece))
			}
		}
		if val == "" {
			lines = append(lines, v+"=")
		}
		formats[i] = `"$` + v + `"`
	}
	return append(lines, line(formats)+"; unset "+strings.Join(unset, " "))
}

// splitScript cuts s into pieces whose printf-quoted form is at most budget
// bytes, never inside a UTF-8 sequence and, where it can, not inside a
// secret (each piece is echoed on its own line; a secret cut in two would
// not be masked). A secret longer than a piece has to be cut: its two
// sides are then registered as secrets of their own.
func (sh *Shell) splitScript(s string, budget int) []string {
	spans := sh.red.Spans(s)
	// inside returns the span that i is strictly inside of.
	inside := func(i int) ([2]int, bool) {
		for _, sp := range spans {
			if sp[0] < i && i < sp[1] {
				return sp, true
			}
		}
		return [2]int{}, false
	}
	var out []string
	for pos := 0; pos < len(s); {
		end, size := pos, 0
		for ; end < len(s); end++ {
			w := len(PrintfQuote(s[end:end+1])) - 2
			if size+w > budget {
				break
			}
			size += w
		}
		if end == len(s) {
			return append(out, s[pos:])
		}
		cut := end
		for cut > pos {
			if _, in := inside(cut); !utf8.RuneStart(s[cut]) || in {
				cut--
				continue
			}
			break
		}
		if cut == pos { // a secret longer than a piece: cut it, mask both sides
			cut = end
			if sp, in := inside(cut); in && sp[1]-cut < redact.MinLen {
				cut = max(pos+1, sp[1]-redact.MinLen)
			}
			for cut > pos+1 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			if sp, in := inside(cut); in {
				sh.secret(s[max(sp[0], pos):cut])
				sh.secret(s[cut:sp[1]])
			}
		}
		out = append(out, s[pos:cut])
		pos = cut
	}
	return out
}

// DefaultPrompt is the shell prompt a command's end waits for before a
// login told the real one. A prompt may be followed by terminal queries
// (busybox ash sends ESC[6n).
const DefaultPrompt = `[#$>]\s*(?:\x1b\[[0-9;?]*[A-Za-z]\s*)*$`

var defaultPrompt = regexp.MustCompile("(?m)" + DefaultPrompt)

// shellGone matches a login prompt: a getty's (or the sim's) after the login
// shell ended. Only at the very end of what the console printed, so a
// command that prints such a line and goes on is not mistaken for it.
var shellGone = regexp.MustCompile(`(?m)^[\w.-]+ login: \z`)

// Gone reports why the login shell is known to be gone: a command ended it
// (exit, exec) and the login prompt showed.
func (sh *Shell) Gone() (why string, gone bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.gone, sh.gone != ""
}

// LoggedIn records a login (wait-for-login): the shell is there again and
// prompt is its prompt, which a command's end waits for.
func (sh *Shell) LoggedIn(prompt *regexp.Regexp) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gone, sh.prompt = "", prompt
}

// promptWait bounds the wait for the prompt after a command's end marker.
const promptWait = 500 * time.Millisecond

// consumePrompt waits (promptWait at most) for the prompt the shell prints
// after a command and consumes it: a later expect (a console step's prompt
// after its send) then cannot match this one, which may arrive only after
// the step has ended.
func (sh *Shell) consumePrompt(ctx context.Context) {
	sh.mu.Lock()
	re := sh.prompt
	sh.mu.Unlock()
	if re == nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, promptWait)
	defer cancel()
	if _, err := sh.con.Expect(wctx, []*regexp.Regexp{re}, nil); err != nil && ctx.Err() == nil && wctx.Err() != nil {
		sh.mu.Lock()
		if sh.prompt == re {
			sh.prompt = nil
		}
		sh.mu.Unlock()
	}
}

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
func (sh *Shell) stopCommand(ctx context.Context, budget time.Duration, err error, what string) error {
	sh.interrupt(budget)
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		// The reserve before the deadline: the deadline is next.
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return WaitError(err, what)
}

// interrupt stops the command running in the shell with Ctrl-C, then waits
// (budget at most) until the shell answers again: the shell drops input that
// arrives while it handles the interrupt, so the next step's command line
// would be lost. The probe is a harmless echo, typed again until its answer
// shows.
func (sh *Shell) interrupt(budget time.Duration) {
	con := sh.con
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
		if err == nil {
			sh.consumePrompt(ctx) // the prompt after the answer is not the next step's
			return
		}
		if wctx.Err() == nil {
			return // the console is gone
		}
	}
}

// WaitError explains why a console wait ended.
func WaitError(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*console.FailOnError](err); ok {
		return diag.Fail(err)
	}
	if errors.Is(err, console.ErrClosed) {
		return diag.Infraf("%s: %v", what, err)
	}
	return err
}

// markerFilter passes on the lines of a console stream between the begin
// marker line and the end marker (the output of one command run by
// RunTo), so a results parser sees the command's output as it comes and
// neither the typed command nor the prompt.
type markerFilter struct {
	begin, end string
	w          io.Writer
	line       []byte
	state      int // 0 before the begin marker, 1 inside, 2 done
}

// maxFilterLine bounds the line the filter holds; a longer one is passed
// on in pieces (the parser cuts it anyway).
const maxFilterLine = 64 << 10

func (f *markerFilter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && f.state < 2 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.line = append(f.line, p...)
			f.spill()
			break
		}
		f.line = append(f.line, p[:i]...)
		f.handle(strings.TrimSuffix(string(f.line), "\r"), true)
		f.line = f.line[:0]
		p = p[i+1:]
	}
	return n, nil
}

// spill passes on most of an overlong partial line, keeping enough to
// find an end marker split across writes.
func (f *markerFilter) spill() {
	if len(f.line) <= maxFilterLine {
		return
	}
	keep := len(f.end)
	if f.state == 1 {
		if i := strings.Index(string(f.line), f.end); i >= 0 {
			f.handle(string(f.line), false)
			f.line = f.line[:0]
			return
		}
		_, _ = f.w.Write(f.line[:len(f.line)-keep])
	}
	f.line = append(f.line[:0], f.line[len(f.line)-keep:]...)
}

func (f *markerFilter) handle(line string, newline bool) {
	switch f.state {
	case 0:
		// The marker's line (what the typed command line echoes holds the
		// marker split in two, so it never matches).
		if strings.HasSuffix(line, f.begin) {
			f.state = 1
		}
	case 1:
		if i := strings.Index(line, f.end); i >= 0 {
			if i > 0 {
				_, _ = io.WriteString(f.w, line[:i]+"\n")
			}
			f.state = 2
			return
		}
		if newline {
			line += "\n"
		}
		_, _ = io.WriteString(f.w, line)
	}
}

// Close passes on a last partial line (the board died in the middle of it).
func (f *markerFilter) Close() {
	if f.state == 1 && len(f.line) > 0 {
		f.handle(strings.TrimSuffix(string(f.line), "\r"), false)
	}
	f.line = nil
}
