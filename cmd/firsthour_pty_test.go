package cmd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// startBash runs an interactive bash on a pty of its own, in dir, with env,
// as a person's terminal: the test types commands and reads the screen.
func startBash(t *testing.T, dir string, env []string) *ptyTerm {
	t.Helper()
	ptm, pts, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pty: %v", err)
	}
	_ = pty.Setsize(ptm, &pty.Winsize{Rows: 50, Cols: 200})
	before, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	cmd := exec.CommandContext(ctx, "bash", "--norc", "--noprofile", "-i")
	cmd.Dir = dir
	cmd.Env = append(env, "PS1=$ ", "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	p := &ptyTerm{t: t, ptm: ptm, pts: pts, cmd: cmd, change: make(chan struct{}), done: make(chan struct{}), before: before}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		b := make([]byte, 8192)
		for {
			n, err := ptm.Read(b)
			p.mu.Lock()
			p.screen.Write(b[:n])
			close(p.change)
			p.change = make(chan struct{})
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		p.code = exitCode(cmd.Wait())
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		pts.Close()
		ptm.Close()
	})
	return p
}

// typeCmd types a command line and waits for its end marker: the exit
// status printed after it, then the prompt.
func (p *ptyTerm) typeCmd(line string, timeout time.Duration) string {
	p.t.Helper()
	p.mu.Lock()
	from := p.screen.Len()
	p.mu.Unlock()
	p.send(line + "; echo \"exit=$?\"\r")
	re := regexp.MustCompile(`exit=(\d+)\r?\n`)
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		out := p.screen.String()[from:]
		ch := p.change
		p.mu.Unlock()
		if m := re.FindStringSubmatch(out); m != nil {
			if m[1] != "0" {
				p.t.Fatalf("%s: exit %s:\n%s", line, m[1], strings.ReplaceAll(out, "\r", ""))
			}
			p.mu.Lock()
			p.mark = p.screen.Len()
			p.mu.Unlock()
			return strings.ReplaceAll(out, "\r", "")
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
			p.t.Fatalf("%s: no end within %v:\n%s", line, timeout, strings.ReplaceAll(out, "\r", ""))
		}
	}
}

// README's first hour, typed in a terminal as a person would: make demo,
// the plan README shows saved as plans/examples/smoke.yaml and applied, the
// console of the board (log in, look at the image id, detach), its power,
// its lock, the report, and (with QEMU, not under -short) the QEMU board's
// three commands. The commands run in a copy of plans/ (README's out/ is the
// copy's); make demo's OUT and BIN go there too, so the worktree is not
// written; the state and lock directories are the test's through
// JSPLAN_STATE_DIR and JSPLAN_LOCK_DIR, shared by every command as README
// says; the QEMU board's SSH port is a free one instead of 2222.
func TestFirstHourInATerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make demo and README's commands")
	}
	t.Parallel()
	e := newEnv(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	readmeTree(t, e.dir)
	lab, err := os.ReadFile("../plans/boards/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	port := e2eFreePort(t)
	e.write("plans/boards/lab.yaml", strings.Replace(string(lab), "ssh-port: 2222", "ssh-port: "+itoa(port), 1))
	script, err := os.ReadFile("../plans/images/build-image.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.write("plans/images/build-image.sh", string(script)), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"one-plan-many-boards.yaml", "virtual-smoke.yaml"} {
		b, err := os.ReadFile("../plans/examples/" + f)
		if err != nil {
			t.Fatal(err)
		}
		e.write("plans/examples/"+f, string(b))
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var smoke string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1) {
		if strings.Contains(string(m[1]), "name: smoke\n") {
			smoke = string(m[1])
		}
	}
	if smoke == "" {
		t.Fatal("README shows no plan named smoke")
	}
	e.write("plans/examples/smoke.yaml", smoke)
	home := filepath.Join(e.dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(readmeEnv(t, home, e.locks), "JSPLAN_STATE_DIR="+e.state)
	sh := startBash(t, e.dir, env)
	sh.expect("$ ", 10*time.Second)

	out := sh.typeCmd("make -s -C "+repo+" demo OUT="+filepath.Join(e.dir, "out")+" BIN="+filepath.Join(e.dir, "bin", "jsplan"), 5*time.Minute)
	if !strings.Contains(out, "Passed:") || !strings.Contains(out, "report.html") {
		t.Fatalf("make demo:\n%s", out)
	}
	sh.typeCmd(`export PATH="$PWD/bin:$PATH"`, 10*time.Second)
	sh.typeCmd("jsplan validate plans/examples/smoke.yaml", 30*time.Second)
	out = sh.typeCmd("jsplan apply plans/examples/smoke.yaml --set image=out/demo.img --set sha256=$(sha256sum out/demo.img | cut -d' ' -f1)", 3*time.Minute)
	if !strings.Contains(out, "Passed: ") || !strings.Contains(out, "| Welcome to the jsplan simulated board") {
		t.Fatalf("README's plan in a terminal (with its console shown):\n%s", out)
	}

	// the console: log in, look, detach
	sh.send("jsplan console sim-1 --power-on\r")
	sh.expect("login: ", time.Minute)
	sh.send("root\r")
	sh.expect("Password: ", 10*time.Second)
	sh.send("demo-password\r")
	sh.expect("root@sim:~# ", 10*time.Second)
	sh.send("cat /etc/image-id\r")
	sh.expect("demo-", 10*time.Second)
	sh.expect("root@sim:~# ", 10*time.Second)
	sh.send("\r~.")
	sh.expect("$ ", 30*time.Second)

	if out := sh.typeCmd("jsplan power sim-1 status", 30*time.Second); !strings.Contains(out, "\noff\n") {
		t.Errorf("power status:\n%s", out)
	}
	if out := sh.typeCmd(`jsplan lock sim-1 -- sh -c 'echo held-by-$JSPLAN_BOARD'`, 30*time.Second); !strings.Contains(out, "held-by-sim-1") {
		t.Errorf("lock:\n%s", out)
	}
	if out := sh.typeCmd("jsplan boards list", 30*time.Second); !strings.Contains(out, "sim-1") || !strings.Contains(out, "free") {
		t.Errorf("boards list:\n%s", out)
	}
	sh.typeCmd("jsplan report artifacts && test -s artifacts/report.html", 30*time.Second)
	sh.typeCmd("jsplan report --history out/artifacts artifacts --out trends.html && test -s trends.html", 30*time.Second)

	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Log("no QEMU: the QEMU board's commands are not typed")
		return
	}
	block := regexp.MustCompile("(?s)### The QEMU board, end to end\n.*?```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README shows no QEMU commands")
	}
	for _, line := range strings.Split(strings.TrimSpace(string(block[1])), "\n") {
		out = sh.typeCmd(line, 10*time.Minute)
	}
	if !strings.Contains(out, "Passed: ") || !strings.Contains(out, "checks over ssh") {
		t.Errorf("README's QEMU apply:\n%s", out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
