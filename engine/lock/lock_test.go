package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
