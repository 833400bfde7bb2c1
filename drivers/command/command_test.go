package command

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/schematest"
)

func open(t *testing.T, doc string) (*Device, string) {
	t.Helper()
	dev, err := schematest.Decode(t, Name, doc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	d := dev.(*Device)
	if err := d.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	dir := t.TempDir()
	if err := d.Open(context.Background(), drivers.Env{Board: "bench-7", BaseDir: dir, Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dir
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSchema(t *testing.T) {
	schematest.Check(t, Name,
		[]string{
			"on: echo on\noff: echo off\n",
			"on: [uhubctl, -a, 'on']\noff: [uhubctl, -a, 'off']\nstatus: echo on\ncycle: echo c\nreset: echo r\ntimeout: 5s\ndir: scripts\nenv: {PLUG: '3'}\n",
		},
		[]string{
			"on: echo on\n",                        // off missing
			"on: echo on\noff: echo off\nbogus: 1", // unknown key
			"on: echo on\noff: echo off\ntimeout: 30",
			"on: []\noff: echo off\n",
			"on: echo on\noff: echo off\nenv: {'A=B': x}\n",
		})
}

func TestDecodeErrors(t *testing.T) {
	for _, doc := range []string{
		"on: echo on\noff: echo off\ntimeout: 30\n",    // bare number
		"on: echo on\noff: echo off\ntimeout: soon\n",  // not a duration
		"on: {x: 1}\noff: echo off\n",                  // mapping
		"on: echo on\noff: echo off\nunknown-key: 1\n", // strict
		"on: ''\noff: echo off\n",
	} {
		if _, err := schematest.Decode(t, Name, doc); err == nil {
			t.Errorf("decode accepted %q", doc)
		}
	}
	dev, err := schematest.Decode(t, Name, "on: echo on\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.(*Device).Validate(); err == nil || !strings.Contains(err.Error(), "off: a command is required") {
		t.Errorf("Validate without off: %v", err)
	}
}

func TestOnOffShellAndArgv(t *testing.T) {
	d, dir := open(t, `
on: "echo on > state; echo board $JSPLAN_BOARD plug $PLUG"
off: [/bin/sh, -c, "echo off > state"]
env: {PLUG: "4"}
`)
	ctx := context.Background()
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "state")); got != "on\n" {
		t.Errorf("after On: state %q", got)
	}
	if err := d.Off(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "state")); got != "off\n" {
		t.Errorf("after Off: state %q", got)
	}
}

func TestFailureCarriesExitCodeAndStderr(t *testing.T) {
	d, _ := open(t, `
on: "echo starting; echo 'relay 3: no such device' >&2; exit 3"
off: [/nonexistent/relay-tool, off]
`)
	err := d.On(context.Background())
	var de *drivers.Error
	if !errors.As(err, &de) || de.Driver != Name || de.Op != "on" {
		t.Fatalf("On error %v (%T), want *drivers.Error for command/on", err, err)
	}
	for _, want := range []string{"status 3", "relay 3: no such device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	err = d.Off(context.Background())
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "cannot start") || !strings.Contains(err.Error(), "relay-tool") {
		t.Errorf("Off with a missing program: %v", err)
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	d, _ := open(t, `
on: [/bin/sh, -c, "exit 1", "--password=hunter2"]
off: "exit 1 # --password=hunter2"
`)
	for _, err := range []error{d.On(context.Background()), d.Off(context.Background())} {
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %v: want an error without the arguments", err)
		}
	}
}

// TestTimeoutKillsProcessGroup runs a command whose child ignores the
// leader's fate and checks both are gone after the timeout.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	d, dir := open(t, `
on: "sleep 300 & echo $! > child.pid; echo hung >&2; wait"
off: echo off
timeout: 300ms
`)
	err := d.On(context.Background())
	if err == nil || !strings.Contains(err.Error(), "did not finish within 300ms") || !strings.Contains(err.Error(), "process group was killed") {
		t.Fatalf("On: %v", err)
	}
	if !strings.Contains(err.Error(), "hung") {
		t.Errorf("timeout error lacks the stderr tail: %v", err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "child.pid"))))
	if perr != nil {
		t.Fatal(perr)
	}
	// The child was SIGKILLed with its group; it may linger briefly as a
	// zombie until init reaps it, so wait for it to stop running.
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d of the timed-out command is still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3, after "(comm)", is the state.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func TestCancelKillsCommand(t *testing.T) {
	d, _ := open(t, "on: sleep 300\noff: echo off\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.On(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("On after cancel: %v", err)
	}
}

func TestCycleAndResetFallbacks(t *testing.T) {
	d, dir := open(t, `
on: "echo on >> log"
off: "echo off >> log"
`)
	if err := d.Cycle(context.Background(), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "log")); got != "off\non\n" {
		t.Errorf("cycle without a cycle command ran %q, want off then on", got)
	}
}

func TestNativeCycleAndReset(t *testing.T) {
	d, dir := open(t, `
on: "echo on >> log"
off: "echo off >> log"
cycle: "echo cycle >> log"
reset: ["/bin/sh", "-c", "echo reset >> log"]
`)
	ctx := context.Background()
	if err := d.Cycle(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "log")); got != "cycle\nreset\n" {
		t.Errorf("log %q", got)
	}
}

func TestPowerState(t *testing.T) {
	d, dir := open(t, `
on: "echo on > state"
off: "echo off > state"
status: "echo Chassis Power is $(cat state)"
`)
	ctx := context.Background()
	for _, want := range []bool{true, false} {
		var err error
		if want {
			err = d.On(ctx)
		} else {
			err = d.Off(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.PowerState(ctx)
		if err != nil || got != want {
			t.Errorf("PowerState = %v, %v; want %v", got, err, want)
		}
	}
	os.WriteFile(filepath.Join(dir, "state"), []byte("dunno\n"), 0o644)
	if _, err := d.PowerState(ctx); err == nil || !strings.Contains(err.Error(), "dunno") {
		t.Errorf("PowerState with garbage output: %v", err)
	}

	d2, _ := open(t, "on: 'true'\noff: 'true'\n")
	if _, err := d2.PowerState(ctx); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PowerState without status: %v, want ErrUnsupported", err)
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]bool{"on": true, "ON\n": true, "Power is off.": false, "1": true, "0\n": false, "status: true": true} {
		got, err := parseState(in)
		if err != nil || got != want {
			t.Errorf("parseState(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "  \n", "maybe"} {
		if _, err := parseState(in); err == nil {
			t.Errorf("parseState(%q) accepted", in)
		}
	}
}
