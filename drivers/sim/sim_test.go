//go:build linux

package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
)

func TestBootShowsImageID(t *testing.T) {
	b := newBoard(t, fastCfg)
	disk, err := b.dev.AttachHost(context.Background())
	if err != nil {
		t.Fatalf("AttachHost: %v", err)
	}
	if !filepath.IsAbs(disk) || disk != filepath.Join(b.state, "disk.img") {
		t.Fatalf("AttachHost = %q, want the absolute path of disk.img in the state dir", disk)
	}
	img := append(bytes.Repeat([]byte{0}, 4096), []byte("JSPLAN_IMAGE_ID=abc\n")...)
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.dev.AttachBoard(context.Background()); err != nil {
		t.Fatalf("AttachBoard: %v", err)
	}
	b.on()
	b.con.waitFor("sim: booting image abc\r\n")
	b.con.waitFor("sim login: ")
	got, err := os.ReadFile(filepath.Join(b.state, "root", "etc", "image-id"))
	if err != nil || string(got) != "abc\n" {
		t.Fatalf("root/etc/image-id = %q, %v; want \"abc\\n\"", got, err)
	}
	on, err := b.dev.PowerState(context.Background())
	if err != nil || !on {
		t.Fatalf("PowerState = %v, %v; want on", on, err)
	}
}

func TestBootWithoutDisk(t *testing.T) {
	b := newBoard(t, fastCfg)
	b.on()
	b.con.waitFor("sim: booting image none\r\n")
	b.con.waitFor("sim login: ")
}

func TestLogin(t *testing.T) {
	b := newBoard(t, fastCfg)
	b.on()
	b.con.waitFor("sim login: ")

	// Wrong password: the user name is echoed, the password is not.
	b.con.send("root\r")
	b.con.waitFor("root\r\nPassword: ")
	b.con.send("wrong\r\n")
	out := b.con.waitFor("Login incorrect\r\n")
	if strings.Contains(out, "wrong") {
		t.Fatalf("password echoed: %q", out)
	}
	b.con.waitFor("sim login: ")

	// Wrong user, typed with a backspace.
	b.con.send("admim\x7fn\n")
	b.con.waitFor("admim\b \bn\r\nPassword: ")
	b.con.send("jsplan\n")
	b.con.waitFor("Login incorrect\r\nsim login: ")

	// Right credentials, sent in one write with the first command.
	b.con.send("root\rjsplan\recho hello; echo $?\r")
	out = b.con.waitFor("root@sim:~# ")
	if !strings.Contains(out, "Welcome") {
		t.Fatalf("no motd after login: %q", out)
	}
	if strings.Contains(out, "jsplan\r") {
		t.Fatalf("password echoed: %q", out)
	}
	out = b.con.waitFor("root@sim:~# ")
	if !strings.Contains(out, "hello\r\n0\r\n") {
		t.Fatalf("echo hello; echo $? gave %q", out)
	}

	out = b.run("false; echo rc=$?")
	if !strings.Contains(out, "rc=1\r\n") {
		t.Fatalf("false; echo rc=$? gave %q", out)
	}
	if len(b.secrets) == 0 || b.secrets[0] != "jsplan" {
		t.Fatalf("password not registered as a secret: %q", b.secrets)
	}
}

func TestShellRunsInRootDir(t *testing.T) {
	b := newBoard(t, fastCfg)
	root := filepath.Join(b.state, "root")
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hi there\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.on()
	b.login()
	// the board's root directory is the shell's "/" (TestShellAbsolutePathsStayInTheBoard)
	if out := b.run("pwd; echo home=$HOME"); !strings.Contains(out, "\r\n/\r\nhome=/\r\n") {
		t.Fatalf("pwd/HOME: %q", out)
	}
	if out := b.run("cat hello.txt"); !strings.Contains(out, "\r\nhi there\r\n") {
		t.Fatalf("cat: %q", out)
	}
	if out := b.run("base64 hello.txt"); !strings.Contains(out, "\r\naGkgdGhlcmUK\r\n") {
		t.Fatalf("base64: %q", out)
	}
	sum := sha256.Sum256([]byte("hi there\n"))
	if out := b.run("sha256sum hello.txt"); !strings.Contains(out, "\r\n"+hex.EncodeToString(sum[:])+"  hello.txt\r\n") {
		t.Fatalf("sha256sum: %q", out)
	}
	if out := b.run("cat /etc/image-id 2>/dev/null; cat etc/image-id; echo TERM=$TERM"); !strings.Contains(out, "none\r\nTERM=vt100\r\n") {
		t.Fatalf("image-id/TERM: %q", out)
	}
	if out := b.run("env | grep -c jsplan; echo end"); !strings.Contains(out, "\r\n0\r\nend\r\n") {
		t.Fatalf("the password leaked into the shell's environment: %q", out)
	}
}

