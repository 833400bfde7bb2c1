package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
)

// The guest's root password in the test images.
const testPassword = "s3cret-Test"

// Timeouts of the boot tests. A TCG boot to the login prompt takes 3 to 10 s
// on a loaded 2-core machine; these only bound a broken boot.
const (
	bootTimeout   = 3 * time.Minute // a bound, not a speed goal: TCG on 2 busy cores boots in 3-60 s
	promptTimeout = 15 * time.Second
)

var (
	imageDir string // temp dir of the built images, removed by TestMain

	imageOnce sync.Once
	image     builtImage

	sshImageOnce sync.Once
	sshImage     builtImage
	sshKey       string // private key whose public half is in sshImage
)

type builtImage struct {
	path, id string
	err      error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jsplan-qemu-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imageDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needQEMU skips the test when QEMU is not installed.
func needQEMU(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU: skipped under -short")
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("%s is not installed (Debian package qemu-system-x86): %v", DefaultBinary, err)
	}
}

// buildImage runs plans/images/build-image.sh into a subdirectory of imageDir.
func buildImage(name string, env []string, args ...string) builtImage {
	out := filepath.Join(imageDir, name)
	cmd := exec.Command("../../plans/images/build-image.sh", append([]string{out}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"IMAGE_COMPRESS=", "IMAGE_PASSWORD=" + testPassword}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return builtImage{err: fmt.Errorf("build-image.sh %v: %v\n%s", args, err, stderr.String())}
	}
	var b builtImage
	for _, line := range strings.Split(stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "IMAGE="); ok {
			b.path = v
		}
		if v, ok := strings.CutPrefix(line, "IMAGE_ID="); ok {
			b.id = v
		}
	}
	if b.path == "" || b.id == "" {
		b.err = fmt.Errorf("build-image.sh printed no IMAGE= and IMAGE_ID= lines:\n%s", stdout.String())
	}
	fmt.Fprintf(os.Stderr, "built %s (id %s) in %v\n", b.path, b.id, time.Since(start).Round(time.Millisecond))
	return b
}

// testImage returns the plain test image, built once.
func testImage(t testing.TB) builtImage {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a disk image: skipped under -short")
	}
	imageOnce.Do(func() { image = buildImage("plain", nil) })
	if image.err != nil {
		t.Fatal(image.err)
	}
	return image
}

// testSSHImage returns the image with an SSH server and Python, built once,
// and the private key that logs in as root.
func testSSHImage(t testing.TB) (builtImage, string) {
	t.Helper()
	sshImageOnce.Do(func() {
		key := filepath.Join(imageDir, "id_ed25519")
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jsplan-test", "-f", key).CombinedOutput()
		if err != nil {
			sshImage.err = fmt.Errorf("ssh-keygen (Debian package openssh-client): %v: %s", err, out)
			return
		}
		sshKey = key
		sshImage = buildImage("ssh", []string{"IMAGE_AUTHORIZED_KEYS=" + key + ".pub"}, "--python", "--id", "ssh-test-image")
	})
	if sshImage.err != nil {
		t.Fatal(sshImage.err)
	}
	return sshImage, sshKey
}

// logSink collects the driver's log messages.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// openBoard opens a qemu device with cfg for a test. Cleanup closes it and
// checks that no QEMU it started is left.
func openBoard(t testing.TB, cfg Config) (*Device, *logSink) {
	t.Helper()
	d := &Device{Config: cfg}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logSink{}
	env := drivers.Env{Board: "test-" + t.Name(), StateDir: t.TempDir(), Log: logs.logf}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Open(ctx, env); err != nil {
		t.Fatal(err)
	}
	var pids []int
	var pidsMu sync.Mutex
	t.Cleanup(func() {
		if pid := d.PID(); pid != 0 {
			pidsMu.Lock()
			pids = append(pids, pid)
			pidsMu.Unlock()
		}
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, pid := range pids {
			if processExists(pid) {
				t.Errorf("qemu pid %d still exists after Close", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("driver log:\n%s", logs)
		}
	})
	return d, logs
}

// processExists reports whether a process with pid exists (not reaped).
func processExists(pid int) bool {
	return syscall.Kill(pid, 0) != syscall.ESRCH
}

// flash writes img onto the board's disk through the Storage capability.
func flash(t testing.TB, d *Device, img string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target, err := d.AttachHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(target, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.AttachBoard(ctx); err != nil {
		t.Fatal(err)
	}
}

// console reads a console stream in the background and matches its output.
type console struct {
	t      testing.TB
	rw     io.ReadWriteCloser
	mu     sync.Mutex
	buf    []byte
	mark   int // expect searches from here
	err    error
	notify chan struct{}
}

func openConsole(t testing.TB, d *Device) *console {
	t.Helper()
	rw, err := d.OpenConsole(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := &console{t: t, rw: rw, notify: make(chan struct{}, 1)}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := rw.Read(b)
			c.mu.Lock()
			c.buf = append(c.buf, b[:n]...)
			if err != nil {
				c.err = err
			}
			c.mu.Unlock()
			select {
			case c.notify <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { rw.Close() })
	return c
}

// expect waits until s appears in the output after the previous match and
// returns the output up to and including it.
func (c *console) expect(timeout time.Duration, s string) string {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if i := bytes.Index(c.buf[c.mark:], []byte(s)); i >= 0 {
			got := string(c.buf[c.mark : c.mark+i+len(s)])
			c.mark += i + len(s)
			c.mu.Unlock()
			return got
		}
		err := c.err
		tail := c.buf[c.mark:]
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("console ended (%v) while waiting for %q; output since last match:\n%s", err, s, tail)
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			c.t.Fatalf("no %q on the console within %v; output since last match:\n%s", s, timeout, tail)
		}
	}
}

// output returns everything read so far.
func (c *console) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...)
}

