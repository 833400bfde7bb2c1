package sshdtest_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/internal/sshdtest"
)

// The server runs commands for the client key, refuses other keys, and
// takes its processes with it when the test ends: sshd, its session
// processes and an ssh client still connected.
func TestSSHServer(t *testing.T) {
	var sshdPID, orphan int
	var client *exec.Cmd
	var s *sshdtest.Server
	t.Run("server", func(t *testing.T) {
		s = sshdtest.Start(t)
		sshdPID = s.PID()
		if s.Host != "127.0.0.1" || s.Port <= 0 || s.User == "" || s.KeyFile == "" {
			t.Fatalf("bad server fields: %+v", s)
		}
		out, err := exec.Command("ssh", append(s.SSHArgs(), "echo hello-$((6*7))")...).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh: %v\n%s\nsshd log:\n%s", err, out, s.Log())
		}
		if got := strings.TrimSpace(string(out)); got != "hello-42" {
			t.Fatalf("ssh output %q, want hello-42", got)
		}

		// Another key is refused.
		other := t.TempDir() + "/other"
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		args := s.SSHArgs()
		for i, a := range args {
			if a == s.KeyFile {
				args[i] = other
			}
		}
		if out, err := exec.Command("ssh", append(args, "true")...).CombinedOutput(); err == nil {
			t.Fatalf("ssh with an unknown key logged in:\n%s", out)
		}

		// Sessions get their own HOME: the user's ~/.bashrc is not read.
		out, err = exec.Command("ssh", append(s.SSHArgs(), `echo "$HOME"`)...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != s.Home {
			t.Errorf("HOME in a session = %q (%v), want %s", out, err, s.Home)
		}

		// A process left running on the "board", orphaned at once.
		out, err = exec.Command("ssh", append(s.SSHArgs(), "sleep 600 </dev/null >/dev/null 2>&1 & echo $!")...).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, out)
		}
		if orphan, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
			t.Fatalf("no pid from the board: %q", out)
		}
		if !slices.Contains(s.Processes(), orphan) {
			t.Errorf("the orphaned session process %d is not attributed to the server:\n%s", orphan, sshdtest.Describe(s.Processes()))
		}

		// A client that is still connected when the test ends.
		client = exec.Command("ssh", append(s.SSHArgs(), "sleep 600")...)
		if err := client.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(s.Processes()) < 3 { // sshd, its session process, the client
			if time.Now().After(deadline) {
				t.Fatalf("the session did not start; processes:\n%s\nsshd log:\n%s", sshdtest.Describe(s.Processes()), s.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	if sshdPID == 0 || client == nil {
		return
	}
	if err := syscall.Kill(sshdPID, 0); err == nil {
		t.Errorf("sshd (pid %d) still runs after the test", sshdPID)
	}
	done := make(chan error, 1)
	go func() { done <- client.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = client.Process.Kill()
		t.Errorf("the connected ssh client (pid %d) was not ended with the server", client.Process.Pid)
	}
	if alive(orphan) {
		t.Errorf("the orphaned process %d on the board survived the server", orphan)
	}
	if left := s.Processes(); len(left) > 0 {
		t.Errorf("processes of the server survived it:\n%s", sshdtest.Describe(left))
	}
}

// alive tells whether pid runs (zombies are dead).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}
