// Package lock serializes runs on a board across processes and containers
// that share a lock directory (a host path). Locks are flock(2) locks on a
// file named for the board: the kernel drops them when the holder dies, so
// a crashed run never leaves a board locked. The file is never deleted
// (deleting would race with a new holder); its content says who holds it.
//
// A holder can hand its lock to a command it runs (Lock.Pass): the command
// inherits the locked file descriptor, and TryAcquire in that command takes
// the inherited lock at once instead of waiting for its own parent.
package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Holder describes who holds a lock.
type Holder struct {
	Board string `json:"board"`
	Plan  string `json:"plan"`
	PID   int    `json:"pid"`
	Host  string `json:"host"`
	// User is the user who started the holder, when known.
	User  string    `json:"user,omitempty"`
	Since time.Time `json:"since"`
}

func (h Holder) String() string {
	user := ""
	if h.User != "" {
		user = "user " + h.User + ", "
	}
	return fmt.Sprintf("plan %q (%spid %d on %s, since %s)", h.Plan, user, h.PID, h.Host, h.Since.Format(time.RFC3339))
}

// Lock is a held board lock.
type Lock struct {
	f         *os.File
	path      string
	inherited bool
}

// BusyError is returned when the wait for a lock ran out.
type BusyError struct {
	Board  string
	Holder *Holder
	Waited time.Duration
}

func (e *BusyError) Error() string {
	who := "another run"
	if e.Holder != nil {
		who = e.Holder.String()
	}
	return fmt.Sprintf("board %q is busy: held by %s; gave up after waiting %s", e.Board, who, e.Waited.Round(time.Second))
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Path is the lock file of a board in dir.
func Path(dir, board string) string {
	return filepath.Join(dir, unsafe.ReplaceAllString(board, "_")+".lock")
}

// TryAcquire takes the lock without waiting. ok is false when it is held;
// holder then says by whom (when readable).
func TryAcquire(dir, board string, me Holder) (l *Lock, holder *Holder, err error) {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, nil, fmt.Errorf("lock directory: %w", err)
	}
	p := Path(dir, board)
	if l := inherited(p); l != nil {
		return l, nil, nil
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		h := readHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, h, nil
		}
		return nil, nil, fmt.Errorf("lock %s: %w", p, err)
	}
	me.Board = board
	b, _ := json.Marshal(me)
	_ = f.Truncate(0)
	_, _ = f.WriteAt(append(b, '\n'), 0)
	return &Lock{f: f, path: p}, nil, nil
}

// ReadHolder returns who holds the board's lock in dir according to its
// lock file, or nil when nobody is recorded.
func ReadHolder(dir, board string) *Holder {
	f, err := os.Open(Path(dir, board))
	if err != nil {
		return nil
	}
	defer f.Close()
	return readHolder(f)
}

func readHolder(f *os.File) *Holder {
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	var h Holder
	if n == 0 || json.Unmarshal(b[:n], &h) != nil {
		return nil
	}
	return &h
}

// Acquire takes the lock of one of boards, waiting up to wait for any of
// them to be free. notify is called once per holder change while waiting.
func Acquire(ctx context.Context, dir string, boards []string, me Holder, wait time.Duration, notify func(board string, h *Holder)) (*Lock, string, error) {
	start := time.Now()
	seen := map[string]Holder{}
	var last *Holder
	for {
		for _, b := range boards {
			l, h, err := TryAcquire(dir, b, me)
			if err != nil {
				return nil, "", err
			}
			if l != nil {
				return l, b, nil
			}
			if h != nil {
				last = h
				if prev, ok := seen[b]; !ok || prev != *h {
					seen[b] = *h
					if notify != nil {
						notify(b, h)
					}
				}
			} else if _, ok := seen[b]; !ok {
				seen[b] = Holder{}
				if notify != nil {
					notify(b, nil)
				}
			}
		}
		if time.Since(start) >= wait {
			return nil, "", &BusyError{Board: boards[0], Holder: last, Waited: time.Since(start)}
		}
		select {
		case <-ctx.Done():
			return nil, "", context.Cause(ctx)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Release drops the lock. The file stays, emptied. An inherited lock stays
// held: it belongs to the process that passed it.
func (l *Lock) Release() error {
	if l == nil || l.f == nil || l.inherited {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing drops the flock
	l.f = nil
	return err
}

// DefaultDir is the lock directory when none is configured: a host-wide
// path, so containers that mount it share locks.
func DefaultDir() string {
	if d := os.Getenv("JSPLAN_LOCK_DIR"); d != "" {
		return d
	}
	if fi, err := os.Stat("/var/lock"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/var/lock", ".jsplan-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/var/lock/jsplan"
		}
	}
	return filepath.Join(os.TempDir(), "jsplan-locks")
}

// EnvHeld is the environment variable through which Pass tells a command
// which lock it inherits: FD=PATH, the descriptor number and the lock file.
// Several entries are separated by ':'.
const EnvHeld = "JSPLAN_LOCK_HELD"

// Inherited reports whether the lock was passed down by a parent process.
func (l *Lock) Inherited() bool { return l != nil && l.inherited }

// Pass hands the lock to cmd, to be started next: the locked file becomes
// one of its descriptors and EnvHeld names it, so a jsplan run by cmd (or
// by its children, when they keep the descriptor) takes the lock without
// waiting for this process. cmd.Env nil means this process's environment.
// The lock stays held here; it is released when both have let it go.
func (l *Lock) Pass(cmd *exec.Cmd) {
	if l == nil || l.f == nil {
		return
	}
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, l.f)
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, EnvHeld+"=") {
			out = append(out, kv)
		}
	}
	cmd.Env = append(out, fmt.Sprintf("%s=%d=%s", EnvHeld, fd, l.path))
}

var (
	adoptMu sync.Mutex
	adopted = map[int]*os.File{} // inherited descriptors, kept open for good
)

// inherited returns the lock of the lock file p when this process inherited
// it (EnvHeld) and the descriptor really holds it; nil otherwise.
func inherited(p string) *Lock {
	v := os.Getenv(EnvHeld)
	if v == "" {
		return nil
	}
	var want syscall.Stat_t
	if syscall.Stat(p, &want) != nil {
		return nil
	}
	for _, e := range strings.Split(v, ":") {
		fdText, _, ok := strings.Cut(e, "=")
		fd, err := strconv.Atoi(fdText)
		if !ok || err != nil || fd < 3 {
			continue
		}
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) != nil || st.Dev != want.Dev || st.Ino != want.Ino {
			continue
		}
		// The descriptor shares the parent's open file, which owns the
		// flock: locking it again succeeds at once and changes nothing.
		if syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			continue
		}
		adoptMu.Lock()
		f := adopted[fd]
		if f == nil {
			syscall.CloseOnExec(fd) // handed on only through Pass
			f = os.NewFile(uintptr(fd), p)
			adopted[fd] = f
		}
		adoptMu.Unlock()
		return &Lock{f: f, path: p, inherited: true}
	}
	return nil
}
