package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExclusiveAndReleased(t *testing.T) {
	dir := t.TempDir()
	me := Holder{Plan: "a", PID: os.Getpid(), Host: "h", Since: time.Now().Truncate(time.Second)}
	l, h, err := TryAcquire(dir, "board/1", me)
	if err != nil || l == nil || h != nil {
		t.Fatalf("first acquire: %v %v %v", l, h, err)
	}
	// flock locks are per open file description: a second open conflicts
	l2, h2, err := TryAcquire(dir, "board/1", Holder{Plan: "b"})
	if err != nil || l2 != nil {
		t.Fatalf("second acquire should fail: %v %v", l2, err)
	}
	if h2 == nil || h2.Plan != "a" || h2.PID != me.PID || h2.Board != "board/1" {
		t.Fatalf("holder not reported: %+v", h2)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l3, _, err := TryAcquire(dir, "board/1", Holder{Plan: "c"})
	if err != nil || l3 == nil {
		t.Fatalf("acquire after release: %v", err)
	}
	l3.Release()
	if _, err := os.Stat(Path(dir, "board/1")); err != nil {
		t.Fatalf("lock file must stay (deleting it races): %v", err)
	}
}

func TestWaitTimesOutWithHolder(t *testing.T) {
	dir := t.TempDir()
	l, _, _ := TryAcquire(dir, "b", Holder{Plan: "holder-plan", PID: 4242, Host: "h1"})
	defer l.Release()
	notified := 0
	_, _, err := Acquire(context.Background(), dir, []string{"b"}, Holder{Plan: "w"}, 600*time.Millisecond,
		func(b string, h *Holder) { notified++ })
	var be *BusyError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "holder-plan") || !strings.Contains(err.Error(), "4242") {
		t.Fatalf("want BusyError naming the holder, got %v", err)
	}
	if notified != 1 {
		t.Fatalf("notify called %d times, want 1", notified)
	}
}

func TestAcquireTakesAFreeBoard(t *testing.T) {
	dir := t.TempDir()
	l, _, _ := TryAcquire(dir, "b1", Holder{Plan: "x"})
	defer l.Release()
	l2, name, err := Acquire(context.Background(), dir, []string{"b1", "b2"}, Holder{Plan: "y"}, time.Second, nil)
	if err != nil || name != "b2" {
		t.Fatalf("got %q %v", name, err)
	}
	l2.Release()
}

