package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/redact"
)

const consoleDescription = `Takes the board's lock (waiting while a run or another person holds it, --lock-wait),
opens its drivers, and connects this terminal to the board's console in raw mode: every key,
Ctrl-C, Ctrl-Z and Ctrl-D included, goes to the board. Nothing is powered unless --power-on
or a menu command says so. Everything the board prints is also written to a session log,
console-BOARD-TIME.log in --log-dir, timestamped like an apply run's console.log.

Escape sequences: the escape character (~) is special only as the first character of a line,
that is at the start or right after Enter, and only when one of these follows it:

  ~.  detach: leave the console, release the board's lock
  ~o  power on          ~f  power off
  ~c  power cycle       ~r  reset (a power cycle when the driver cannot reset)
  ~s  power status      ~?  this list
  ~~  send one ~ to the board

Anything else after ~ goes to the board with the ~, and a ~ in the middle of a line is
never special, so what a board needs (a shell's ~/path, a boot loader's keys, control
characters) always gets through. Over ssh, which has the same escape, type ~~. to reach
jsplan, or choose another one: --escape '^]' makes Ctrl-] the escape character, recognised
anywhere since a control character is never text (press it twice to send it).

The terminal is restored on every exit: detach, end of input, the console closing, SIGTERM,
SIGHUP or SIGINT. A virtual board (sim, qemu) lives inside jsplan: it goes off on detach.

--watch follows the console of whatever holds the board (an apply run, a console session)
from another terminal: read-only, without the lock, until the holder ends or Ctrl-C.

Exit status: 0 detached (or the watched holder ended), 2 usage (unknown board, no console
driver, nothing to watch), 3 the board is busy past --lock-wait, a driver failed or the
console ended, 129/130/143 after SIGHUP/SIGINT/SIGTERM.`

func consoleCommand() *cli.Command {
	return &cli.Command{
		Name:        "console",
		Usage:       "attach this terminal to a board's console, holding the board's lock",
		ArgsUsage:   "BOARD",
		Description: consoleDescription,
		Flags: []cli.Flag{boardsFlag, lockDirFlag, lockWaitFlag, stateDirFlag,
			&cli.BoolFlag{Name: "power-on", Usage: "power the board on once attached (its boot from the first line)",
				EnvVars: []string{"JSPLAN_CONSOLE_POWER_ON"}},
			&cli.StringFlag{Name: "escape", Value: "~", Usage: "escape `CHAR`: a character (special after Enter), ^X for a control character (special anywhere), or none",
				EnvVars: []string{"JSPLAN_CONSOLE_ESCAPE"}},
			&cli.StringFlag{Name: "log-dir", Value: ".", Usage: "write the session log to `DIR`",
				EnvVars: []string{"JSPLAN_CONSOLE_LOG_DIR"}},
			&cli.BoolFlag{Name: "pass-escapes", Usage: "pass every escape sequence the board prints to the terminal (default: window titles, clipboard writes (OSC 52) and queries the terminal would answer are left out)",
				EnvVars: []string{"JSPLAN_CONSOLE_PASS_ESCAPES"}},
			delayFlag,
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "follow the console of the run (or session) that holds the board: read-only, without its lock, from any terminal on this host"},
		},
		Action: consoleAction,
	}
}

// delayFlag is the pause between off and on of a power cycle.
var delayFlag = &cli.DurationFlag{Name: "delay", Value: 2 * time.Second, Usage: "pause between off and on of a power cycle",
	EnvVars: []string{"JSPLAN_POWER_DELAY"}}

func consoleAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return exit(2, "console needs exactly one board\nRun 'jsplan console --help' for usage.")
	}
	esc, err := parseEscape(c.String("escape"))
	if err != nil {
		return exit(2, "--escape: %v", err)
	}
	spec, err := lookupBoard(c, c.Args().First())
	if err != nil {
		return err
	}
	if err := needCapability(spec, drivers.CapConsole); err != nil {
		return err
	}
	if c.Bool("watch") {
		return watchConsole(c, spec.Name)
	}
	errw := c.App.ErrWriter
	ctx, stop := signalContext()
	defer stop()

	lk, _, err := acquireBoard(ctx, c, []string{spec.Name}, "jsplan console", func(msg string) {
		fmt.Fprintln(errw, "jsplan: "+msg)
	})
	if err != nil {
		return exit(failureCode(ctx, err), "%v", err)
	}
	defer lk.Release()

	// The session log, open before the board so that its first bytes
	// are in it.
	start := time.Now()
	logDir := c.String("log-dir")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return exit(3, "session log: %v", err)
	}
	logPath := filepath.Join(logDir, fmt.Sprintf("console-%s-%s.log", fileSafe.ReplaceAllString(spec.Name, "_"), start.Format("20060102-150405")))
	if abs, err := filepath.Abs(logPath); err == nil {
		logPath = abs
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) { // two sessions in one second
		logPath = strings.TrimSuffix(logPath, ".log") + fmt.Sprintf("-%d.log", os.Getpid())
		logFile, err = os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return exit(3, "session log: %v", err)
	}
	defer logFile.Close()
	me := holderFor("jsplan console")
	red := &redact.Redactor{}
	clog, err := console.NewFileLog(logFile, fmt.Sprintf("console session of %s on %s, board %s", me.User, me.Host, spec.Name), start, 0, red)
	if err != nil {
		return exit(3, "session log: %v", err)
	}
	defer clog.Close()
	defer publishConsole(lockDirOf(c), spec.Name, logPath)()

	s := &session{name: spec.Name, out: c.App.Writer, errw: errw, log: clog, delay: c.Duration("delay"), esc: esc}
	if !c.Bool("pass-escapes") {
		s.out = &escFilter{w: c.App.Writer}
	}
	board, err := openBoard(ctx, c, spec, red, func(msg string) { s.say("%s", msg) })
	if err != nil {
		clog.Note("%v", err)
		return exit(failureCode(ctx, err), "%v", err)
	}
	closeBoard := func() {
		if transient(board, drivers.CapConsole) {
			fmt.Fprintf(errw, "jsplan: closing %s (a virtual board: it goes off)\n", spec.Name)
		}
		if err := board.Close(); err != nil {
			fmt.Fprintf(errw, "jsplan: closing %s: %s\n", spec.Name, red.String(err.Error()))
		}
	}
	con, _ := board.ConsoleDevice()
	rw, err := con.OpenConsole(context.WithoutCancel(ctx))
	if err != nil {
		closeBoard()
		return exit(3, "cannot open the console of %s: %s", spec.Name, red.String(err.Error()))
	}
	if spec.Has(drivers.CapPower) {
		s.power, _ = board.Power()
	}
	s.rw = rw

	code, why := s.run(ctx, os.Stdin, c.Bool("power-on"), logPath)
	s.ended.Store(true)
	rw.Close()
	clog.Note("session ended: %s", why)
	fmt.Fprintf(errw, "jsplan: %s; session log: %s\n", why, logPath)
	closeBoard()
	if code != 0 {
		return exit(code, "")
	}
	return nil
}

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// session is a terminal attached to a board's console.
type session struct {
	name  string
	rw    io.ReadWriteCloser
	out   io.Writer // the terminal (board output)
	errw  io.Writer // jsplan's messages
	outMu sync.Mutex
	log   *console.Log
	power drivers.Power // nil: the board has no power driver
	delay time.Duration
	esc   *escaper
	busy  atomic.Bool // a power action is running
	ended atomic.Bool // the session is over: input is not the board's any more
	raw   bool
	col0  bool // the terminal's cursor is at the start of a line
}

// say prints a message of jsplan's own on a line of its own.
func (s *session) say(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	msg := termText(fmt.Sprintf(format, args...)) // errors may quote the board
	if !s.raw {
		fmt.Fprintf(s.errw, "jsplan: %s\n", msg)
		return
	}
	nl := "\r\n"
	if s.col0 {
		nl = ""
	}
	fmt.Fprintf(s.errw, "%s[jsplan] %s\r\n", nl, strings.ReplaceAll(msg, "\n", "\r\n"))
	s.col0 = true
}

// newline ends the terminal's current line unless it is empty.
func (s *session) newline() {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if !s.col0 {
		fmt.Fprint(s.errw, "\r\n")
		s.col0 = true
	}
}

