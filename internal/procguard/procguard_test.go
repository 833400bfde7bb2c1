//go:build linux

package procguard

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/internal/procfs"
)

// A process that started a shell with a background job (and registered it)
// is killed with SIGKILL: the guardian kills the shell's whole group, the
// grandchild included.
func TestGuardianKillsGroupsAfterSIGKILL(t *testing.T) {
	if os.Getenv("PROCGUARD_CHILD") == "1" {
		cmd := exec.Command("/bin/sh", "-c", "sleep 1000 & echo $! $$; wait")
		cmd.SysProcAttr = SysProcAttr(false)
		pids, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		if err := Watch(cmd.Process.Pid); err != nil {
			fmt.Println("FAIL", err)
			os.Exit(1)
		}
		// Only now is the group registered: the parent may kill us once
		// it has read the PIDs.
		line, _ := bufio.NewReader(pids).ReadString('\n')
		fmt.Print(line)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGuardianKillsGroupsAfterSIGKILL$")
	cmd.Env = append(os.Environ(), "PROCGUARD_CHILD=1")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	var procs []procfs.Stat
	for _, f := range strings.Fields(line) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("child said %q", line)
		}
		st, ok := procfs.Read(pid)
		if !ok {
			t.Fatalf("process %d is not there", pid)
		}
		procs = append(procs, st)
	}
	if len(procs) != 2 {
		t.Fatalf("child said %q", line)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if alive(p) {
				syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
	})
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range procs {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(p) {
			t.Errorf("%s (pid %d) outlived its SIGKILLed parent", p.Comm, p.PID)
		}
	}
}

func alive(p procfs.Stat) bool {
	st, ok := procfs.Read(p.PID)
	return ok && st.Start == p.Start && st.State != 'Z'
}