// A holder that dies (SIGKILL) leaves no lock behind.
func TestCrashedHolderReleases(t *testing.T) {
	if os.Getenv("JSPLAN_LOCK_CHILD") != "" {
		_, _, err := TryAcquire(os.Getenv("JSPLAN_LOCK_CHILD"), "b", Holder{Plan: "child", PID: os.Getpid()})
		if err != nil {
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Minute)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=TestCrashedHolderReleases")
	cmd.Env = append(os.Environ(), "JSPLAN_LOCK_CHILD="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "locked") {
		t.Fatalf("child did not lock: %q", buf[:n])
	}
	if l, _, _ := TryAcquire(dir, "b", Holder{}); l != nil {
		t.Fatal("lock should be held by the child")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	l, _, err := Acquire(context.Background(), dir, []string{"b"}, Holder{Plan: "after"}, 5*time.Second, nil)
	if err != nil {
		t.Fatalf("lock not released by the crash: %v", err)
	}
	l.Release()
}

// A lock passed to a command (Pass) is taken by that command at once, and
// stays held by the parent after the command released it; a command that
// did not inherit it finds the board busy.
func TestPassedLock(t *testing.T) {
	if dir := os.Getenv("JSPLAN_LOCK_PASSED"); dir != "" {
		l, h, err := TryAcquire(dir, "b", Holder{Plan: "child"})
		switch {
		case err != nil:
			os.Stdout.WriteString("error " + err.Error())
		case l == nil && h != nil:
			os.Stdout.WriteString("busy " + h.Plan)
		case l == nil:
			os.Stdout.WriteString("busy")
		case l.Inherited():
			l.Release()
			// Taking it again in the same process still works.
			if l2, _, _ := TryAcquire(dir, "b", Holder{}); l2 == nil || !l2.Inherited() {
				os.Stdout.WriteString("lost")
				os.Exit(0)
			}
			os.Stdout.WriteString("inherited")
		default:
			os.Stdout.WriteString("own")
		}
		os.Exit(0)
	}
	dir := t.TempDir()
	l, _, err := TryAcquire(dir, "b", Holder{Plan: "parent"})
	if err != nil || l == nil {
		t.Fatalf("TryAcquire = %v, %v", l, err)
	}
	defer l.Release()
	child := func(pass bool) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPassedLock$")
		cmd.Env = append(os.Environ(), "JSPLAN_LOCK_PASSED="+dir)
		if pass {
			l.Pass(cmd)
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		return string(out)
	}
	if got := child(true); got != "inherited" {
		t.Errorf("child with the passed lock: %q, want inherited", got)
	}
	if got := child(false); got != "busy parent" {
		t.Errorf("child without the passed lock: %q, want busy parent", got)
	}
	if l2, _, _ := TryAcquire(dir, "b", Holder{}); l2 != nil {
		t.Fatal("the child's release dropped the parent's lock")
	}
	// A stale variable (another file, no such descriptor, garbage) is ignored.
	other, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	t.Setenv(EnvHeld, fmt.Sprintf("%d=%s:999=%s:x=y", other.Fd(), Path(dir, "b"), Path(dir, "b")))
	if l2, _, _ := TryAcquire(dir, "b", Holder{}); l2 != nil {
		t.Fatal("a stale JSPLAN_LOCK_HELD took a held lock")
	}
}

func TestHolderString(t *testing.T) {
	h := Holder{Plan: "jsplan console", User: "alice", PID: 7, Host: "h", Since: time.Unix(0, 0).UTC()}
	if got, want := h.String(), `plan "jsplan console" (user alice, pid 7 on h, since 1970-01-01T00:00:00Z)`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// A lock file planted as a symlink (or a hard link, a FIFO, a directory)
// is refused, and the file it points to is left alone.
func TestRefusesPlantedLockFiles(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plant := map[string]func(p string) error{
		"symlink":   func(p string) error { return os.Symlink(victim, p) },
		"hard link": func(p string) error { return os.Link(victim, p) },
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o666) },
		"directory": func(p string) error { return os.Mkdir(p, 0o755) },
	}
	for what, mk := range plant {
		t.Run(what, func(t *testing.T) {
			board := strings.ReplaceAll(what, " ", "-")
			if err := mk(Path(dir, board)); err != nil {
				t.Fatal(err)
			}
			l, _, err := TryAcquire(dir, board, Holder{Plan: "p"})
			var ue *UnsafeError
			if l != nil || !errors.As(err, &ue) {
				t.Fatalf("want an UnsafeError, got lock %v, err %v", l, err)
			}
			t.Log(err)
			if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
				t.Fatalf("the target was changed: %q", b)
			}
		})
	}
}

// A lock directory another user controls is refused with a clear error.
func TestRefusesUnsafeDirectory(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777) // writable by all, no sticky bit
	_, _, err := TryAcquire(open, "b", Holder{})
	var ue *UnsafeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "sticky") {
		t.Fatalf("world-writable dir without sticky bit: %v", err)
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o755)
		os.Chown(other, 65534, 65534)
		_, _, err = TryAcquire(other, "b", Holder{})
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("dir owned by another user: %v", err)
		}
		// A symlink another user planted as the lock directory.
		link := filepath.Join(base, "link")
		os.Symlink(t.TempDir(), link)
		os.Lchown(link, 65534, 65534)
		_, _, err = TryAcquire(link, "b", Holder{})
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "symlink owned by uid 65534") {
			t.Fatalf("a lock directory symlinked by another user: %v", err)
		}
		// Nor a shared 1777 directory of another user: its owner may
		// remove any lock file in it (issue 22, item 10).
		os.Chmod(other, 0o777|os.ModeSticky)
		_, _, err = TryAcquire(other, "b", Holder{})
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("a shared 1777 dir owned by another user: %v", err)
		}
	}
	sticky := filepath.Join(base, "sticky")
	os.Mkdir(sticky, 0o755)
	os.Chmod(sticky, 0o777|os.ModeSticky)
	l, _, err := TryAcquire(sticky, "b", Holder{})
	if err != nil || l == nil {
		t.Fatalf("a sticky world-writable dir (like /tmp) is fine: %v", err)
	}
	l.Release()
}

