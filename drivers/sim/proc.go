//go:build linux

package sim

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// killSession kills the process group and the session led by pid, a shell
// the board started with setsid: pid itself, its foreground and background
// jobs (each in their own process group under job control) and anything else
// left in its session. Zombies are skipped. It never signals a process
// outside that session.
func killSession(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	// A member may fork while it is being killed, and SIGKILL takes effect
	// asynchronously: scan again until the session is empty, so the board is
	// really off when this returns (bounded at 5 s, as a safety net).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		members := sessionMembers(pid)
		if len(members) == 0 {
			return
		}
		for _, p := range members {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sessionMembers lists the live (non-zombie) processes in session sid,
// other than sid itself.
func sessionMembers(sid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == sid {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		state, _, _, session, ok := parseStat(st)
		if ok && session == sid && state != 'Z' && state != 'X' {
			pids = append(pids, p)
		}
	}
	return pids
}

// parseStat reads state, ppid, pgrp and session from /proc/PID/stat. The
// command name, in parentheses, may itself contain spaces and parentheses.
func parseStat(b []byte) (state byte, ppid, pgrp, session int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 4 || len(f[0]) != 1 {
		return 0, 0, 0, 0, false
	}
	var err1, err2, err3 error
	ppid, err1 = strconv.Atoi(string(f[1]))
	pgrp, err2 = strconv.Atoi(string(f[2]))
	session, err3 = strconv.Atoi(string(f[3]))
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, 0, false
	}
	return f[0][0], ppid, pgrp, session, true
}
