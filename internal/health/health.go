// Package health keeps each board's health: a state (good, suspect, bad,
// unknown), when it began, the last health check and a bounded history of
// what changed it. Runs record their outcome (an infrastructure failure,
// exit 3, makes a board suspect); health checks record theirs (a failing
// check makes a board bad, a passing one good). Selection leaves bad boards
// out; the DRA driver reads the same records to taint them.
//
// Records live as one JSON file per board in a "health" directory beside
// the board locks (the lock directory is the one place every run on a host
// shares: containers mount it from the host). Updates take a flock(2) on
// the board's own ".lock" file in that directory, read the record, change
// it and write it back with an atomic rename, so concurrent runs never lose
// an update and readers never see half a file.
package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jsplan/jsplan/internal/fsutil"
	"github.com/jsplan/jsplan/internal/lock"
)

// State is a board's health.
type State string

// The states of a board.
const (
	// Unknown: never checked, and no run recorded anything yet.
	Unknown State = "unknown"
	// Good: the last health check passed (or a run completed since).
	Good State = "good"
	// Suspect: the last run ended in an infrastructure error (exit 3).
	Suspect State = "suspect"
	// Bad: the last health check failed. Label selectors never choose a
	// bad board; naming it needs --allow-bad.
	Bad State = "bad"
)

// MaxHistory bounds a record's history: older events are dropped.
const MaxHistory = 50

// MaxRecordBytes bounds what is read of a record file (a record of
// MaxHistory events is a few KiB; a larger file is damaged or hostile).
const MaxRecordBytes = 1 << 20

// Exit codes as the CLI reports them (README: "error classes").
const (
	exitPass  = 0
	exitFail  = 1
	exitInfra = 3
)

