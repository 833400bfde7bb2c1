//go:build linux

package sim

import (
	"strings"
	"testing"
)

// BenchmarkBootToLogin measures power on to the login prompt, with no boot
// delay, then power off.
func BenchmarkBootToLogin(b *testing.B) {
	bd := newBoard(b, "boot-delay: 0s\n")
	for b.Loop() {
		bd.on()
		bd.con.waitFor("sim login: ")
		bd.off()
	}
}

// BenchmarkLoginAndCommand measures a login, one command and power off.
func BenchmarkLoginAndCommand(b *testing.B) {
	bd := newBoard(b, "boot-delay: 0s\n")
	for b.Loop() {
		bd.on()
		bd.login()
		if out := bd.run("echo ok"); !strings.Contains(out, "ok\r\n") {
			b.Fatalf("echo ok gave %q", out)
		}
		bd.off()
	}
}

// BenchmarkCommand measures one command round trip in a running shell.
func BenchmarkCommand(b *testing.B) {
	bd := newBoard(b, "boot-delay: 0s\n")
	bd.on()
	bd.login()
	for b.Loop() {
		bd.run("true")
	}
}

// BenchmarkConsoleDownload measures board-to-host console throughput
// (base64 of 1 MiB).
func BenchmarkConsoleDownload(b *testing.B) {
	bd := newBoard(b, "boot-delay: 0s\n")
	bd.on()
	bd.login()
	bd.run("head -c 1048576 /dev/zero > z.bin")
	b.SetBytes(1 << 20)
	for b.Loop() {
		bd.con.send("base64 z.bin; echo END-$((40+2))\r")
		bd.con.waitFor("END-42\r\n")
		bd.con.waitFor("root@sim:~# ")
	}
}
