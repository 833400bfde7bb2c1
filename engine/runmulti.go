package engine

// Runs on several boards: one run per role, sharing the result, the
// event stream, the secrets and the cancellation; steps go to the run of
// their on: role; parallel blocks run their branches at once.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jsplan/jsplan/engine/console"
	"github.com/jsplan/jsplan/engine/diag"
)

// RoleBoard is an opened board playing a role in a run.
type RoleBoard struct {
	Role  string
	Board *Board
	// ConsoleLog receives the board's console (console-BOARD.log); may
	// be nil.
	ConsoleLog *console.Log
}

// RoleResult says which board played a role, in report.json.
type RoleResult struct {
	Role  string `json:"role,omitempty"`
	Board string `json:"board"`
}

// withRoles makes the run of the first role, with the others beside it.
func (r *run) withRoles(res *Result) *run {
	roles := map[string]*run{}
	var first *run
	for i, rb := range r.cfg.Roles {
		cfg := r.cfg
		cfg.Board, cfg.ConsoleLog = rb.Board, rb.ConsoleLog
		rr := &run{cfg: cfg, board: rb.Board, secrets: r.secrets, res: res, mu: r.mu, roles: roles, multi: true}
		roles[rb.Role] = rr
		if i == 0 {
			first = rr
		}
		res.Boards = append(res.Boards, RoleResult{Role: rb.Role, Board: rb.Board.Spec.Name})
	}
	res.Resources = r.cfg.Resources
	return first
}

// each calls fn for the run of every role (the one run when there are
// no roles), in role order.
func (r *run) each(fn func(*run)) {
	if len(r.roles) == 0 {
		fn(r)
		return
	}
	for _, rb := range r.cfg.Roles {
		fn(r.roles[rb.Role])
	}
}

// share copies what Execute set up on the first role's run (cancel, stop)
// to the others.
func (r *run) share() {
	r.each(func(o *run) {
		if o != r {
			o.cancel, o.stop = r.cancel, r.stop
		}
	})
}

func (r *run) openConsoles(ctx context.Context) {
	r.share()
	r.each(func(o *run) { o.openConsole(ctx) })
}

func (r *run) closeConsoles() {
	r.each(func(o *run) {
		if o.console != nil {
			_ = o.console.Close()
		}
	})
}

// boardsText names the boards of the run for its first event.
func (r *run) boardsText() string {
	if len(r.roles) == 0 {
		return "board " + r.res.Board
	}
	var parts []string
	for _, rb := range r.cfg.Roles {
		if rb.Role == "" {
			parts = append(parts, rb.Board.Spec.Name)
		} else {
			parts = append(parts, rb.Role+"="+rb.Board.Spec.Name)
		}
	}
	s := "boards " + strings.Join(parts, ", ")
	if len(r.cfg.Resources) > 0 {
		s += " with " + strings.Join(r.cfg.Resources, ", ")
	}
	return s
}

// BranchStoppedError is the cause a parallel branch is stopped with when
// another branch failed.
type BranchStoppedError struct{ Branch string }

func (e *BranchStoppedError) Error() string {
	return fmt.Sprintf("stopped: parallel branch %s failed", e.Branch)
}

// Class implements diag.Classer: the branch did not fail on its own; the
// run fails for the branch that did.
func (e *BranchStoppedError) Class() diag.Class { return diag.Failure }

// RunParallel runs steps at once, each as a child of the current step
// (each on its own on: role, or where the current step runs), and waits
// for all of them. When one fails (not continue-on-error), the others are
// stopped; finally blocks inside them still run. It returns the first
// failure.
func (h *StepRun) RunParallel(ctx context.Context, steps []*Step) error {
	r, parent := h.r, h.res
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	results := make([]*StepResult, len(steps))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i, s := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx := index(parent.Index, i)
			sr, err := r.runStep(bctx, s, idx)
			results[i] = sr
			if err == nil || s.ContinueOnError.Value {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			var stopped *BranchStoppedError
			if first == nil && !errors.As(err, &stopped) {
				first = err
				cancel(&BranchStoppedError{Branch: idx})
			}
		}()
	}
	wg.Wait()
	parent.addChildren(results...)
	if first == nil && ctx.Err() != nil {
		first = context.Cause(ctx)
	}
	return first
}

// ConsoleLogName is the artifacts' console log of board in a run on n
// boards: console.log for one (as a single-board run's), else
// console-BOARD.log.
func ConsoleLogName(n int, board string) string {
	if n <= 1 {
		return "console.log"
	}
	return "console-" + unsafeName.Replace(board) + ".log"
}

var unsafeName = strings.NewReplacer("/", "_", "\\", "_", " ", "_", "..", "_")