// run attaches in to the board's console until the user detaches, in
// ends, the console ends or ctx is cancelled (a signal). It returns the
// exit status and why the session ended. The terminal is in raw mode only
// inside run.
func (s *session) run(ctx context.Context, in *os.File, powerOn bool, logPath string) (code int, why string) {
	fd := int(in.Fd())
	if term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return 3, fmt.Sprintf("cannot put the terminal in raw mode: %v", err)
		}
		var once sync.Once
		restore := func() {
			once.Do(func() {
				s.newline()
				s.outMu.Lock()
				s.raw = false
				_ = term.Restore(fd, old)
				s.outMu.Unlock()
			})
		}
		defer restore()
		// A panic elsewhere must not leave the terminal raw either.
		defer func() {
			if p := recover(); p != nil {
				restore()
				panic(p)
			}
		}()
		s.outMu.Lock()
		s.raw, s.col0 = true, true
		s.outMu.Unlock()
	}
	s.say("attached to the console of %s; %s; session log %s", s.name, s.esc.hint(), logPath)
	s.log.Note("attached")

	conDone := make(chan error, 1)
	go func() {
		b := make([]byte, 32<<10)
		for {
			n, err := s.rw.Read(b)
			if n > 0 {
				s.outMu.Lock()
				_, _ = s.out.Write(b[:n])
				s.col0 = b[n-1] == '\n'
				s.outMu.Unlock()
				_, _ = s.log.Write(b[:n])
			}
			if err != nil {
				conDone <- err
				return
			}
		}
	}()

	cmds := make(chan byte)
	inDone := make(chan error, 1)
	detached := make(chan struct{})
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := in.Read(b)
			if s.ended.Load() {
				return
			}
			if n > 0 {
				stop := false
				s.esc.feed(b[:n], func(p []byte) {
					if _, err := s.rw.Write(p); err != nil {
						s.say("typing to the board failed: %v", err)
					}
				}, func(cmd byte) bool {
					select {
					case cmds <- cmd:
					case <-detached:
					}
					stop = cmd == '.'
					return !stop
				})
				if stop {
					return
				}
			}
			if err != nil {
				inDone <- err
				return
			}
		}
	}()
	defer close(detached)

	// Power actions run beside the console; they are cancelled and waited
	// for when the session ends, before the board is closed.
	ctx, cancel := context.WithCancelCause(ctx)
	var actions sync.WaitGroup
	defer actions.Wait()
	defer cancel(errors.New("the console session ended"))
	if powerOn {
		actions.Go(func() { s.powerAction(ctx, 'o', false) })
	}
	for {
		select {
		case cmd := <-cmds:
			switch cmd {
			case '.':
				return 0, "detached from " + s.name
			case '?':
				s.say("%s", s.esc.help())
			default:
				actions.Go(func() { s.powerAction(ctx, cmd, true) })
			}
		case err := <-inDone:
			if errors.Is(err, io.EOF) {
				return 0, "end of input: detached from " + s.name
			}
			return 3, fmt.Sprintf("reading the terminal: %v", err)
		case err := <-conDone:
			if errors.Is(err, io.EOF) {
				return 3, fmt.Sprintf("the console of %s ended", s.name)
			}
			return 3, fmt.Sprintf("the console of %s failed: %v", s.name, err)
		case <-ctx.Done():
			var se *signalError
			if errors.As(context.Cause(ctx), &se) {
				return se.ExitCode(), fmt.Sprintf("%v: detached from %s", se.sig, s.name)
			}
			return 130, "interrupted: detached from " + s.name
		}
	}
}

// powerAction runs a menu command: o on, f off, c cycle, r reset, s
// status. Only one runs at a time; the console keeps flowing meanwhile.
func (s *session) powerAction(ctx context.Context, cmd byte, fromMenu bool) {
	what := map[byte]string{'o': "power on", 'f': "power off", 'c': "power cycle", 'r': "reset", 's': "power status"}[cmd]
	if s.power == nil {
		s.say("%s: board %s has no power driver", what, s.name)
		return
	}
	if !s.busy.CompareAndSwap(false, true) {
		s.say("%s: wait, a power action is running", what)
		return
	}
	defer s.busy.Store(false)
	if cmd == 's' {
		s.say("%s: power state: %s", s.name, powerState(ctx, s.power))
		return
	}
	src := ""
	if fromMenu {
		src = " (console menu)"
	}
	s.log.Note("%s%s", what, src)
	s.say("%s: %s", s.name, what)
	var err error
	switch cmd {
	case 'o':
		err = s.power.On(ctx)
	case 'f':
		err = s.power.Off(ctx)
	case 'c':
		err = drivers.CyclePower(ctx, s.power, s.delay)
	case 'r':
		var cycled bool
		cycled, err = drivers.ResetPower(ctx, s.power, s.delay)
		if cycled {
			s.say("the power driver cannot reset; cycled the power instead")
		}
	}
	if err != nil {
		s.log.Note("%s failed: %v", what, err)
		s.say("%s failed: %v", what, err)
		return
	}
	s.say("%s: %s: done", s.name, what)
}

