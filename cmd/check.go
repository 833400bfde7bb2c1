package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	expect "github.com/google/goexpect"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/lock"
)

// checkBoard opens a free board's drivers and reports, without changing the
// board's state: the power state when the driver can tell, and whether the
// console answers a newline (an expect batch through goexpect).
func checkBoard(ctx context.Context, b *engine.BoardSpec, lockDir, stateDir string, wait time.Duration) (out string) {
	lk, h, err := lock.TryAcquire(lockDir, b.Name, lock.Holder{Plan: "jsplan boards list --check", PID: os.Getpid(), Since: time.Now()})
	if err != nil {
		return "lock: " + err.Error()
	}
	if lk == nil {
		if h != nil {
			return "busy: " + h.String()
		}
		return "busy"
	}
	defer lk.Release()
	board, err := engine.OpenBoard(ctx, b, drivers.Env{Board: b.Name, StateDir: filepath.Join(stateDir, b.Name)})
	if err != nil {
		return "cannot open: " + err.Error()
	}
	out = "open"
	defer func() {
		// A device that fails to close is worth knowing about too.
		if err := board.Close(); err != nil {
			out += ", close: " + err.Error()
		}
	}()
	if p, err := board.Power(); err == nil {
		if ps, ok := p.(drivers.PowerStater); ok {
			if on, err := ps.PowerState(ctx); err == nil {
				out += fmt.Sprintf(", power %s", map[bool]string{true: "on", false: "off"}[on])
			}
		}
	}
	if c, err := board.ConsoleDevice(); err == nil {
		out += ", console " + probeConsole(ctx, c, wait)
	}
	return out
}

// probeConsole sends a newline and waits for any answer.
func probeConsole(ctx context.Context, c drivers.Console, wait time.Duration) string {
	rw, err := c.OpenConsole(ctx)
	if err != nil {
		return "cannot open: " + err.Error()
	}
	var once sync.Once
	closed := make(chan struct{})
	closeAll := func() error {
		once.Do(func() { close(closed) })
		return rw.Close()
	}
	e, _, err := expect.SpawnGeneric(&expect.GenOptions{
		In:    nopCloser{rw},
		Out:   rw,
		Wait:  func() error { <-closed; return nil },
		Close: closeAll,
		Check: func() bool { return true },
	}, wait)
	if err != nil {
		closeAll()
		return "error: " + err.Error()
	}
	defer e.Close()
	_, err = e.ExpectBatch([]expect.Batcher{
		&expect.BSnd{S: "\n"},
		&expect.BExp{R: `[[:print:]]`},
	}, wait)
	if err != nil {
		return fmt.Sprintf("silent for %s (board off?)", wait)
	}
	return "answers"
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