// skip moves the match position to the end of the output so far.
func (c *console) skip() {
	c.mu.Lock()
	c.mark = len(c.buf)
	c.mu.Unlock()
}

func (c *console) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.rw, s); err != nil {
		c.t.Fatalf("console write: %v", err)
	}
}

// login logs in as root at a fresh login prompt.
func (c *console) login(password string) {
	c.t.Helper()
	c.send("root\n")
	c.expect(promptTimeout, "Password:")
	c.send(password + "\n")
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestBootLoginReset boots the flashed image on QEMU, logs in on the serial
// console, checks the image id, resets through QMP and powers off (through
// the guest), and checks that storage is refused to the host while the board
// runs.
func TestBootLoginReset(t *testing.T) {
	needQEMU(t)
	img := testImage(t)
	d, logs := openBoard(t, Config{})
	con := openConsole(t, d)
	flash(t, d, img.path)
	if want := filepath.Join(d.env.StateDir, "disk.img"); d.DiskPath() != want {
		t.Errorf("disk = %s, want %s", d.DiskPath(), want)
	}
	ctx := ctxFor(t, 3*time.Minute)

	if on, err := d.PowerState(ctx); err != nil || on {
		t.Fatalf("PowerState before On = %v, %v; want false", on, err)
	}
	start := time.Now()
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	pid := d.PID()
	if on, err := d.PowerState(ctx); err != nil || !on || pid == 0 {
		t.Fatalf("PowerState after On = %v, %v (pid %d); want true", on, err, pid)
	}
	if err := d.On(ctx); err != nil || d.PID() != pid {
		t.Fatalf("On while on: %v, pid %d -> %d; want no-op", err, pid, d.PID())
	}
	if _, err := d.AttachHost(ctx); err == nil || !strings.Contains(err.Error(), "powered on") {
		t.Fatalf("AttachHost while running = %v, want a refusal", err)
	}

	con.expect(bootTimeout, "jsplan test image "+img.id)
	con.expect(bootTimeout, "qemu login:")
	t.Logf("power on to login prompt: %v", time.Since(start).Round(10*time.Millisecond))
	con.login(testPassword)
	con.expect(promptTimeout, "root@qemu:~# ")
	con.send("cat /etc/image-id\n")
	con.expect(promptTimeout, "cat /etc/image-id\r\n"+img.id+"\r\n") // the shell echoes the command
	con.expect(promptTimeout, "root@qemu:~# ")
	// The shell prompt ends the output: no terminal query (ESC [6n) after it
	// that would break a prompt regex like `# $`.
	if out := con.output(); bytes.Contains(out, []byte("\x1b[")) {
		t.Errorf("escape sequence on the console:\n%q", out)
	}

	start = time.Now()
	if err := d.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	con.expect(bootTimeout, "SYSLINUX")
	con.expect(bootTimeout, "qemu login:")
	t.Logf("reset to login prompt: %v", time.Since(start).Round(10*time.Millisecond))
	if d.PID() != pid {
		t.Errorf("reset changed the qemu pid %d -> %d", pid, d.PID())
	}

	// The guest runs acpid: the power button shuts it down cleanly.
	if err := d.Off(ctx); err != nil {
		t.Fatal(err)
	}
	con.expect(promptTimeout, "reboot: Power down")
	if !strings.Contains(logs.String(), "guest powered off") {
		t.Errorf("Off was not graceful; log:\n%s", logs)
	}
	if processExists(pid) {
		t.Fatalf("qemu pid %d still exists after Off", pid)
	}
	if on, _ := d.PowerState(ctx); on {
		t.Fatal("PowerState after Off = true")
	}
	if err := d.Off(ctx); err != nil {
		t.Fatalf("Off while off: %v", err)
	}
	if err := d.Reset(ctx); err == nil {
		t.Fatal("Reset while off succeeded")
	}
	con.send("dropped while off\n") // must not fail or block
}

// TestWrongPassword checks that the guest refuses a wrong password, and that
// Off falls back to QMP quit and then to SIGKILL when QEMU does not answer.
func TestWrongPassword(t *testing.T) {
	needQEMU(t)
	img := testImage(t)
	d, logs := openBoard(t, Config{PowerdownTimeout: dur(time.Second), Accel: "tcg"})
	flash(t, d, img.path)
	con := openConsole(t, d)
	ctx := ctxFor(t, 2*time.Minute)
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	con.expect(bootTimeout, "qemu login:")
	con.login("not-" + testPassword)
	con.expect(promptTimeout, "Login incorrect")

	// A QEMU that is stopped answers nothing: Off must kill it by PID.
	pid := d.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := d.Off(ctx); err != nil {
		t.Fatal(err)
	}
	if processExists(pid) {
		t.Fatalf("qemu pid %d still exists after Off", pid)
	}
	if !strings.Contains(logs.String(), "killed") {
		t.Errorf("Off did not report a kill; log:\n%s", logs)
	}
}

// TestQuitWithoutPowerButton checks Off with powerdown-timeout 0: QMP quit.
func TestQuitWithoutPowerButton(t *testing.T) {
	needQEMU(t)
	img := testImage(t)
	d, logs := openBoard(t, Config{PowerdownTimeout: dur(0)})
	flash(t, d, img.path)
	ctx := ctxFor(t, time.Minute)
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	pid := d.PID()
	if err := d.Off(ctx); err != nil {
		t.Fatal(err)
	}
	if processExists(pid) {
		t.Fatalf("qemu pid %d still exists after Off", pid)
	}
	if !strings.Contains(logs.String(), "qmp quit") {
		t.Errorf("Off did not use qmp quit; log:\n%s", logs)
	}
}

// TestGuestPowersOff checks that a guest that powers itself off is seen as
// off, and that after powering on again the same console stream sees the new
// boot.
func TestGuestPowersOff(t *testing.T) {
	needQEMU(t)
	img := testImage(t)
	d, _ := openBoard(t, Config{})
	flash(t, d, img.path)
	con := openConsole(t, d)
	ctx := ctxFor(t, 2*time.Minute)
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	pid := d.PID()
	con.expect(bootTimeout, "qemu login:")
	con.login(testPassword)
	con.expect(promptTimeout, "root@qemu:~# ")
	con.send("poweroff\n")
	con.expect(promptTimeout, "reboot: Power down")
	for deadline := time.Now().Add(10 * time.Second); ; {
		on, err := d.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !on {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("PowerState still true 10 s after the guest powered off")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if processExists(pid) {
		t.Fatalf("qemu pid %d still exists", pid)
	}
	if _, err := d.AttachHost(ctx); err != nil {
		t.Fatalf("AttachHost after the guest powered off: %v", err)
	}
	if err := d.AttachBoard(ctx); err != nil {
		t.Fatal(err)
	}

	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	con.expect(bootTimeout, "qemu login:")
	con.login(testPassword)
	con.expect(promptTimeout, "root@qemu:~# ")
}

// TestSSH boots the image with an SSH server and runs commands in the guest
// (Python too, as ansible modules need it) over the forwarded port on
// 127.0.0.1.
func TestSSH(t *testing.T) {
	needQEMU(t)
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatalf("ssh client missing (Debian package openssh-client): %v", err)
	}
	img, key := testSSHImage(t)
	port := freePort(t)
	d, _ := openBoard(t, Config{Network: &NetworkConfig{SSHPort: port, KeyFile: key}})
	flash(t, d, img.path)
	con := openConsole(t, d)
	ctx := ctxFor(t, 2*time.Minute)
	ep, err := d.Endpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Host != "127.0.0.1" || ep.Port != port || ep.User != "root" || ep.KeyFile != key {
		t.Fatalf("Endpoint = %+v", ep)
	}
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	if addrs := listeners(t, port); len(addrs) != 1 || addrs[0] != "0100007F" {
		t.Fatalf("port %d listens on %v (hex IPv4, /proc/net/tcp); want only 127.0.0.1 (0100007F)", port, addrs)
	}
	con.expect(bootTimeout, "qemu login:")

	args := []string{"-p", fmt.Sprint(ep.Port), "-i", ep.KeyFile, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"}
	for _, o := range ep.Options {
		args = append(args, "-o", o)
	}
	args = append(args, ep.User+"@"+ep.Host, "cat /etc/image-id; hostname; python3 -c 'import json, hashlib; print(json.dumps(hashlib.sha1(b\"x\").hexdigest()))'")
	var out []byte
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		out, err = exec.CommandContext(cctx, "ssh", args...).CombinedOutput()
		cancel()
		if err == nil || attempt == 5 {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("ssh: %v: %s", err, out)
	}
	if got, want := string(out), img.id+"\nqemu\n\"11f6ad8ec52a2984abaafd7c3b516503785c2072\"\n"; got != want {
		t.Fatalf("ssh output %q, want %q", got, want)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// listeners returns the local addresses (hex, as in /proc/net/tcp) of the
// IPv4 sockets listening on port, and fails if any IPv6 socket listens on it.
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var addrs []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			host, p, ok := strings.Cut(fields[1], ":")
			if !ok || p != fmt.Sprintf("%04X", port) {
				continue
			}
			if strings.HasSuffix(f, "6") {
				t.Errorf("port %d has an IPv6 listener %s", port, host)
			}
			addrs = append(addrs, host)
		}
	}
	return addrs
}

// TestCycleWhileOff checks that cycling a board that is off powers it on at
// once, without the pause (an hour here) meant for a running board: On then
// fails because nothing was flashed.
func TestCycleWhileOff(t *testing.T) {
	needQEMU(t)
	d, _ := openBoard(t, Config{})
	err := d.Cycle(ctxFor(t, 30*time.Second), time.Hour)
	if err == nil || !strings.Contains(err.Error(), "flash an image first") {
		t.Fatalf("Cycle of an off board without an image = %v, want the power on error", err)
	}
}

// TestRelativePaths checks that a relative state dir and key file become
// absolute paths: QEMU runs in its own directory, ssh and ansible in others.
func TestRelativePaths(t *testing.T) {
	needQEMU(t)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	state, err := filepath.Rel(wd, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := &Device{Config: Config{Network: &NetworkConfig{SSHPort: 2222, KeyFile: "keys/id"}}}
	if err := d.Open(context.Background(), drivers.Env{StateDir: state}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if want := filepath.Join(wd, state, "disk.img"); d.DiskPath() != want {
		t.Errorf("disk = %s, want %s", d.DiskPath(), want)
	}
	ep, err := d.Endpoint(context.Background())
	if err != nil || ep.KeyFile != filepath.Join(wd, "keys/id") {
		t.Errorf("Endpoint key file = %q (%v), want %s", ep.KeyFile, err, filepath.Join(wd, "keys/id"))
	}
}

// TestQEMUStartFailure checks that a QEMU that refuses its command line gives
// a clear infrastructure error carrying QEMU's message, and leaves no process.
func TestQEMUStartFailure(t *testing.T) {
	needQEMU(t)
	d, _ := openBoard(t, Config{ExtraArgs: []string{"-no-such-option"}})
	if err := os.WriteFile(filepath.Join(d.env.StateDir, "disk.img"), []byte("not empty"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := d.On(ctxFor(t, 30*time.Second))
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "no-such-option") {
		t.Fatalf("On = %v, want a *drivers.Error quoting QEMU", err)
	}
	if on, _ := d.PowerState(context.Background()); on {
		t.Fatal("PowerState = true after a failed start")
	}
}

// BenchmarkBootToLogin measures power on to the login prompt, and power off,
// of the test image on QEMU (TCG unless /dev/kvm is usable).
func BenchmarkBootToLogin(b *testing.B) {
	needQEMU(b)
	img := testImage(b)
	d, _ := openBoard(b, Config{})
	flash(b, d, img.path)
	con := openConsole(b, d)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.On(ctx); err != nil {
			b.Fatal(err)
		}
		con.expect(bootTimeout, "qemu login:")
		if err := d.Off(ctx); err != nil {
			b.Fatal(err)
		}
		con.skip()
	}
}
