package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/internal/lock"
)

// plugBoards has a board powered by host commands that keep its state in a
// file (as a smart plug keeps its relay), and the virtual board.
const plugBoards = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: plug-1
    drivers:
      command:
        on: "echo on >> plug.log; echo on > plug.state"
        off: "echo off >> plug.log; echo off > plug.state"
        status: "cat plug.state 2>/dev/null || echo off"
  - name: sim-1
    drivers:
      sim: {password: sim-password, boot-delay: 5ms}
`

func (e *testEnv) powerArgs(board, action string, extra ...string) []string {
	return append([]string{"power", board, action, "--boards", e.boards, "--lock-dir", e.locks, "--state-dir", e.state}, extra...)
}

// TestPowerCommand switches a board that keeps its power state through
// every action, under its lock.
func TestPowerCommand(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("boards.yaml", plugBoards)
	plugLog := func() string {
		b, _ := os.ReadFile(filepath.Join(e.dir, "plug.log"))
		return strings.Join(strings.Fields(string(b)), " ")
	}
	for _, step := range []struct {
		action, stdout, log string
	}{
		{"status", "off\n", ""},
		{"on", "plug-1: on done (power on)\n", "on"},
		{"status", "on\n", "on"},
		{"cycle", "plug-1: cycle done (power on)\n", "on off on"},
		{"reset", "plug-1: reset done (power on)\n", "on off on off on"},
		{"off", "plug-1: off done (power off)\n", "on off on off on off"},
		{"status", "off\n", "on off on off on off"},
	} {
		r := e.run(e.powerArgs("plug-1", step.action, "--delay", "10ms")...)
		if r.code != 0 || r.stdout != step.stdout || plugLog() != step.log {
			t.Fatalf("power %s: want %q, commands %q; got %v\ncommands run: %q", step.action, step.stdout, step.log, r, plugLog())
		}
		e.requireFree("plug-1")
	}
	// The command driver resets by cycling when it has no reset command.
	r := e.run(e.powerArgs("plug-1", "status", "-o", "json")...)
	var got map[string]string
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil || got["power"] != "off" || got["board"] != "plug-1" {
		t.Errorf("power status -o json: %v", r)
	}

	// A virtual board says that it does not stay on.
	r = e.run(e.powerArgs("sim-1", "on")...)
	if r.code != 0 || !strings.Contains(r.stderr, "sim-1 is a virtual board inside jsplan: it goes off again") {
		t.Errorf("power sim-1 on: %v", r)
	}

	// A busy board: wait, then give up naming the holder.
	l, _, err := lock.TryAcquire(e.locks, "plug-1", lock.Holder{Plan: "nightly", PID: 1, Host: "ci", User: "bot"})
	if err != nil || l == nil {
		t.Fatal(err)
	}
	r = e.run(e.powerArgs("plug-1", "on", "--lock-wait", "300ms")...)
	l.Release()
	if r.code != 3 || !strings.Contains(r.stderr, `board plug-1 is busy, held by plan "nightly" (user bot, pid 1 on ci`) || plugLog() != "on off on off on off" {
		t.Errorf("power on a busy board: %v", r)
	}
}

// TestPowerUsage: help and usage errors.
func TestPowerUsage(t *testing.T) {
	e := newEnv(t)
	e.boards = e.write("boards.yaml", plugBoards+`  - name: uart-only
    drivers:
      serial: {port: /dev/null}
`)
	if r := e.run("power", "--help"); r.code != 0 || !strings.Contains(r.stdout, "on|off|cycle|reset|status") {
		t.Errorf("power --help: %v", r)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{e.powerArgs("plug-1", "toggle"), `unknown power action "toggle"`},
		{e.powerArgs("nope", "on"), `no board "nope" in the inventory`},
		{[]string{"power", "plug-1"}, "power needs a board and one of on, off, cycle, reset, status"},
		{e.powerArgs("plug-1", "on", "-o", "yaml"), "--output must be one of text, json"},
		{e.powerArgs("uart-only", "on"), "board uart-only has no power driver (it serves: console)"},
	} {
		if r := e.run(tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: want exit 2 saying %q; got %v", tc.args, tc.want, r)
		}
	}
}
