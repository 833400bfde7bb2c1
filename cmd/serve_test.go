package cmd

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// remotePlan flashes, boots, logs in, checks the image and uses the
// console: the same plan runs on a board here and through an agent.
const remotePlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: remote-smoke
params:
  image: {type: path, required: true}
  id: {type: string, required: true}
  hold: {type: string, default: "0"}
board: {name: sim-1}
steps:
  - power: off
  - flash: {image: "${{ params.image }}", verify: true}
  - power: on
  - wait-for-login: {username: root, password: sim-password}
  - name: image id
    run: {command: "cat /etc/image-id", expect-output: "${{ params.id }}"}
  - console: {send: "echo hello-$((40+2))<ENTER>", expect: "hello-42"}
  - name: hold
    timeout: 2m
    run: "sleep ${{ params.hold }}"
finally:
  - power: off
`

// agentEnv is a test with an agent (jsplan serve) serving the test's
// inventory on a unix socket, and a client inventory naming it.
type agentEnv struct {
	*testEnv
	sock, locks, state string
	client             string // the clients' inventory
	agent              *proc
}

func newAgentEnv(t *testing.T, ttl string) *agentEnv {
	t.Helper()
	e := newEnv(t)
	sockDir, err := os.MkdirTemp("", "jsplan-serve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	a := &agentEnv{testEnv: e, sock: filepath.Join(sockDir, "agent.sock"), locks: filepath.Join(e.dir, "agent-locks"),
		state: filepath.Join(e.dir, "agent-state")}
	a.client = e.write("client-boards.yaml", fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    drivers:
      remote: {address: "unix:%s", board: sim-1}
`, a.sock))
	a.startAgent(ttl)
	return a
}

