package cmd

// What apply, console, power and lock share: the lock flags, taking a
// board's lock (waiting while it is busy and saying who holds it), and
// opening a board's drivers.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/redact"
	"github.com/jsplan/jsplan/internal/lock"
	"github.com/jsplan/jsplan/schema"
)

var (
	lockDirFlag = &cli.StringFlag{Name: "lock-dir", Usage: "board locks live in `DIR` (share it between containers on a host)",
		EnvVars: []string{"JSPLAN_LOCK_DIR"}, DefaultText: "/var/lock/jsplan"}
	lockWaitFlag = &cli.DurationFlag{Name: "lock-wait", Value: 30 * time.Minute, Usage: "wait this long for a busy board",
		EnvVars: []string{"JSPLAN_LOCK_WAIT"}}
	stateDirFlag = &cli.StringFlag{Name: "state-dir", Usage: "persistent driver state (virtual disks) under `DIR`",
		EnvVars: []string{"JSPLAN_STATE_DIR"}, DefaultText: "~/.local/state/jsplan"}
)

// lockDirOf is --lock-dir or the default lock directory.
func lockDirOf(c *cli.Context) string {
	if d := c.String("lock-dir"); d != "" {
		return d
	}
	return lock.DefaultDir()
}

// stateDirOf is --state-dir or the default, as an absolute path: drivers
// may run programs in other directories.
func stateDirOf(c *cli.Context) string {
	d := c.String("state-dir")
	if d == "" {
		d = defaultStateDir()
	}
	if abs, err := filepath.Abs(d); err == nil {
		d = abs
	}
	return d
}

// holderFor describes this process in a lock file; what is the plan's
// name or the command ("jsplan console").
func holderFor(what string) lock.Holder {
	host, _ := os.Hostname()
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return lock.Holder{Plan: what, PID: os.Getpid(), Host: host, User: name, Since: time.Now()}
}

// waitingNotes says every lockProgress, until stop is called, that the
// command still waits for what() (for up to wait): nobody waits in silence.
func waitingNotes(wait time.Duration, say func(msg string), what func() string) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(lockProgress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			say(fmt.Sprintf("still waiting (%s of %s) for %s",
				schema.FormatDuration(time.Since(start).Round(time.Second)), schema.FormatDuration(wait), what()))
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// acquireBoard takes the lock of one of boards for what, waiting up to
// --lock-wait while they are busy; say tells who holds a busy board each
// time its holder changes.
func acquireBoard(ctx context.Context, c *cli.Context, boards []string, what string, say func(msg string)) (*lock.Lock, string, error) {
	wait := c.Duration("lock-wait")
	defer waitingNotes(wait, say, func() string {
		who := "another run"
		if h := lock.ReadHolder(lockDirOf(c), boards[0]); h != nil && len(boards) == 1 {
			who = h.String()
		}
		return fmt.Sprintf("%s, held by %s (jsplan console %s --watch shows what it does)", strings.Join(boards, " or "), who, boards[0])
	})()
	return lock.Acquire(ctx, lockDirOf(c), boards, holderFor(what), wait, func(b string, h *lock.Holder) {
		who := "another run"
		if h != nil {
			who = h.String()
		}
		say(fmt.Sprintf("board %s is busy, held by %s; waiting (up to %s)", b, who, wait))
	})
}

// lockProgress is how often a command waiting for a busy board says so
// (JSPLAN_LOCK_PROGRESS, a duration, for tests).
var lockProgress = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("JSPLAN_LOCK_PROGRESS")); err == nil && d > 0 {
		return d
	}
	return engine.DefaultProgress
}()

// failureCode is the exit status of a command that failed with err: the
// signal's when ctx was cancelled by one (signalContext), else 3 (an
// infrastructure error: busy board, driver failure).
func failureCode(ctx context.Context, err error) int {
	var se *signalError
	if errors.As(context.Cause(ctx), &se) || errors.As(err, &se) {
		return se.ExitCode()
	}
	if ctx.Err() != nil {
		return 130
	}
	return 3
}

// signalContext is cancelled, with a *signalError as its cause, by SIGINT,
// SIGTERM or SIGHUP. stop ends the watch.
func signalContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(&signalError{s})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// lookupBoard finds the board name in the inventory (--boards or the
// built-in one). Errors are usage errors (exit status 2).
func lookupBoard(c *cli.Context, name string) (*engine.BoardSpec, error) {
	inv, err := validInventory(c)
	if err != nil {
		return nil, err
	}
	if b := inv.Lookup(name); b != nil {
		return b, nil
	}
	var names []string
	for _, b := range inv.Boards {
		names = append(names, b.Name)
	}
	sort.Strings(names)
	return nil, exit(2, "no board %q in the inventory (boards: %s)", name, strings.Join(names, ", "))
}

// needCapability is a usage error when the board lacks capability cp.
func needCapability(b *engine.BoardSpec, cp drivers.Capability) error {
	if b.Has(cp) {
		return nil
	}
	var has []string
	for _, x := range b.Capabilities() {
		has = append(has, string(x))
	}
	if len(has) == 0 {
		has = []string{"nothing"}
	}
	return exit(2, "board %s has no %s driver (it serves: %s)", b.Name, cp, strings.Join(has, ", "))
}

// openBoard opens the drivers of b with their state under --state-dir.
// Driver messages go to logf; secrets the drivers name are added to red.
func openBoard(ctx context.Context, c *cli.Context, b *engine.BoardSpec, red *redact.Redactor, logf func(msg string)) (*engine.Board, error) {
	env := drivers.Env{
		Board:    b.Name,
		StateDir: filepath.Join(stateDirOf(c), b.Name),
		Log: func(format string, args ...any) {
			if logf != nil {
				logf(red.String(fmt.Sprintf(format, args...)))
			}
		},
		Secret: func(v string) {
			if redact.TooShort(v) && logf != nil {
				logf(fmt.Sprintf("warning: board %s: a secret shorter than %d characters is not masked", b.Name, redact.MinLen))
			}
			red.Add(v)
		},
	}
	board, err := engine.OpenBoard(ctx, b, env)
	if err != nil {
		return nil, fmt.Errorf("cannot open board %s: %s", b.Name, red.String(err.Error()))
	}
	return board, nil
}

// transient reports whether the board's device serving cp lives only in
// this process (drivers.Transient): a virtual board, off once closed.
func transient(b *engine.Board, cp drivers.Capability) bool {
	var dev any
	switch cp {
	case drivers.CapPower:
		dev, _ = b.Power()
	case drivers.CapConsole:
		dev, _ = b.ConsoleDevice()
	}
	t, ok := dev.(drivers.Transient)
	return ok && t.Transient()
}