func TestShellExitReturnsToLogin(t *testing.T) {
	b := newBoard(t, fastCfg)
	b.on()
	b.login()
	pid := b.pidAfter("echo PID=$$", "PID")
	bg := b.pidAfter("sleep 1000 & echo BG=$!", "BG")
	b.con.send("exit\r")
	b.con.waitFor("Jsplan Sim Linux 1.0 sim ttyS0")
	if alive(pid) || alive(bg) {
		t.Fatalf("after logout: shell %d alive %v, background job %d alive %v", pid, alive(pid), bg, alive(bg))
	}
	b.login()
	if out := b.run("echo again"); !strings.Contains(out, "again\r\n") {
		t.Fatalf("second session: %q", out)
	}
}

func TestStorageRefusedWhileOn(t *testing.T) {
	b := newBoard(t, fastCfg)
	b.on()
	_, err := b.dev.AttachHost(context.Background())
	if err == nil || !errors.Is(err, ErrPoweredOn) {
		t.Fatalf("AttachHost while on = %v, want ErrPoweredOn", err)
	}
	if !strings.Contains(err.Error(), "refusing to attach storage to the host while the board is powered on") {
		t.Fatalf("unclear error: %v", err)
	}
	b.off()
	if _, err := b.dev.AttachHost(context.Background()); err != nil {
		t.Fatalf("AttachHost while off: %v", err)
	}
}

func TestPowerOffKillsShell(t *testing.T) {
	b := newBoard(t, fastCfg)
	b.on()
	b.login()
	pid := b.pidAfter("echo PID=$$", "PID")
	bg := b.pidAfter("sleep 1000 & echo BG=$!", "BG")
	b.con.send("sleep 1000\r") // a foreground job, in its own process group
	if !alive(pid) || !alive(bg) {
		t.Fatalf("shell %d or job %d not running", pid, bg)
	}
	b.off()
	if alive(pid) || alive(bg) {
		t.Fatalf("after Off: shell %d alive %v, background job %d alive %v", pid, alive(pid), bg, alive(bg))
	}
	if kids := children(); len(kids) != 0 {
		t.Fatalf("child processes left after Off: %v", kids)
	}
	on, err := b.dev.PowerState(context.Background())
	if err != nil || on {
		t.Fatalf("PowerState = %v, %v; want off", on, err)
	}
	b.off() // off when off is fine
	// Input while off is lost, and the board prints nothing more.
	b.con.send("echo ghost\r")
	b.on()
	b.login()
	if out := b.run("echo alive"); strings.Contains(out, "ghost") || !strings.Contains(out, "alive\r\n") {
		t.Fatalf("after power cycle: %q", out)
	}
}

func TestResetReboots(t *testing.T) {
	b := newBoard(t, fastCfg)
	b.on()
	b.login()
	pid := b.pidAfter("echo PID=$$", "PID")
	b.run("rm -r etc")
	if err := b.dev.Reset(context.Background()); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if alive(pid) {
		t.Fatalf("shell %d survived the reset", pid)
	}
	b.con.waitFor("Linux version")
	b.con.waitFor("sim: booting image none")
	b.login()
	if out := b.run("cat etc/image-id; echo rebooted"); !strings.Contains(out, "none\r\nrebooted\r\n") {
		t.Fatalf("after reset: %q", out)
	}
}

