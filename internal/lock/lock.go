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
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
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

// String describes the holder for people. Any local user can write the
// record: its texts are shown with control characters escaped, so that
// none reaches a terminal (an OSC 52 clipboard write, a screen clear).
func (h Holder) String() string {
	user := ""
	if h.User != "" {
		user = "user " + Printable(h.User) + ", "
	}
	return fmt.Sprintf("plan %q (%spid %d on %s, since %s)", h.Plan, user, h.PID, Printable(h.Host), h.Since.Format(time.RFC3339))
}

// Printable escapes the control characters of s (C0, DEL and C1, as \xNN
// or \uNNNN) and invalid UTF-8, so that s prints as text on a terminal.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
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
	// What names what was busy when it is not one board ("resource can0"
	// for AcquireAll).
	What string
}

func (e *BusyError) Error() string {
	who := "another run"
	if e.Holder != nil {
		who = e.Holder.String()
	}
	if e.What != "" {
		return fmt.Sprintf("%s is busy: held by %s; gave up after waiting %s", e.What, who, e.Waited.Round(time.Second))
	}
	return fmt.Sprintf("board %q is busy: held by %s; gave up after waiting %s", e.Board, who, e.Waited.Round(time.Second))
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Path is the lock file of a board in dir.
func Path(dir, board string) string {
	return filepath.Join(dir, unsafe.ReplaceAllString(board, "_")+".lock")
}

// Modes of the lock directory and the lock files. They are set explicitly,
// whatever the umask, so that runs under different users (pods with
// different UIDs on one node) share one lock directory: the directory is
// world-writable with the sticky bit, as /tmp is (anyone may create a board's
// lock file, nobody may delete or replace another user's), and a lock file
// is readable and writable by all (anyone may open it to flock it and record
// the holder). Share a directory only between users trusted not to hold
// locks forever: a flock cannot be taken away from its holder.
const (
	DirMode  os.FileMode = 0o777 | os.ModeSticky
	FileMode os.FileMode = 0o666
)

// UnsafeError reports a lock directory or file that another user could use
// to redirect jsplan's writes or break the locking (a symlink, a device, a
// directory writable by others without the sticky bit...).
type UnsafeError struct {
	Path   string
	Reason string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("refusing the lock %s: %s", e.Path, e.Reason)
}

// TryAcquire takes the lock without waiting. ok is false when it is held;
// holder then says by whom (when readable).
func TryAcquire(dir, board string, me Holder) (l *Lock, holder *Holder, err error) {
	p := Path(dir, board)
	if l := inherited(p); l != nil {
		return l, nil, nil
	}
	d, err := openDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	f, err := openFile(d, p)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		h := readHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, h, nil
		}
		return nil, nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// The flock holds the file we opened: the path must still name it
	// (not removed or replaced since), or another run may lock another
	// file under the same name.
	if testHookAfterFlock != nil {
		testHookAfterFlock(p)
	}
	if !sameFile(d, p, f) {
		f.Close()
		return nil, nil, &UnsafeError{Path: p, Reason: "the lock file was removed or replaced while it was being locked"}
	}
	me.Board = board
	b, _ := json.Marshal(me)
	_ = f.Truncate(0)
	_, _ = f.WriteAt(append(b, '\n'), 0)
	return &Lock{f: f, path: p}, nil, nil
}

// ReadHolder returns who holds the board's lock in dir according to its
// lock file, or nil when nobody is recorded. It never follows a symlink nor
// blocks on a FIFO planted in the lock's place.
func ReadHolder(dir, board string) *Holder {
	f, err := os.OpenFile(Path(dir, board), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return readHolder(f)
}

// openDir creates the lock directory when missing (with DirMode) and opens
// it, refusing a directory another user controls: it must be owned by root
// or by us (or be a shared 1777 directory), and must not be writable by
// others unless it has the sticky bit. The directory itself may be reached through a symlink (/var/lock is
// one on Debian); what is checked is the directory it leads to.
func openDir(dir string) (*os.File, error) {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, fmt.Errorf("lock directory: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err == nil {
			// chmod, not the mkdir mode: the umask must not narrow it.
			if err := os.Chmod(dir, DirMode); err != nil {
				return nil, fmt.Errorf("lock directory: %w", err)
			}
		} else if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock directory: %w", err)
		}
	}
	// The directory may be reached through a symlink (/var/lock is one),
	// but not through one another user planted (pointing at /etc, say).
	var lst unix.Stat_t
	if err := unix.Lstat(dir, &lst); err == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK &&
		lst.Uid != 0 && lst.Uid != uint32(os.Geteuid()) {
		return nil, &UnsafeError{Path: dir, Reason: fmt.Sprintf("it is a symlink owned by uid %d", lst.Uid)}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return nil, &UnsafeError{Path: dir, Reason: "not a directory"}
		}
		return nil, fmt.Errorf("lock directory %s: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("lock directory %s: %w", dir, err)
	}
	uid := uint32(os.Geteuid())
	switch {
	case st.Uid != 0 && st.Uid != uid:
		// Even a shared 1777 directory: its owner may remove any lock
		// file in it, held or not, and a second run then takes the
		// board.
		d.Close()
		return nil, &UnsafeError{Path: dir, Reason: fmt.Sprintf("the directory is owned by uid %d (neither root nor us, uid %d): its owner could remove a held lock file and give the board to a second run; a directory shared by several users must be root's (mode 1777)", st.Uid, uid)}
	case st.Mode&unix.S_IWOTH != 0 && st.Mode&unix.S_ISVTX == 0:
		d.Close()
		return nil, &UnsafeError{Path: dir, Reason: fmt.Sprintf("the directory is writable by others without the sticky bit (mode %04o): anyone could replace the lock files; chmod 1777 it", st.Mode&0o7777)}
	}
	return d, nil
}

