package cmd

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestQEMUTwoBoardsOnOneSegment boots two QEMU boards on one emulated
// Ethernet segment (socket netdevs that are each other's UDP peer on
// 127.0.0.1: a real L2 link between the guests), starts a server on one
// and a client on the other and checks the traffic
// (plans/examples/two-qemu-boards.yaml). Then the client fails while the
// server waits: the server's branch is stopped and both boards' finally
// steps run.
func TestQEMUTwoBoardsOnOneSegment(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU: skipped under -short")
	}
	e2eNeedTool(t, "qemu-system-x86_64", "qemu-system-x86")
	t.Parallel()
	e := newEnv(t)
	image, _ := e2eBuildImage(t, filepath.Join(e.dir, "image"), "--ssh")
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	nic := func(local, peer int, mac string) string {
		return fmt.Sprintf(`[-netdev, "socket,id=l2,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", -device, "virtio-net-pci,netdev=l2,mac=%s"]`, peer, local, mac)
	}
	inv := e.write("l2.yaml", fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
resources:
  - {name: segment-1, kind: ethernet}
boards:
  - name: qemu-a
    labels: {kind: qemu-l2, segment: s1}
    resources: [segment-1]
    vars: {ip: 192.168.77.1}
    drivers:
      qemu: {extra-args: %s}
  - name: qemu-b
    labels: {kind: qemu-l2, segment: s1}
    resources: [segment-1]
    vars: {ip: 192.168.77.2}
    drivers:
      qemu: {extra-args: %s}
`, nic(pa, pb, "52:54:00:77:00:01"), nic(pb, pa, "52:54:00:77:00:02")))
	plan, err := filepath.Abs("../plans/examples/two-qemu-boards.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer checkNoQEMUUnder(t, e.state)

	art := filepath.Join(e.dir, "pass")
	r := e.run(e.applyArgs(plan, art, "--boards", inv, "--set", "image="+image, "--set", "password="+e2ePassword)...)
	if r.code != 0 {
		t.Fatalf("two QEMU boards: %s", r)
	}
	res := readReport(t, art)
	byName := map[string]*engine.StepResult{}
	for _, s := range flatten(res.Steps) {
		byName[s.Name] = s
	}
	if s := byName["server receives"]; s == nil || s.Board != "qemu-a" || !strings.Contains(s.Output, "hello-over-l2") {
		t.Errorf("the server did not receive the message over the link: %+v", s)
	}
	if s := byName["client reaches the server"]; s == nil || s.Board != "qemu-b" {
		t.Errorf("ping step: %+v", s)
	}
	for _, b := range []string{"qemu-a", "qemu-b"} {
		clog, err := os.ReadFile(filepath.Join(art, "console-"+b+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(clog), "login:") || !strings.Contains(string(clog), "finally on qemu") {
			t.Errorf("console-%s.log lacks the boot or the finally step:\n%s", b, clog)
		}
	}

	// the client fails at once while the server waits for it
	art = filepath.Join(e.dir, "fail")
	r = e.run(e.applyArgs(plan, art, "--boards", inv, "--set", "image="+image, "--set", "password="+e2ePassword, "--set", "client-check=false")...)
	if r.code != 1 {
		t.Fatalf("want exit 1 when the client fails, got %s", r)
	}
	res = readReport(t, art)
	byName = map[string]*engine.StepResult{}
	for _, s := range flatten(res.Steps) {
		byName[s.Name] = s
	}
	if s := byName["client sends"]; s == nil || s.Status != result.Failed {
		t.Errorf("client step: %+v", s)
	}
	if s := byName["server receives"]; s == nil || s.Status != result.Failed || !strings.Contains(s.Error, "stopped: parallel branch") {
		t.Errorf("the waiting server was not stopped for the failing client: %+v", s)
	}
	if len(res.Finally) != 4 {
		t.Fatalf("finally: %d steps", len(res.Finally))
	}
	for _, f := range res.Finally {
		if f.Status != result.Passed {
			t.Errorf("finally %s on %s: %s %s", f.Name, f.Board, f.Status, f.Error)
		}
	}
	for _, b := range []string{"qemu-a", "qemu-b"} {
		clog, _ := os.ReadFile(filepath.Join(art, "console-"+b+".log"))
		if !strings.Contains(string(clog), "finally on qemu") || !strings.Contains(string(clog), "Power down") {
			t.Errorf("board %s: its finally did not run (no mark, no power down):\n%s", b, clog)
		}
	}
}

// checkNoQEMUUnder fails, and kills them, if QEMU processes whose command
// line names a path under dir still run.
func checkNoQEMUUnder(t *testing.T, dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(dir+"/")) || !bytes.Contains(cmdline, []byte("qemu")) {
			continue
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		t.Errorf("qemu pid %d still runs after the test: killing it", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