func TestConsoleReopen(t *testing.T) {
	b := newBoard(t, fastCfg)
	b.on()
	b.login()
	b.con.rw.Close()
	if err := b.con.readErr(); err == nil {
		t.Fatal("closed console read without error")
	}
	rw, err := b.dev.OpenConsole(context.Background())
	if err != nil {
		t.Fatalf("OpenConsole again: %v", err)
	}
	b.con = newConsole(t, rw)
	if out := b.run("echo reopened"); !strings.Contains(out, "reopened\r\n") {
		t.Fatalf("after reopening the console: %q", out)
	}
}

func TestCustomCredentials(t *testing.T) {
	b := newBoard(t, fastCfg+"hostname: dut7\nusername: tester\npassword: s3cret\nprompt: 'dut7$ '\n")
	b.on()
	b.con.waitFor("dut7 login: ")
	b.con.send("root\r")
	b.con.waitFor("Password: ")
	b.con.send("jsplan\r")
	b.con.waitFor("Login incorrect")
	b.con.waitFor("dut7 login: ")
	b.con.send("tester\r")
	b.con.waitFor("Password: ")
	b.con.send("s3cret\r")
	b.con.waitFor("dut7$ ")
	b.con.send("echo user=$USER\r")
	b.con.waitFor("user=tester\r\n")
	if len(b.secrets) == 0 || b.secrets[0] != "s3cret" {
		t.Fatalf("password not registered as a secret: %q", b.secrets)
	}
}

func TestFaultBootHang(t *testing.T) {
	b := newBoard(t, fastCfg+"faults: {boot-hang: true}\n")
	b.on()
	b.con.waitFor("Run /sbin/init as init process\r\n")
	b.con.send("root\r")
	b.con.absent("login:", 300*time.Millisecond)
	b.off()
}

func TestFaultKernelPanic(t *testing.T) {
	b := newBoard(t, fastCfg+"faults: {kernel-panic: true}\n")
	b.on()
	b.con.waitFor("Kernel panic - not syncing: VFS: Unable to mount root fs")
	b.con.waitFor("end Kernel panic")
	b.con.absent("login:", 300*time.Millisecond)
}

func TestFaultLoginRefused(t *testing.T) {
	b := newBoard(t, fastCfg+"faults: {login-refused: true}\n")
	b.on()
	for range 2 {
		b.con.waitFor("sim login: ")
		b.con.send("root\r")
		b.con.waitFor("Password: ")
		b.con.send("jsplan\r")
		b.con.waitFor("Login incorrect\r\n")
	}
	b.con.waitFor("sim login: ")
}

func TestFaultPowerFail(t *testing.T) {
	b := newBoard(t, fastCfg+"faults: {power-fail: true}\n")
	err := b.dev.On(context.Background())
	if err == nil || !isDriverError(err) {
		t.Fatalf("On = %v, want a *drivers.Error", err)
	}
	on, err := b.dev.PowerState(context.Background())
	if err != nil || on {
		t.Fatalf("PowerState after a failed On = %v, %v; want off", on, err)
	}
}

func TestFaultConsoleDrop(t *testing.T) {
	b := newBoard(t, fastCfg+"faults: {console-drop-after: 50ms}\n")
	b.on()
	if err := b.con.readErr(); err == nil {
		t.Fatal("console read ended without an error")
	}
	if _, err := b.dev.OpenConsole(context.Background()); err == nil || !isDriverError(err) {
		t.Fatalf("OpenConsole after the drop = %v, want a *drivers.Error", err)
	}
	on, _ := b.dev.PowerState(context.Background())
	if !on {
		t.Fatal("the board powered off when its console dropped")
	}
}