func (a *agentEnv) startAgent(ttl string) {
	a.t.Helper()
	a.agent = a.start("serve", "--boards", a.boards, "--listen", "unix:"+a.sock, "--lock-dir", a.locks,
		"--state-dir", a.state, "--lease-ttl", ttl)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", a.sock); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("the agent did not listen: %s", a.agent.stderrText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientArgs runs a command against the agent's board, with client-side
// lock and state directories of its own (each client a host of its own).
func (a *agentEnv) clientArgs(name string, args ...string) []string {
	dir := filepath.Join(a.dir, "client-"+name)
	flags := []string{"--boards", a.client, "--lock-dir", filepath.Join(dir, "locks"), "--state-dir", filepath.Join(dir, "state")}
	if i := slices.Index(args, "--"); i >= 0 { // before the command of jsplan lock
		return slices.Concat(args[:i], flags, args[i:])
	}
	return append(args, flags...)
}

func (a *agentEnv) apply(name string, img, id string, extra ...string) []string {
	return a.clientArgs(name, append([]string{"apply", filepath.Join(a.dir, "plan.yaml"), "--artifacts", filepath.Join(a.dir, "art-"+name),
		"--set", "image=" + img, "--set", "id=" + id}, extra...)...)
}

// image writes a raw image of size bytes with id in it.
func (a *agentEnv) image(name, id string, size int) string {
	a.t.Helper()
	data := make([]byte, size)
	rand.Read(data[:min(size, 1<<20)])
	copy(data[size-64:], "\nJSPLAN_IMAGE_ID="+id+"\n")
	p := filepath.Join(a.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		a.t.Fatal(err)
	}
	return p
}

// The same plan passes on sim-1 here and on sim-1 through an agent;
// power, lock, flash --board and boards list work through it unchanged.
func TestServeSamePlanLocalAndRemote(t *testing.T) {
	a := newAgentEnv(t, "2s")
	a.write("plan.yaml", remotePlan)
	img := a.image("disk.img", "remote-1", 2<<20)
	local := a.run(a.applyArgs(filepath.Join(a.dir, "plan.yaml"), filepath.Join(a.dir, "art-local"), "--set", "image="+img, "--set", "id=remote-1")...)
	if local.code != 0 {
		t.Fatalf("locally: exit %d\n%s\n%s", local.code, local.stdout, local.stderr)
	}
	remote := a.run(a.apply("one", img, "remote-1")...)
	if remote.code != 0 {
		t.Fatalf("through the agent: exit %d\n%s\n%s\nagent:\n%s", remote.code, remote.stdout, remote.stderr, a.agent.stderrText())
	}
	lr, rr := readReport(t, filepath.Join(a.dir, "art-local")), readReport(t, filepath.Join(a.dir, "art-one"))
	if len(flatten(lr.Steps)) != len(flatten(rr.Steps)) || rr.Status != lr.Status {
		t.Fatalf("local %s with %d steps, remote %s with %d", lr.Status, len(flatten(lr.Steps)), rr.Status, len(flatten(rr.Steps)))
	}
	if !strings.Contains(a.agent.stderrText(), "power on, image remote-1") {
		t.Fatalf("the agent's board did not boot the image:\n%s", a.agent.stderrText())
	}
	// a wrong image id fails the step (exit 1), as locally
	if r := a.run(a.apply("two", img, "other-id")...); r.code != 1 {
		t.Fatalf("a wrong image id through the agent: exit %d, want 1\n%s", r.code, r.stdout)
	}

	if r := a.run(a.clientArgs("p", "power", "sim-1", "status")...); r.code != 0 || strings.TrimSpace(r.stdout) != "off" {
		t.Fatalf("power status: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := a.run(a.clientArgs("f", "flash", img, "--board", "sim-1", "--verify")...); r.code != 0 || !strings.Contains(r.stdout, "verified") {
		t.Fatalf("flash --board: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := a.run(a.clientArgs("f", "flash", img, "--board", "sim-1", "--sha256", strings.Repeat("1", 64))...); r.code != 1 {
		t.Fatalf("flash --board with a wrong checksum: exit %d, want 1: %s", r.code, r.stderr)
	}

	// one client holds the board (jsplan lock), another waits: boards list
	// shows both; the holder killed with SIGKILL loses the lease after the
	// TTL and the waiter gets the board
	holder := a.start(a.clientArgs("h", "lock", "sim-1", "--", "sh", "-c", "echo locked; sleep 60")...)
	holder.waitLine("locked", func(l string) bool { return l == "locked" })
	waiter := a.start(a.clientArgs("w", "power", "sim-1", "on")...)
	var list string
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(list, "waiting:") {
		if time.Now().After(deadline) {
			t.Fatalf("boards list never showed the waiter:\n%s", list)
		}
		r := a.run(a.clientArgs("l", "boards", "list")...)
		list = r.stdout
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(list, "leased to uid") || !strings.Contains(list, "since") {
		t.Fatalf("boards list does not show the holder:\n%s", list)
	}
	syscall.Kill(holder.pid(), syscall.SIGKILL)
	if code := waiter.wait(); code != 0 {
		t.Fatalf("the waiter: exit %d\n%s", code, waiter.stderrText())
	}
	if !strings.Contains(a.agent.stderrText(), "expired") {
		t.Fatalf("no expiry in the agent's log:\n%s", a.agent.stderrText())
	}
}

// kill -9 of a client mid-run and mid-flash: the lease expires, the board
// is powered off, the next client gets it.
func TestServeClientKilled(t *testing.T) {
	a := newAgentEnv(t, "2s")
	a.write("plan.yaml", remotePlan)
	small := a.image("small.img", "next-1", 1<<20)
	for _, c := range []struct {
		name string
		wait func(t *testing.T, p *proc)
		img  string
	}{
		{"mid-run", func(t *testing.T, p *proc) { p.waitRun("hold") }, small},
		{"mid-flash", func(t *testing.T, p *proc) {
			p.waitLine("the flash step", func(l string) bool { return strings.HasPrefix(l, "RUN") && strings.Contains(l, "big.img") })
			disk := filepath.Join(a.state, "sim-1", "sim", "disk.img")
			deadline := time.Now().Add(30 * time.Second)
			for {
				if fi, err := os.Stat(disk); err == nil && fi.Size() > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the flash never started: %s", a.agent.stderrText())
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			if strings.Contains(p.stdout(), "PASS  2 ") {
				t.Fatalf("the flash ended before the kill: %s", p.stdout())
			}
		}, a.image("big.img", "big", 512<<20)},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(filepath.Join(a.state, "sim-1", "sim", "disk.img"))
			first := a.start(a.apply("first-"+c.name, c.img, "next-1", "--set", "hold=60")...)
			c.wait(t, first)
			next := a.start(a.apply("next-"+c.name, small, "next-1")...)
			before := strings.Count(a.agent.stderrText(), "expired (powered off)")
			syscall.Kill(first.pid(), syscall.SIGKILL)
			first.wait()
			if code := next.wait(); code != 0 {
				t.Fatalf("the next client: exit %d\n%s\n%s\nagent:\n%s", code, next.stdout(), next.stderrText(), a.agent.stderrText())
			}
			if strings.Count(a.agent.stderrText(), "expired (powered off)") != before+1 {
				t.Fatalf("the killed client's lease did not expire with a power off:\n%s", a.agent.stderrText())
			}
		})
	}
}

// The agent killed mid-run: the client fails with an infrastructure
// error (exit 3), writes its reports, and nothing hangs.
func TestServeAgentKilledMidRun(t *testing.T) {
	a := newAgentEnv(t, "2s")
	a.write("plan.yaml", remotePlan)
	img := a.image("disk.img", "gone-1", 1<<20)
	p := a.start(a.apply("one", img, "gone-1", "--set", "hold=60")...)
	p.waitRun("hold")
	start := time.Now()
	syscall.Kill(a.agent.pid(), syscall.SIGKILL)
	a.agent.wait()
	code := p.wait()
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, p.stdout(), p.stderrText())
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the client took %s to notice", d)
	}
	if rep := readReport(t, filepath.Join(a.dir, "art-one")); rep.Status == "" {
		t.Fatal("no report")
	}
	if !bytes.Contains([]byte(p.stdout()+p.stderrText()), []byte("remote")) {
		t.Fatalf("the error does not name the remote board's driver:\n%s\n%s", p.stdout(), p.stderrText())
	}
}

// jsplan ca makes a CA and certificates; serve refuses tcp without them.
func TestServeCA(t *testing.T) {
	e := newEnv(t)
	ca := filepath.Join(e.dir, "ca")
	if r := e.run("ca", "init", ca); r.code != 0 {
		t.Fatalf("ca init: %d %s", r.code, r.stderr)
	}
	if r := e.run("ca", "init", ca); r.code == 0 {
		t.Fatal("ca init overwrote the CA")
	}
	if r := e.run("ca", "issue", ca, "agent", "--server", "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("issue: %d %s", r.code, r.stderr)
	}
	if r := e.run("ca", "issue", ca, "alice"); r.code != 0 {
		t.Fatalf("issue: %d %s", r.code, r.stderr)
	}
	if fi, err := os.Stat(filepath.Join(ca, "alice.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v %v", fi.Mode(), err)
	}
	if r := e.run("serve", "--boards", e.boards, "--listen", "tcp:127.0.0.1:0"); r.code != 2 || !strings.Contains(r.stderr, "TLS") {
		t.Fatalf("serve on tcp without TLS: exit %d %s", r.code, r.stderr)
	}
	if r := e.run("ca", "issue", ca, "../x"); r.code != 2 {
		t.Fatalf("a path as a name: exit %d", r.code)
	}
}

// The QEMU board through an agent: the shared plan flashes, boots, logs in
// on the console and runs its ansible checks over SSH, all through the
// agent (the disk written on the agent's side, SSH through its tunnel).
func TestServeQEMUThroughAgent(t *testing.T) {
	e := setupE2E(t)
	sockDir, err := os.MkdirTemp("", "jsplan-serve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "agent.sock")
	agentDir := t.TempDir()
	agent := exec.Command(jsplanBin, "serve", "--boards", e.boards, "--listen", "unix:"+sock,
		"--lock-dir", filepath.Join(agentDir, "locks"), "--state-dir", filepath.Join(agentDir, "state"), "--lease-ttl", "10s")
	var agentLog lockedBuffer
	agent.Stderr = &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
		if t.Failed() {
			t.Logf("agent:\n%s", agentLog.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not listen: %s", agentLog.String())
		}
	}
	client := filepath.Join(t.TempDir(), "client.yaml")
	os.WriteFile(client, []byte(fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: qemu-1
    labels: {kind: virtual}
    vars: {image-id-file: /etc/image-id, network: ssh}
    drivers:
      remote: {address: "unix:%s", board: qemu-1}
`, sock)), 0o644)
	remote := *e
	remote.boards = client
	r := remote.apply(t, e.plan, "qemu-1")
	if r.code != 0 {
		t.Fatalf("apply on qemu-1 through the agent failed\n%s\nagent:\n%s", r.output(), agentLog.String())
	}
	if got := strings.TrimSpace(r.read(t, "files/etc/image-id")); got != e.imageID {
		t.Errorf("collected /etc/image-id = %q, want %q", got, e.imageID)
	}
	alog := r.read(t, "ansible-check-image.yaml.log")
	if !strings.Contains(alog, "failed=0") || !strings.Contains(alog, "ok=2") {
		t.Errorf("ansible through the agent's tunnel did not pass:\n%s", alog)
	}
	if !strings.Contains(agentLog.String(), "lease of qemu-1 granted") {
		t.Errorf("the agent served no lease:\n%s", agentLog.String())
	}
}

// jsplan console on a board served by an agent: power on, log in, the
// escapes, detach.
func TestServeConsoleRemote(t *testing.T) {
	a := newAgentEnv(t, "2s")
	p := a.startTerm(a.clientArgs("c", "console", "sim-1", "--power-on", "--log-dir", filepath.Join(a.dir, "sessions"))...)
	p.expect("attached to the console of sim-1", consoleWait)
	p.expect("login: ", consoleWait)
	p.send("root\r")
	p.expect("assword: ", consoleWait)
	p.send("sim-password\r")
	p.expect("# ", consoleWait)
	p.send("echo $((6*7))\r")
	p.expect("42", consoleWait)
	p.send("\r~s")
	p.expect("power state: on", consoleWait)
	p.send("\r~.")
	p.expect("detached from sim-1", consoleWait)
	if code := p.wait(consoleWait); code != 0 {
		t.Fatalf("exit status %d\n%s", code, p.tail())
	}
	p.requireSane()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(a.agent.stderrText(), "released by its holder"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the console did not release its lease:\n%s", a.agent.stderrText())
		}
	}
}