// The directory and file modes do not depend on the umask, so that users
// with different UIDs share the lock directory.
func TestModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "locks")
	l, _, err := TryAcquire(dir, "b", Holder{})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	di, _ := os.Stat(dir)
	fi, _ := os.Stat(Path(dir, "b"))
	if di.Mode()&(os.ModePerm|os.ModeSticky) != DirMode || fi.Mode().Perm() != FileMode {
		t.Fatalf("modes: dir %v (want %v), file %v (want %v)", di.Mode(), DirMode, fi.Mode(), FileMode)
	}
}

// A second user takes and releases a board lock in a directory and file
// root created (run as root: the child drops to uid 65534).
func TestSharedBetweenUsers(t *testing.T) {
	if os.Getenv("JSPLAN_LOCK_USER") != "" {
		dir := os.Getenv("JSPLAN_LOCK_USER")
		l, _, err := TryAcquire(dir, "b", Holder{Plan: "nobody", PID: os.Getpid()})
		if err != nil || l == nil {
			fmt.Printf("FAIL %v\n", err)
			os.Exit(1)
		}
		l.Release()
		l, _, err = TryAcquire(dir, "new-board", Holder{Plan: "nobody"})
		if err != nil || l == nil {
			fmt.Printf("FAIL new board: %v\n", err)
			os.Exit(1)
		}
		l.Release()
		fmt.Println("OK")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a second user")
	}
	base, err := os.MkdirTemp("", "jsplan-lock-users-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	exe := filepath.Join(base, "lock.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o022)
	dir := filepath.Join(base, "locks")
	l, _, err := TryAcquire(dir, "b", Holder{Plan: "root"})
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	cmd := exec.Command(exe, "-test.run=^TestSharedBetweenUsers$")
	cmd.Env = append(os.Environ(), "JSPLAN_LOCK_USER="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("second user: %v\n%s", err, out)
	}
}

// Issue 22, item 10: a lock file another user owns in a shared directory
// is refused: that user could remove it while a run holds it, and a second
// run would create a new one and get the same board.
func TestRefusesLockFileAnotherUserCanRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a file of another user")
	}
	dir := filepath.Join(t.TempDir(), "locks")
	l, _, err := TryAcquire(dir, "mine", Holder{})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	p := Path(dir, "b")
	if err := os.WriteFile(p, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, 65534, 65534)
	_, _, err = TryAcquire(dir, "b", Holder{})
	var ue *UnsafeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "owned by uid 65534") || !strings.Contains(err.Error(), "install -m 0666") {
		t.Fatalf("a lock file of another user in a shared directory: %v", err)
	}
	// In a directory only root may write, the owner cannot remove it.
	private := filepath.Join(t.TempDir(), "private")
	os.Mkdir(private, 0o755)
	q := Path(private, "b")
	os.WriteFile(q, nil, 0o666)
	os.Chown(q, 65534, 65534)
	l, _, err = TryAcquire(private, "b", Holder{})
	if err != nil || l == nil {
		t.Fatalf("another user's lock file in root's 0755 directory: %v", err)
	}
	l.Release()
}

// Issue 22, item 10: a lock file replaced between its opening and the
// flock is refused: the flock would hold a file no other run opens.
func TestRefusesLockFileReplacedWhileLocking(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	testHookAfterFlock = func(p string) {
		os.WriteFile(p+".new", nil, 0o666)
		os.Rename(p+".new", p)
	}
	defer func() { testHookAfterFlock = nil }()
	_, _, err := TryAcquire(dir, "b", Holder{})
	var ue *UnsafeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "removed or replaced") {
		t.Fatalf("a lock file replaced while locking: %v", err)
	}
	testHookAfterFlock = nil
	l, _, err := TryAcquire(dir, "b", Holder{})
	if err != nil || l == nil {
		t.Fatalf("the lock afterwards: %v", err)
	}
	l.Release()
}
