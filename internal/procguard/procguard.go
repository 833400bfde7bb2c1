//go:build linux

// Package procguard makes sure that no process jsplan starts outlives it,
// even when jsplan itself is killed with SIGKILL and gets no chance to clean
// up. Two mechanisms, because either alone leaves holes:
//
//   - Every child is started with Pdeathsig (SysProcAttr): the kernel kills
//     it when jsplan dies. That covers the direct child only; a shell's
//     background job or a program a script started is its grandchild.
//
//   - Every child is started in a process group or session of its own and
//     registered here (Watch). The first registration starts a guardian: a
//     copy of the running executable, in its own process group, reading a
//     pipe from jsplan. When jsplan dies, however it dies, the kernel closes
//     the pipe; the guardian then kills every process still in a registered
//     process group or session (found through /proc) and exits. Groups are
//     unregistered (Forget) once jsplan has reaped them, so the guardian
//     never signals a recycled PID.
//
//   - Every child is tagged (Tag): an environment variable its descendants
//     inherit. A process that moved to a process group or session of its
//     own (set -m, setpgid, setsid, a daemon) still carries it, and is
//     killed by its tag when the step ends (KillTagged) and by the guardian
//     when jsplan ends. Only a process that clears its environment (env -i,
//     a daemon that resets it) escapes.
package procguard

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jsplan/jsplan/internal/procfs"
)

// envVar, set to 1, makes the executable run as the guardian (see init);
// tokenEnv gives it the prefix of the tags (Tag) of the processes to end.
const (
	envVar   = "JSPLAN_PROCGUARD"
	tokenEnv = "JSPLAN_PROCGUARD_TOKEN"
)

func init() {
	if os.Getenv(envVar) == "1" {
		guard()
	}
}

var (
	mu    sync.Mutex
	pipe  *os.File // write end; the guardian reads the other
	gpid  int
	gdone chan struct{}
	start error
)

// SysProcAttr returns the attributes every child of jsplan should start
// with: its own process group (or session, with setsid) and Pdeathsig.
func SysProcAttr(setsid bool) *syscall.SysProcAttr {
	if setsid {
		return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	}
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Watch registers pid, the leader of a process group or session just
// started, so that the group and the session are killed if jsplan dies. It
// reports an error when the guardian cannot be started (the child still has
// its Pdeathsig).
func Watch(pid int) error {
	return send('+', pid)
}

// Forget unregisters pid once its group has been killed and reaped.
func Forget(pid int) {
	_ = send('-', pid)
}

func send(op byte, pid int) error {
	mu.Lock()
	defer mu.Unlock()
	if pipe == nil && start == nil {
		start = startGuardian()
	}
	if start != nil {
		return start
	}
	_, err := fmt.Fprintf(pipe, "%c%d\n", op, pid)
	return err
}

// Stop ends the guardian at jsplan's normal exit, once every child has
// been reaped: it kills what is still registered (nothing, normally) and
// exits; Stop waits for that (at most 5 s), so jsplan leaves no process.
// Watch starts a new guardian if called afterwards.
func Stop() {
	mu.Lock()
	p, done := pipe, gdone
	pipe, gpid, gdone, start = nil, 0, nil, nil
	mu.Unlock()
	if p == nil {
		return
	}
	p.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// GuardianPID is the guardian's PID, 0 while none runs (for tests).
func GuardianPID() int {
	mu.Lock()
	defer mu.Unlock()
	return gpid
}

func startGuardian() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("procguard: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"jsplan-procguard"}
	cmd.Env = []string{envVar + "=1", tokenEnv + "=" + myToken()}
	cmd.Stdin = r
	// Its own process group: a terminal's Ctrl-C, or a kill of jsplan's
	// group, does not take it down before it has done its job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("procguard: cannot start the guardian: %w", err)
	}
	gpid = cmd.Process.Pid
	done := make(chan struct{})
	gdone = done
	go func() { _ = cmd.Wait(); close(done) }()
	pipe = w
	return nil
}

// guard is the guardian's main: collect registrations until the pipe ends,
// then kill what is left, and exit.
func guard() {
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("jsplan-guard\x00")[0])), 0, 0, 0)
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	groups := map[int]bool{}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pid, err := strconv.Atoi(line[1:])
		if err != nil || pid <= 1 {
			continue
		}
		if line[0] == '+' {
			groups[pid] = true
		} else {
			delete(groups, pid)
		}
	}
	KillGroups(groups)
	// What left its group or session still carries jsplan's tags.
	killTagged(os.Getenv(tokenEnv)+"/", true)
	os.Exit(0)
}

// KillGroups kills every process whose process group or session is one of
// groups, scanning again until none is left (bounded at 5 s).
func KillGroups(groups map[int]bool) {
	if len(groups) == 0 {
		return
	}
	for g := range groups {
		_ = syscall.Kill(-g, syscall.SIGKILL)
		_ = syscall.Kill(g, syscall.SIGKILL)
	}
	self := os.Getpid()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		left := 0
		procfs.Each(func(p procfs.Stat) {
			if p.PID == self || p.State == 'Z' || p.State == 'X' {
				return
			}
			if groups[p.Pgrp] || groups[p.Session] {
				left++
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		})
		if left == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