// Check is the result of a health check.
type Check struct {
	Time     time.Time `json:"time"`
	Passed   bool      `json:"passed"`
	ExitCode int       `json:"exit_code"`
	Plan     string    `json:"plan,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// Artifacts is the check run's artifacts directory (its report.html).
	Artifacts string `json:"artifacts,omitempty"`
}

// Event is one entry of a board's history: a run's or a check's outcome
// and the state it left the board in.
type Event struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"` // "run", "check" or "set"
	ExitCode  int       `json:"exit_code"`
	State     State     `json:"state"`
	Plan      string    `json:"plan,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Artifacts string    `json:"artifacts,omitempty"`
}

// Record is a board's health.
type Record struct {
	Board string `json:"board"`
	State State  `json:"state"`
	// Since is when the board entered State (zero when Unknown).
	Since time.Time `json:"since,omitempty"`
	// InfraFailures counts the runs in a row that ended in an
	// infrastructure error; a completed run or a check resets it.
	InfraFailures int `json:"infra_failures"`
	// LastCheck is the last health check, nil before the first.
	LastCheck *Check `json:"last_check,omitempty"`
	// History is oldest first, at most MaxHistory events.
	History []Event `json:"history,omitempty"`
}

// Policy is when a board's health check is due (the inventory's
// `health: {every, after-failures}`).
type Policy struct {
	// Every: a check older than this is due again (0: no periodic check).
	Every time.Duration
	// AfterFailures: this many infrastructure failures in a row make a
	// check due (0: never for that reason).
	AfterFailures int
}

// Due reports whether r's board needs a health check under p at now, and
// why.
func Due(r Record, p Policy, now time.Time) (bool, string) {
	switch {
	case r.LastCheck == nil:
		return true, "never checked"
	case p.AfterFailures > 0 && r.InfraFailures >= p.AfterFailures:
		return true, fmt.Sprintf("%d infrastructure failures in a row (after-failures: %d)", r.InfraFailures, p.AfterFailures)
	case p.Every > 0 && now.Sub(r.LastCheck.Time) >= p.Every:
		return true, fmt.Sprintf("last checked %s ago (every: %s)", now.Sub(r.LastCheck.Time).Round(time.Second), p.Every)
	}
	return false, ""
}

// Store is the health directory.
type Store struct {
	dir      string
	readOnly bool
}

// DefaultRoot is where Open looks by default: jsplan's default board lock
// directory (JSPLAN_LOCK_DIR when set, else /var/lock/jsplan when
// writable, else $TMPDIR/jsplan-locks), the one every run on a host
// shares.
func DefaultRoot() string { return lock.DefaultDir() }

// Dir is the health directory under root: root/health.
func Dir(root string) string { return filepath.Join(root, "health") }

// Open opens (creating when missing) the health directory under root, the
// board lock directory (jsplan's --lock-dir; by default /var/lock/jsplan
// when writable, else $TMPDIR/jsplan-locks; JSPLAN_LOCK_DIR overrides it).
// The directory is shared by every user's runs, as the locks are: it is
// created world-writable with the sticky bit.
func Open(root string) (*Store, error) {
	d := Dir(root)
	if fi, err := os.Lstat(d); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("health: %s is not a directory", d)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("health: %w", err)
		}
		if err := os.Mkdir(d, 0o777); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("health: %w", err)
		}
		_ = os.Chmod(d, 0o777|os.ModeSticky) // umask aside; may fail when another user made it
	} else {
		return nil, fmt.Errorf("health: %w", err)
	}
	return &Store{dir: d}, nil
}

// OpenReadOnly opens the health directory under root for reading only
// (Get, List): it creates nothing, so it works on a read-only mount of
// the lock directory; a directory that does not exist yet holds no
// records (every board Unknown). Updates through it fail.
func OpenReadOnly(root string) *Store {
	return &Store{dir: Dir(root), readOnly: true}
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func (s *Store) file(board, ext string) (string, error) {
	if !nameRE.MatchString(board) {
		return "", fmt.Errorf("health: invalid board name %q", board)
	}
	return filepath.Join(s.dir, board+ext), nil
}

// Get returns board's record; a board never recorded is Unknown.
func (s *Store) Get(board string) (Record, error) {
	p, err := s.file(board, ".json")
	if err != nil {
		return Record{}, err
	}
	return read(p, board)
}

func read(p, board string) (Record, error) {
	r := Record{Board: board, State: Unknown}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("health: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return r, fmt.Errorf("health: %s is not a regular file", p)
	}
	if err := json.NewDecoder(io.LimitReader(f, MaxRecordBytes)).Decode(&r); err != nil {
		return Record{Board: board, State: Unknown}, fmt.Errorf("health: %s: %w", p, err)
	}
	r.Board = board
	if r.State == "" {
		r.State = Unknown
	}
	return r, nil
}

// List returns every recorded board's record, sorted by board name.
func (s *Store) List() ([]Record, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	var out []Record
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || !nameRE.MatchString(name) {
			continue
		}
		r, err := s.Get(name)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Board < out[j].Board })
	return out, nil
}

// Update changes board's record under its lock: fn gets the current
// record (Unknown when none) and changes it; the result is written
// atomically and returned.
func (s *Store) Update(board string, fn func(r *Record)) (Record, error) {
	if s.readOnly {
		return Record{}, fmt.Errorf("health: %s was opened read-only", s.dir)
	}
	lp, err := s.file(board, ".lock")
	if err != nil {
		return Record{}, err
	}
	lf, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o666)
	if err != nil {
		return Record{}, fmt.Errorf("health: %w", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return Record{}, fmt.Errorf("health: lock %s: %w", lp, err)
	}
	p, _ := s.file(board, ".json")
	r, err := read(p, board)
	if err != nil {
		// A damaged record is replaced: the history restarts, the
		// board's health is not lost for good.
		r = Record{Board: board, State: Unknown}
	}
	fn(&r)
	if len(r.History) > MaxHistory {
		r.History = append([]Event(nil), r.History[len(r.History)-MaxHistory:]...)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return r, err
	}
	if werr := fsutil.WriteFileAtomic(p, append(b, '\n'), 0o644); werr != nil {
		return r, fmt.Errorf("health: writing %s: %w", p, werr)
	}
	return r, nil
}

// setState moves r to st, keeping Since when the state does not change.
func setState(r *Record, st State, now time.Time) {
	if r.State != st || r.Since.IsZero() {
		r.State, r.Since = st, now
	}
}

// Run is a finished run's outcome, as RecordRun takes it.
type Run struct {
	Plan      string
	ExitCode  int
	Reason    string
	Artifacts string
	Time      time.Time // default: now
}

// RecordRun records a run's outcome on board: an infrastructure error
// (exit 3) makes the board suspect (a bad board stays bad) and counts one
// more failure in a row; a run that completed (exit 0 or 1: the board
// worked, whatever the tests said) resets the count and clears suspect to
// good. Other exits (2: the plan was invalid; 128+n: interrupted) say
// nothing about the board and are not recorded.
func (s *Store) RecordRun(board string, run Run) (Record, error) {
	if run.ExitCode != exitPass && run.ExitCode != exitFail && run.ExitCode != exitInfra {
		return s.Get(board)
	}
	now := run.Time
	if now.IsZero() {
		now = time.Now()
	}
	return s.Update(board, func(r *Record) {
		if run.ExitCode == exitInfra {
			r.InfraFailures++
			if r.State != Bad {
				setState(r, Suspect, now)
			}
		} else {
			r.InfraFailures = 0
			if r.State == Suspect {
				setState(r, Good, now)
			}
		}
		r.History = append(r.History, Event{Time: now, Kind: "run", ExitCode: run.ExitCode, State: r.State,
			Plan: run.Plan, Reason: run.Reason, Artifacts: run.Artifacts})
	})
}

// RecordCheck records a health check on board: passed makes it good,
// failed bad; either resets the infrastructure failures in a row.
func (s *Store) RecordCheck(board string, c Check) (Record, error) {
	if c.Time.IsZero() {
		c.Time = time.Now()
	}
	return s.Update(board, func(r *Record) {
		st := Bad
		if c.Passed {
			st = Good
		}
		setState(r, st, c.Time)
		r.InfraFailures = 0
		cc := c
		r.LastCheck = &cc
		r.History = append(r.History, Event{Time: c.Time, Kind: "check", ExitCode: c.ExitCode, State: st,
			Plan: c.Plan, Reason: c.Reason, Artifacts: c.Artifacts})
	})
}

// Set puts board in state st by hand (an operator's decision), with why.
func (s *Store) Set(board string, st State, why string) (Record, error) {
	switch st {
	case Good, Suspect, Bad, Unknown:
	default:
		return Record{}, fmt.Errorf("health: unknown state %q (good, suspect, bad, unknown)", st)
	}
	now := time.Now()
	return s.Update(board, func(r *Record) {
		setState(r, st, now)
		r.InfraFailures = 0
		r.History = append(r.History, Event{Time: now, Kind: "set", State: st, Reason: why})
	})
}
