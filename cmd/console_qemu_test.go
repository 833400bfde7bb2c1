package cmd

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestConsoleQEMU is a person at a real (emulated) x86_64 board: jsplan
// console starts QEMU (TCG, so it runs where KVM is missing or broken),
// shows the boot of the built image on the serial console, logs in, runs a
// command, power-cycles the machine from the menu and sees it boot again,
// and detaches, which stops QEMU and leaves the terminal sane.
func TestConsoleQEMU(t *testing.T) {
	e2eNeedTool(t, "qemu-system-x86_64", "qemu-system-x86")
	e := newEnv(t)
	image, id := e2eBuildImage(t, filepath.Join(e.dir, "image"))
	e.boards = e.write("qemu.yaml", fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: qemu-1
    drivers:
      qemu: {disk: %s, accel: tcg, powerdown-timeout: 3s}
`, image))
	const boot = 4 * time.Minute // TCG on a loaded 2-core machine
	p := e.startTerm(e.consoleArgs("qemu-1", "--power-on")...)
	p.expect("attached to the console of qemu-1", consoleWait)
	p.requireRaw()
	p.expect("jsplan test image "+id, boot)
	p.expect("login: ", boot)
	qemu := descendants(p.cmd.Process.Pid)
	killLater(t, qemu)
	if len(qemu) == 0 {
		t.Fatal("no QEMU process below jsplan console")
	}
	p.send("root\r")
	p.expect("Password: ", consoleWait)
	p.send(e2ePassword + "\r")
	p.expect("root@qemu:~# ", consoleWait)
	p.send("echo q-$((6*7)) $(cat /etc/image-id)\r")
	p.expect("q-42 "+id, consoleWait)

	p.send("\r~c")
	p.expect("qemu-1: power cycle: done", boot)
	p.expect("jsplan test image "+id, boot)
	p.expect("login: ", boot)
	again := descendants(p.cmd.Process.Pid) // the cycle started a new QEMU
	killLater(t, again)
	qemu = append(qemu, again...)

	p.send("\r~.")
	p.expect("detached from qemu-1", consoleWait)
	if code := p.wait(consoleWait); code != 0 {
		t.Fatalf("exit status %d after detaching, want 0\n%s", code, p.tail())
	}
	p.requireSane()
	e.requireFree("qemu-1")
	for _, q := range qemu {
		if q.alive() {
			t.Errorf("%s (pid %d) outlived the console session", q.comm, q.pid)
		}
	}
	if logs := e.sessionLogs(); len(logs) != 1 {
		t.Errorf("session logs: %v", logs)
	}
}