func TestCloseCleansUp(t *testing.T) {
	before := runtime.NumGoroutine()
	b := newBoard(t, fastCfg)
	b.on()
	b.login()
	pid := b.pidAfter("echo PID=$$", "PID")
	bg := b.pidAfter("sleep 1000 & echo BG=$!", "BG")
	if err := b.dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.con.readErr(); err == nil {
		t.Fatal("console still readable after Close")
	}
	if alive(pid) || alive(bg) {
		t.Fatalf("after Close: shell %d alive %v, job %d alive %v", pid, alive(pid), bg, alive(bg))
	}
	if kids := children(); len(kids) != 0 {
		t.Fatalf("child processes left after Close: %v", kids)
	}
	if err := b.dev.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.dev.On(context.Background()); err == nil {
		t.Fatal("On after Close succeeded")
	}
	if _, err := b.dev.OpenConsole(context.Background()); err == nil {
		t.Fatal("OpenConsole after Close succeeded")
	}
	// Every goroutine of the board (and of the test's console reader) ends.
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNetworkEndpoint(t *testing.T) {
	dev := decode(t, "")
	if err := dev.Validate(); err != nil {
		t.Fatal(err)
	}
	if caps := dev.Capabilities(); len(caps) != 3 || containsCap(caps, drivers.CapNetwork) {
		t.Fatalf("Capabilities without ssh = %v", caps)
	}
	if _, err := dev.Endpoint(context.Background()); err == nil {
		t.Fatal("Endpoint without ssh succeeded")
	}

	b := newBoard(t, "ssh: {port: 2222, key-file: id_ed25519, options: [StrictHostKeyChecking=no]}\n")
	if !containsCap(b.dev.Capabilities(), drivers.CapNetwork) {
		t.Fatalf("Capabilities with ssh = %v", b.dev.Capabilities())
	}
	ep, err := b.dev.Endpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := drivers.Endpoint{Host: "127.0.0.1", Port: 2222, User: "root", KeyFile: filepath.Join(b.state, "id_ed25519"), Options: []string{"StrictHostKeyChecking=no"}}
	if ep.Host != want.Host || ep.Port != want.Port || ep.User != want.User || ep.KeyFile != want.KeyFile || len(ep.Options) != 1 || ep.Options[0] != want.Options[0] {
		t.Fatalf("Endpoint = %+v, want %+v", ep, want)
	}
}

func containsCap(caps []drivers.Capability, c drivers.Capability) bool {
	for _, x := range caps {
		if x == c {
			return true
		}
	}
	return false
}

func TestValidate(t *testing.T) {
	bad := map[string]string{
		"ssh: {host: 10.0.0.5, port: 22}\n": "not a loopback address",
		"ssh: {host: example.com}\n":        "not a loopback address",
		"ssh: {port: 70000}\n":              "ssh.port",
		"hostname: 'my board'\n":            "hostname",
		"password: \"a\\nb\"\n":             "password",
	}
	// Durations are read by cfg.Duration: a bad one fails to decode.
	for _, cfg := range []string{"boot-delay: soon\n", "boot-delay: -1s\n", "faults: {console-drop-after: 5 minutes}\n"} {
		var d Device
		if err := yaml.Unmarshal([]byte(cfg), &d); err == nil || !strings.Contains(err.Error(), "duration") {
			t.Errorf("decoding %q = %v, want a duration error", cfg, err)
		}
	}
	for cfg, want := range bad {
		err := decode(t, cfg).Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want an error about %s", cfg, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "a\nb") {
			t.Errorf("Validate(%q) leaked the password: %v", cfg, err)
		}
	}
	good := []string{
		"",
		"ssh: {host: 127.0.0.1, port: 2222, user: root, key-file: k}\n",
		"ssh: {host: '::1'}\n",
		"boot-delay: 0s\nfaults: {boot-hang: true, kernel-panic: false, login-refused: true, power-fail: false, console-drop-after: 1.5s}\n",
	}
	for _, cfg := range good {
		if err := decode(t, cfg).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v", cfg, err)
		}
	}
	// Open refuses an invalid configuration too, with a clear error.
	err := decode(t, "hostname: 'my board'\n").Open(context.Background(), drivers.Env{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "hostname") {
		t.Fatalf("Open with a bad config = %v", err)
	}
}

func TestInputWhileOffIsLost(t *testing.T) {
	b := newBoard(t, fastCfg)
	// Typed before power on: had it reached the board, it would log in.
	b.con.send("root\rjsplan\r")
	b.on()
	b.con.waitFor("sim login: ")
	b.con.absent("Password:", 300*time.Millisecond)
	b.login2()
}