// openFile opens (creating it, with FileMode) the lock file p in the
// directory d, never following a symlink, and refuses anything but a plain
// file with one link: a symlink or hard link planted by another user would
// otherwise make jsplan (perhaps root) truncate a file outside the lock
// directory, a FIFO would block.
func openFile(d *os.File, p string) (*os.File, error) {
	name := filepath.Base(p)
	const flags = unix.O_RDWR | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	var pre unix.Stat_t
	if err := unix.Fstatat(int(d.Fd()), name, &pre, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		switch pre.Mode & unix.S_IFMT {
		case unix.S_IFREG:
		case unix.S_IFLNK:
			return nil, &UnsafeError{Path: p, Reason: "it is a symlink"}
		default:
			// Not even opened: opening a device or a FIFO has effects.
			return nil, &UnsafeError{Path: p, Reason: "not a regular file"}
		}
	}
	var fd int
	var err error
	for range 3 {
		// An existing file is opened without O_CREAT: in a sticky
		// world-writable directory, O_CREAT on another user's file is
		// refused by fs.protected_regular.
		fd, err = unix.Openat(int(d.Fd()), name, flags, 0)
		if !errors.Is(err, unix.ENOENT) {
			break
		}
		fd, err = unix.Openat(int(d.Fd()), name, flags|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err == nil {
			// fchmod, not the create mode: the umask must not narrow it.
			if err = unix.Fchmod(fd, uint32(FileMode.Perm())); err != nil {
				unix.Close(fd)
			}
			break
		}
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK) {
			return nil, &UnsafeError{Path: p, Reason: "it is a symlink"}
		}
		if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EISDIR) {
			return nil, &UnsafeError{Path: p, Reason: "not a regular file"}
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	var dst unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &dst); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	uid := uint32(os.Geteuid())
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		f.Close()
		return nil, &UnsafeError{Path: p, Reason: "not a regular file"}
	case st.Nlink != 1:
		f.Close()
		return nil, &UnsafeError{Path: p, Reason: fmt.Sprintf("the file has %d hard links", st.Nlink)}
	case st.Uid != 0 && st.Uid != uid && dst.Mode&(unix.S_IWGRP|unix.S_IWOTH) != 0:
		// In a directory others may write, the file's owner may remove
		// it while we hold it (the sticky bit lets owners remove their
		// files): a second run would then create a new one and take the
		// board.
		f.Close()
		return nil, &UnsafeError{Path: p, Reason: fmt.Sprintf("the lock file is owned by uid %d (neither root nor us, uid %d), who could remove it while it is held; "+
			"where several users share a lock directory, root creates the lock files (install -m 0666 /dev/null %s)", st.Uid, uid, p)}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return f, nil
}

// testHookAfterFlock, set by tests, runs between the flock and the check.
var testHookAfterFlock func(path string)

// sameFile reports whether the name p in d still is the open file f.
func sameFile(d *os.File, p string, f *os.File) bool {
	var a, b unix.Stat_t
	if unix.Fstatat(int(d.Fd()), filepath.Base(p), &a, unix.AT_SYMLINK_NOFOLLOW) != nil || unix.Fstat(int(f.Fd()), &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
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

// A passed lock's descriptor stays in this process (TryAcquire adopts it)
// but goes no further: from the start, nothing this process runs inherits
// it, whether or not it ever takes the lock.
func init() {
	for _, e := range strings.Split(os.Getenv(EnvHeld), ":") {
		fdText, _, ok := strings.Cut(e, "=")
		if fd, err := strconv.Atoi(fdText); ok && err == nil && fd >= 3 {
			syscall.CloseOnExec(fd)
		}
	}
}

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
