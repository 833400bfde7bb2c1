// Package procfs reads the process table from /proc.
package procfs

import (
	"bytes"
	"os"
	"strconv"
)

// Stat is a process's identity from /proc/PID/stat.
type Stat struct {
	PID, PPID, Pgrp, Session int
	State                    byte
	Comm                     string
	// Start is the start time (clock ticks since boot): with PID, it
	// identifies a process across PID reuse.
	Start uint64
}

// Read reads /proc/PID/stat.
func Read(pid int) (Stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, false
	}
	return Parse(pid, b)
}

// Parse parses the content of /proc/PID/stat. The command name, in
// parentheses, may itself contain spaces and parentheses.
func Parse(pid int, b []byte) (Stat, bool) {
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return Stat{}, false
	}
	f := bytes.Fields(b[j+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, false
	}
	s := Stat{PID: pid, State: f[0][0], Comm: string(b[i+1 : j])}
	var e1, e2, e3, e4 error
	s.PPID, e1 = strconv.Atoi(string(f[1]))
	s.Pgrp, e2 = strconv.Atoi(string(f[2]))
	s.Session, e3 = strconv.Atoi(string(f[3]))
	s.Start, e4 = strconv.ParseUint(string(f[19]), 10, 64)
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
		return Stat{}, false
	}
	return s, true
}

// Each calls fn for every process in /proc.
func Each(fn func(Stat)) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, ok := Read(pid); ok {
			fn(s)
		}
	}
}