// powerState is on, off or unknown (the driver cannot tell).
func powerState(ctx context.Context, p drivers.Power) string {
	ps, ok := p.(drivers.PowerStater)
	if !ok {
		return "unknown (the power driver cannot tell)"
	}
	on, err := ps.PowerState(ctx)
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	if on {
		return "on"
	}
	return "off"
}

// escaper finds escape sequences in what the user types. With a printable
// escape character (~) a sequence is the character at the start of a line
// (at the start of the session or after Enter) followed by a command
// character; with a control character as escape it is recognised anywhere.
// Everything else passes through unchanged, in order.
type escaper struct {
	ch        byte // 0: no escape
	anywhere  bool
	lineStart bool
	pending   bool // the escape character was typed; the next byte decides
}

// escapeCommands are the bytes that may follow the escape character.
const escapeCommands = ".?ofcrs"

func newEscaper(ch byte) *escaper {
	return &escaper{ch: ch, anywhere: ch < 0x20 || ch == 0x7f, lineStart: true}
}

// parseEscape reads --escape: one character, ^X notation or none.
func parseEscape(v string) (*escaper, error) {
	switch {
	case v == "none":
		return newEscaper(0), nil
	case len(v) == 2 && v[0] == '^' && v[1] >= '?' && v[1] <= '_':
		return newEscaper(v[1] ^ 0x40), nil
	case len(v) == 1 && v[0] != '\r' && v[0] != '\n' && v[0] < 0x80 && !strings.ContainsRune(escapeCommands, rune(v[0])):
		return newEscaper(v[0]), nil
	}
	return nil, fmt.Errorf("%q: want one ASCII character (not Enter or a command character), ^X notation (^] is Ctrl-]) or none", v)
}

// name is how the escape character is written for the user.
func (e *escaper) name() string {
	switch {
	case e.ch == 0x7f:
		return "^?"
	case e.ch < 0x20:
		return "^" + string(rune(e.ch^0x40))
	}
	return string(rune(e.ch))
}

func (e *escaper) hint() string {
	switch {
	case e.ch == 0:
		return "no escape character: end the session with a signal"
	case e.anywhere:
		return fmt.Sprintf("%s. detaches, %s? shows the menu", e.name(), e.name())
	}
	return fmt.Sprintf("Enter %s. detaches, Enter %s? shows the menu", e.name(), e.name())
}

func (e *escaper) help() string {
	if e.ch == 0 {
		return "no escape character (--escape none)"
	}
	n := e.name()
	where := "after Enter"
	if e.anywhere {
		where = "anywhere"
	}
	return fmt.Sprintf("escape sequences (%s, typed %s):\n"+
		"  %[1]s.  detach (release the board)\n"+
		"  %[1]so  power on       %[1]sf  power off\n"+
		"  %[1]sc  power cycle    %[1]sr  reset\n"+
		"  %[1]ss  power status   %[1]s?  this help\n"+
		"  %[1]s%[1]s  send %[1]s to the board", n, where)
}

// feed passes in through the escaper: bytes for the board go to send,
// commands to cmd, in the order typed. When cmd returns false the rest of
// in is dropped.
func (e *escaper) feed(in []byte, send func([]byte), cmd func(byte) bool) {
	if e.ch == 0 {
		send(in)
		return
	}
	var buf []byte
	flush := func() {
		if len(buf) > 0 {
			send(buf)
			buf = nil
		}
	}
	for _, b := range in {
		if e.pending {
			e.pending = false
			switch {
			case b == e.ch:
				buf = append(buf, b)
				e.lineStart = false
			case strings.IndexByte(escapeCommands, b) >= 0:
				flush()
				if !cmd(b) {
					return
				}
				e.lineStart = true
			default:
				buf = append(buf, e.ch, b)
				e.lineStart = b == '\r' || b == '\n'
			}
			continue
		}
		if b == e.ch && (e.lineStart || e.anywhere) {
			e.pending = true
			continue
		}
		buf = append(buf, b)
		e.lineStart = b == '\r' || b == '\n'
	}
	flush()
}