// TestConsoleTransfersData moves a file both ways over the console with
// base64, as a plan without network would: no byte may be lost either way.
func TestConsoleTransfersData(t *testing.T) {
	b := newBoard(t, fastCfg)
	data := make([]byte, 96<<10)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	root := filepath.Join(b.state, "root")
	if err := os.WriteFile(filepath.Join(root, "down.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b.on()
	b.login()

	// Board to host.
	b.con.send("base64 down.bin; echo END-$((40+2))\r")
	b.con.waitFor("\r\n") // the echoed command line
	out := b.con.waitFor("END-42\r\n")
	got, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r\n", "", "END-42", "").Replace(out))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: %d bytes, err %v; want %d identical bytes", len(got), err, len(data))
	}
	b.con.waitFor("root@sim:~# ")

	// Host to board.
	enc := base64.StdEncoding.EncodeToString(data)
	var in strings.Builder
	in.WriteString("base64 -d > up.bin <<'EOF'\r")
	for len(enc) > 0 {
		n := min(76, len(enc))
		in.WriteString(enc[:n] + "\r")
		enc = enc[n:]
	}
	in.WriteString("EOF\r")
	b.con.send(in.String())
	b.run("echo done")
	up, err := os.ReadFile(filepath.Join(root, "up.bin"))
	if err != nil || !bytes.Equal(up, data) {
		t.Fatalf("upload: %d bytes, err %v; want %d identical bytes", len(up), err, len(data))
	}
}

// Absolute paths in the board's shell are the board's: /etc/image-id is the
// booted image's id, what is written to /tmp lands in the board's root
// directory and nowhere on the host, the host's own /tmp and home are not
// there, and the host's programs, which the board runs, are read-only.
func TestShellAbsolutePathsStayInTheBoard(t *testing.T) {
	b := newBoard(t, fastCfg)
	root := filepath.Join(b.state, "root")
	marker := fmt.Sprintf("jsplan-sim-inside-%d", time.Now().UnixNano())
	hostOnly, err := os.CreateTemp("", "jsplan-host-only-*.log")
	if err != nil {
		t.Fatal(err)
	}
	hostOnly.Close()
	defer os.Remove(hostOnly.Name())
	b.on()
	b.login()
	if out := b.run("cat /etc/image-id"); !strings.Contains(out, "\r\nnone\r\n") {
		t.Fatalf("cat /etc/image-id: %q", out)
	}
	if out := b.run("echo inside > /tmp/" + marker + ".log; ls /tmp/*.log | wc -l; echo done"); !strings.Contains(out, "\r\n1\r\ndone\r\n") {
		t.Fatalf("the board's /tmp holds more than its own file: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(root, "tmp", marker+".log")); err != nil || string(b) != "inside\n" {
		t.Errorf("the board's /tmp file is not in its root directory: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), marker+".log")); err == nil {
		t.Errorf("the board wrote into the host's /tmp")
	}
	if out := b.run("test -e " + hostOnly.Name() + " && echo host-visible; test -e " + b.state + " && echo state-visible; echo done"); strings.Contains(out, "-visible\r\n") {
		t.Errorf("host paths are visible on the board: %q", out)
	}
	if out := b.run("touch /usr/bin/jsplan-sim-write 2>/dev/null && echo wrote; ls /bin/sh /usr/bin/base64 >/dev/null && echo tools; echo done"); strings.Contains(out, "\r\nwrote\r\n") || !strings.Contains(out, "\r\ntools\r\n") {
		t.Errorf("the host's programs are not there, or not read-only: %q", out)
	}
	_ = os.Remove("/usr/bin/jsplan-sim-write")
	if out := b.run("uname -n"); !strings.Contains(out, "\r\nsim\r\n") {
		t.Errorf("the board's host name is not its own: %q", out)
	}
	if out := b.run("dmesg | head -n 1"); !strings.Contains(out, "Linux version 6.1.0-jsplan-sim") {
		t.Errorf("dmesg on the board is not its own boot log: %q", out)
	}
}
