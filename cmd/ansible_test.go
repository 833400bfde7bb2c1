package cmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jsplan/jsplan/internal/sshdtest"
)

// These tests run the built jsplan binary against a real OpenSSH server on
// 127.0.0.1 that stands in for the board's network: the sim board's ssh
// endpoint points at it, so "the board" is this host reached over SSH.

// sshSecret is a secret plan parameter; it must never show in any output
// or artifact.
const sshSecret = "tok-9f3c2e71-SECRET"

// sshBuildJSPlan builds jsplan (pure Go, as released) into a temporary
// directory.
func sshBuildJSPlan(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jsplan")
	cmd := exec.Command("go", "build", "-o", bin, "./jsplan")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sshWorld is a plan directory, an inventory whose sim board reaches the
// test's sshd, and the directories jsplan writes to.
type sshWorld struct {
	t         testing.TB
	bin       string
	srv       *sshdtest.Server
	dir       string // plans and playbooks
	board     string // a directory "on the board" (this host, reached over SSH)
	artifacts string
	home      string
}

func newSSHWorld(t testing.TB, bin string, srv *sshdtest.Server) *sshWorld {
	t.Helper()
	w := &sshWorld{t: t, bin: bin, srv: srv, dir: t.TempDir(), board: t.TempDir(), home: t.TempDir()}
	w.artifacts = filepath.Join(t.TempDir(), "artifacts")
	w.writeBoards(srv.Port)
	t.Cleanup(w.nothingLeft)
	return w
}

// nothingLeft checks that jsplan left no process behind on this side:
// ansible-playbook (its command line names the playbook in w.dir) and ssh
// clients (they name the key file). Processes on the board side (under
// sshd) are the board's, and sshdtest ends them.
func (w *sshWorld) nothingLeft() {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := append(sshdtest.Mentioning(w.dir), sshdtest.Mentioning(w.srv.KeyFile)...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Errorf("processes of the run are still alive after jsplan exited:\n%s", sshdtest.Describe(left))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeBoards writes the inventory: the sim board's ssh endpoint is the
// test's sshd, on port.
func (w *sshWorld) writeBoards(port int) {
	w.write("boards.yaml", fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    drivers:
      sim:
        password: sim-password
        ssh: {host: 127.0.0.1, port: %d, user: %s, key-file: %s}
`, port, w.srv.User, w.srv.KeyFile))
}

func (w *sshWorld) write(name, text string) string {
	w.t.Helper()
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// sshResult is one jsplan run.
type sshResult struct {
	code           int
	stdout, stderr string
}

func (r sshResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// apply runs jsplan apply on the plan with the given extra arguments.
func (w *sshWorld) apply(plan string, args ...string) sshResult {
	w.t.Helper()
	all := append([]string{"apply", filepath.Join(w.dir, plan),
		"--boards", filepath.Join(w.dir, "boards.yaml"), "--board", "sim-1",
		"--artifacts", w.artifacts, "--lock-dir", filepath.Join(w.home, "locks"),
		"--state-dir", filepath.Join(w.home, "state"), "--set", "secret=" + sshSecret}, args...)
	cmd := exec.Command(w.bin, all...)
	// Ansible keeps its own files (controller side) under the test's
	// directories, not in the user's home.
	cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+filepath.Join(w.home, "ansible"), "NO_COLOR=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := sshResult{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("run jsplan: %v", err)
	}
	// The secret never leaves jsplan unmasked.
	if strings.Contains(res.stdout+res.stderr, sshSecret) {
		w.t.Errorf("the secret shows in jsplan's output:\n%s", res)
	}
	w.noSecretInArtifacts()
	return res
}

// noSecretInArtifacts reads every artifact file.
func (w *sshWorld) noSecretInArtifacts() {
	w.t.Helper()
	_ = filepath.WalkDir(w.artifacts, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			w.t.Errorf("read artifact: %v", err)
			return nil
		}
		if bytes.Contains(data, []byte(sshSecret)) {
			w.t.Errorf("the secret shows in artifact %s:\n%s", p, data)
		}
		return nil
	})
}

// artifact returns an artifact file's contents, failing when it is missing.
func (w *sshWorld) artifact(name string) string {
	w.t.Helper()
	data, err := os.ReadFile(filepath.Join(w.artifacts, name))
	if err != nil {
		w.t.Fatalf("artifact %s: %v", name, err)
	}
	return string(data)
}

// report is the parsed report.json.
type sshReport struct {
	Status string `json:"status"`
	Steps  []struct {
		Name    string  `json:"name"`
		Type    string  `json:"type"`
		Status  string  `json:"status"`
		Error   string  `json:"error"`
		Output  string  `json:"output"`
		Seconds float64 `json:"duration_seconds"`
	} `json:"steps"`
}

func (w *sshWorld) report() sshReport {
	w.t.Helper()
	var r sshReport
	if err := json.Unmarshal([]byte(w.artifact("report.json")), &r); err != nil {
		w.t.Fatalf("report.json: %v", err)
	}
	return r
}

func (w *sshWorld) exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// sshNeeds starts sshd and checks that the programs the steps run exist.
func sshNeeds(t testing.TB, programs ...string) *sshdtest.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("ansible/ssh against a real sshd: skipped under -short")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (make deps installs it)", p)
			}
			t.Skipf("%s is not installed (Debian package ansible-core)", p)
		}
	}
	return sshdtest.Start(t)
}

const sshSitePlaybook = `- hosts: all
  gather_facts: false
  tasks:
    - name: write marker
      ansible.builtin.shell: echo "ran on {{ inventory_hostname }} as $(id -un) in {{ ansible_play_name }}" > {{ out }}/marker
      tags: [main]
    - name: touch extra
      ansible.builtin.file: {path: "{{ out }}/extra", state: touch}
      tags: [extra]
    - name: show the secret
      ansible.builtin.debug: {msg: "token is {{ token }}"}
      tags: [main]
    - name: write the secret on the board
      ansible.builtin.copy: {dest: "{{ out }}/token", content: "{{ token }}"}
      tags: [main]
`

// sshAnsiblePlan is a plan with one ansible step; more are the step's
// extra keys (tags, limit, ...), as YAML flow mapping entries.
func sshAnsiblePlan(playbook, more string) string {
	return `apiVersion: jsplan.dev/v1
kind: Plan
name: ansible-over-ssh
params:
  out: {type: string, required: true}
  secret: {type: string, secret: true, required: true}
steps:
  - name: playbook
    ansible:
      playbook: ` + playbook + `
      extra-vars: {out: "${{ params.out }}", token: "${{ params.secret }}"}
      env: {ANSIBLE_REMOTE_TEMP: "${{ params.out }}/.ansible-remote"}
` + more
}

func TestAnsibleSSH(t *testing.T) {
	srv := sshNeeds(t, "ansible-playbook")
	bin := sshBuildJSPlan(t)

	t.Run("playbook runs on the board", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("site.yml", sshSitePlaybook)
		w.write("plan.yaml", sshAnsiblePlan("site.yml", ""))
		logins := strings.Count(srv.Log(), "Accepted publickey")
		res := w.apply("plan.yaml", "--set", "out="+w.board)
		if res.code != 0 {
			t.Fatalf("apply failed: %s\nsshd log:\n%s", res, srv.Log())
		}
		logins = strings.Count(srv.Log(), "Accepted publickey") - logins
		marker, err := os.ReadFile(filepath.Join(w.board, "marker"))
		if err != nil {
			t.Fatalf("the playbook did not write its marker: %v\n%s", err, res)
		}
		if want := "ran on sim-1 as " + srv.User; !strings.HasPrefix(string(marker), want) {
			t.Errorf("marker = %q, want prefix %q", marker, want)
		}
		if !w.exists(filepath.Join(w.board, "extra")) {
			t.Errorf("the extra task did not run without tags")
		}
		// The step's env reached ansible: the copy task put its temporary
		// file under ANSIBLE_REMOTE_TEMP.
		if !w.exists(filepath.Join(w.board, ".ansible-remote")) {
			t.Errorf("env: ANSIBLE_REMOTE_TEMP did not reach ansible")
		}
		// The secret reached the board intact: masking is for output only.
		if tok, _ := os.ReadFile(filepath.Join(w.board, "token")); string(tok) != sshSecret {
			t.Errorf("the board got token %q, want the secret", tok)
		}

		log := w.artifact("ansible-site.yml.log")
		for _, want := range []string{"TASK [write marker]", "TASK [touch extra]", "PLAY RECAP", "sim-1", "ok=4", "token is "} {
			if !strings.Contains(log, want) {
				t.Errorf("ansible log lacks %q:\n%s", want, log)
			}
		}
		if !strings.Contains(res.stdout, "PLAY RECAP") {
			t.Errorf("ansible output does not reach jsplan's output:\n%s", res)
		}
		junit, _ := filepath.Glob(filepath.Join(w.artifacts, "ansible-junit", "*.xml"))
		if len(junit) != 1 {
			t.Fatalf("ansible junit reports: %v, want one", junit)
		}
		x := w.artifact(filepath.Join("ansible-junit", filepath.Base(junit[0])))
		if !strings.Contains(x, "write marker") || !strings.Contains(x, "<testsuites") {
			t.Errorf("ansible junit report lacks the tasks:\n%s", x)
		}
		rep := w.report()
		if rep.Status != "passed" || len(rep.Steps) != 1 || rep.Steps[0].Type != "ansible" {
			t.Errorf("report: %+v", rep)
		} else {
			t.Logf("ansible step (4 tasks) took %.2fs, %d ssh logins", rep.Steps[0].Seconds, logins)
		}
	})

	t.Run("failing playbook fails the step", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("fail.yml", `- hosts: all
  gather_facts: false
  tasks:
    - name: check the board
      ansible.builtin.fail: {msg: "board check failed: fan stuck at 0 rpm"}
    - name: never reached
      ansible.builtin.file: {path: "{{ out }}/after-fail", state: touch}
`)
		w.write("plan.yaml", sshAnsiblePlan("fail.yml", ""))
		res := w.apply("plan.yaml", "--set", "out="+w.board)
		if res.code != 1 {
			t.Fatalf("exit %d, want 1 (test failure):\n%s", res.code, res)
		}
		const msg = "board check failed: fan stuck at 0 rpm"
		if !strings.Contains(res.stdout+res.stderr, msg) {
			t.Errorf("the task's message is not shown:\n%s", res)
		}
		if w.exists(filepath.Join(w.board, "after-fail")) {
			t.Errorf("a task after the failed one ran")
		}
		rep := w.report()
		if rep.Status != "failed" || len(rep.Steps) != 1 || rep.Steps[0].Status != "failed" {
			t.Fatalf("report: %+v", rep)
		}
		if want := `task "check the board" failed on sim-1: ` + msg; !strings.Contains(rep.Steps[0].Error, want) {
			t.Errorf("the step error lacks %q: %q", want, rep.Steps[0].Error)
		}
		if log := w.artifact("ansible-fail.yml.log"); !strings.Contains(log, msg) {
			t.Errorf("ansible log lacks the message:\n%s", log)
		}
		if j, _ := filepath.Glob(filepath.Join(w.artifacts, "ansible-junit", "*.xml")); len(j) != 1 {
			t.Errorf("ansible junit reports: %v, want one", j)
		} else if x, _ := os.ReadFile(j[0]); !bytes.Contains(x, []byte("<failure")) {
			t.Errorf("ansible junit report has no failure:\n%s", x)
		}
	})

	t.Run("failing command shows its status and stderr", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("cmd.yml", `- hosts: all
  gather_facts: false
  tasks:
    - name: probe the disk
      ansible.builtin.shell: echo "disk /dev/sdz not found, token {{ token }}" >&2; exit 3
`)
		w.write("plan.yaml", sshAnsiblePlan("cmd.yml", ""))
		res := w.apply("plan.yaml", "--set", "out="+w.board)
		if res.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", res.code, res)
		}
		rep := w.report()
		want := `task "probe the disk" failed on sim-1: non-zero return code (status 3): disk /dev/sdz not found, token ***`
		if len(rep.Steps) != 1 || !strings.Contains(rep.Steps[0].Error, want) {
			t.Errorf("step error does not contain %q: %+v", want, rep.Steps)
		}
	})

	// Issue 11, item 19: the same class as collect over ssh.
	t.Run("unreachable board is an infrastructure error", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.writeBoards(sshClosedPort(t))
		w.write("site.yml", sshSitePlaybook)
		w.write("plan.yaml", sshAnsiblePlan("site.yml", ""))
		res := w.apply("plan.yaml", "--set", "out="+w.board)
		if res.code != 3 {
			t.Fatalf("exit %d for an unreachable board, want 3:\n%s", res.code, res)
		}
		rep := w.report()
		if len(rep.Steps) != 1 || !strings.Contains(rep.Steps[0].Error, "sim-1 is unreachable") ||
			!strings.Contains(rep.Steps[0].Error, "Connection refused") {
			t.Errorf("step error does not say the board is unreachable: %+v", rep.Steps)
		}
	})

	t.Run("SIGTERM stops ansible and its ssh", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("slow.yml", `- hosts: all
  gather_facts: false
  tasks:
    - name: hang on the board
      ansible.builtin.shell: touch {{ out }}/started; sleep 600
`)
		w.write("plan.yaml", sshAnsiblePlan("slow.yml", ""))
		cmd := exec.Command(bin, "apply", filepath.Join(w.dir, "plan.yaml"),
			"--boards", filepath.Join(w.dir, "boards.yaml"), "--board", "sim-1",
			"--artifacts", w.artifacts, "--lock-dir", filepath.Join(w.home, "locks"),
			"--state-dir", filepath.Join(w.home, "state"), "--set", "secret="+sshSecret, "--set", "out="+w.board)
		cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+filepath.Join(w.home, "ansible"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// The task runs on the board once its file appears.
		deadline := time.Now().Add(3 * time.Minute)
		for !w.exists(filepath.Join(w.board, "started")) {
			select {
			case err := <-done:
				t.Fatalf("jsplan ended before the task started: %v\n%s", err, out.String())
			default:
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("the task did not start on the board:\n%s", out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(sshdtest.Mentioning(w.dir)) == 0 {
			t.Errorf("no ansible-playbook process seen while the task ran")
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("jsplan did not stop after SIGTERM:\n%s", out.String())
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 143 {
			t.Errorf("exit %v after SIGTERM, want 143:\n%s", err, out.String())
		}
		if rep := w.report(); rep.Status != "interrupted" {
			t.Errorf("report status %q, want interrupted", rep.Status)
		}
		if strings.Contains(out.String(), sshSecret) {
			t.Errorf("the secret shows in the output:\n%s", out.String())
		}
		// nothingLeft (cleanup) checks that ansible-playbook and ssh are gone.
	})

	t.Run("tags", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("site.yml", sshSitePlaybook)
		w.write("plan.yaml", sshAnsiblePlan("site.yml", "      tags: [main]\n"))
		if res := w.apply("plan.yaml", "--set", "out="+w.board); res.code != 0 {
			t.Fatalf("apply failed: %s", res)
		}
		if !w.exists(filepath.Join(w.board, "marker")) {
			t.Errorf("the task tagged main did not run")
		}
		if w.exists(filepath.Join(w.board, "extra")) {
			t.Errorf("the task tagged extra ran with tags: [main]")
		}
	})

	t.Run("skip-tags", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("site.yml", sshSitePlaybook)
		w.write("plan.yaml", sshAnsiblePlan("site.yml", "      skip-tags: [main]\n"))
		if res := w.apply("plan.yaml", "--set", "out="+w.board); res.code != 0 {
			t.Fatalf("apply failed: %s", res)
		}
		if w.exists(filepath.Join(w.board, "marker")) {
			t.Errorf("the task tagged main ran with skip-tags: [main]")
		}
		if !w.exists(filepath.Join(w.board, "extra")) {
			t.Errorf("the task tagged extra did not run")
		}
	})

	t.Run("limit and group", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("site.yml", strings.Replace(sshSitePlaybook, "hosts: all", "hosts: duts", 1))
		w.write("plan.yaml", sshAnsiblePlan("site.yml", "      group: duts\n      limit: sim-1\n"))
		if res := w.apply("plan.yaml", "--set", "out="+w.board); res.code != 0 {
			t.Fatalf("apply with limit sim-1 failed: %s", res)
		}
		if !w.exists(filepath.Join(w.board, "marker")) {
			t.Fatalf("the playbook did not run on the board in group duts")
		}

		// A limit that matches no host leaves ansible nothing to do: the
		// step fails, and the board is untouched.
		w = newSSHWorld(t, bin, srv)
		w.write("site.yml", sshSitePlaybook)
		w.write("plan.yaml", sshAnsiblePlan("site.yml", "      limit: other-board\n"))
		res := w.apply("plan.yaml", "--set", "out="+w.board)
		if res.code != 1 {
			t.Fatalf("exit %d with a limit that matches nothing, want 1:\n%s", res.code, res)
		}
		if w.exists(filepath.Join(w.board, "marker")) {
			t.Errorf("the playbook ran on a board outside the limit")
		}
		if !strings.Contains(res.stdout+res.stderr, "other-board") {
			t.Errorf("ansible's complaint about the limit is not shown:\n%s", res)
		}
	})

	// Issue 11, item 15: plan values are never templated by Jinja on the
	// host, here through the shipped library plans/lib/checks-over-ssh.yaml.
	t.Run("extra-vars are never templated", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		lib, err := filepath.Abs("../plans/lib/checks-over-ssh.yaml")
		if err != nil {
			t.Fatal(err)
		}
		w.write("write.yml", `- hosts: all
  gather_facts: false
  tasks:
    - name: write the image id
      ansible.builtin.copy: {dest: "{{ image_id_file }}", content: "{{ image_id }}"}
`)
		w.write("plan.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
name: unsafe
params:
  secret: {type: string, secret: true, required: true}
  evil: {type: string, required: true}
  out: {type: string, required: true}
steps:
  - use:
      plan: `+lib+`
      with: {playbook: "${{ plan.dir }}/write.yml", image-id: "${{ params.evil }}", image-id-file: "${{ params.out }}/image-id"}
`)
		evil := "{{ lookup('pipe', 'id -un; touch PWNED') }}"
		wd, _ := os.Getwd()
		res := w.apply("plan.yaml", "--set", "evil="+evil, "--set", "out="+w.board)
		for _, d := range []string{w.dir, w.board, w.home, wd} {
			if w.exists(filepath.Join(d, "PWNED")) {
				os.Remove(filepath.Join(d, "PWNED"))
				t.Errorf("a plan value ran a command on the host (PWNED in %s)", d)
			}
		}
		if res.code != 0 {
			t.Fatalf("apply: %s", res)
		}
		if got, _ := os.ReadFile(filepath.Join(w.board, "image-id")); string(got) != evil {
			t.Errorf("the value arrived as %q, want it literally", got)
		}
	})

	// Issue 11, item 5: a secret with quotes in ansible's JUnit XML
	// (&quot;, &apos; and friends) and JSON output is masked.
	t.Run("secret with quotes in the junit report", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		quoted := `q"uo'te<&>-SECRET-77`
		w.write("fail.yml", `- hosts: all
  gather_facts: false
  tasks:
    - name: show it
      ansible.builtin.debug: {msg: "value {{ quoted }}"}
    - name: fail with it
      ansible.builtin.fail: {msg: "bad {{ quoted }}"}
`)
		w.write("plan.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
name: quoted
params:
  secret: {type: string, secret: true, required: true}
  quoted: {type: string, secret: true, required: true}
steps:
  - ansible: {playbook: fail.yml, extra-vars: {quoted: "${{ params.quoted }}"}}
`)
		res := w.apply("plan.yaml", "--set", "quoted="+quoted)
		if res.code != 1 {
			t.Fatalf("want exit 1, got %s", res)
		}
		junit, _ := filepath.Glob(filepath.Join(w.artifacts, "ansible-junit", "*.xml"))
		if len(junit) != 1 {
			t.Fatalf("ansible junit reports: %v", junit)
		}
		if x := w.artifact(filepath.Join("ansible-junit", filepath.Base(junit[0]))); !strings.Contains(x, "bad ***") {
			t.Errorf("the junit report does not show the masked failure:\n%s", x)
		}
		if strings.Contains(res.stdout+res.stderr, "SECRET-77") {
			t.Errorf("the output shows the secret:\n%s", res)
		}
		_ = filepath.WalkDir(w.artifacts, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("SECRET-77")) {
					t.Errorf("artifact %s shows the secret:\n%s", p, b)
				}
			}
			return nil
		})
	})
}

// sshClosedPort is a loopback port nothing listens on.
func sshClosedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// sshCollectPlan collects paths over SSH; more is extra collect keys.
func sshCollectPlan(paths, more string) string {
	return `apiVersion: jsplan.dev/v1
kind: Plan
name: collect-over-ssh
params:
  secret: {type: string, secret: true, required: true}
steps:
  - name: collect
    collect:
      paths: ` + paths + `
      via: ssh
      to: from-board
` + more
}

func TestCollectSSH(t *testing.T) {
	srv := sshNeeds(t)
	bin := sshBuildJSPlan(t)

	t.Run("files and globs", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		files := map[string]string{
			"app.log":            "line one\nline two\n",
			"with space.log":     "spaced\n",
			"secret.conf":        "token=" + sshSecret + "\n",
			"sub/not-a-glob.txt": "deep\n",
		}
		for name, text := range files {
			p := filepath.Join(w.board, name)
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		paths := fmt.Sprintf(`["%s/*.log", "%s/secret.conf", "%s/sub/not-a-glob.txt"]`, w.board, w.board, w.board)
		w.write("plan.yaml", sshCollectPlan(paths, ""))
		res := w.apply("plan.yaml")
		if res.code != 0 {
			t.Fatalf("collect failed: %s", res)
		}
		dest := filepath.Join("from-board", strings.TrimPrefix(w.board, "/"))
		for name, text := range files {
			got := w.artifact(filepath.Join(dest, name))
			if name == "secret.conf" {
				if strings.Contains(got, sshSecret) || !strings.HasPrefix(got, "token=") {
					t.Errorf("collected %s = %q: the secret must be masked", name, got)
				}
				continue
			}
			if got != text {
				t.Errorf("collected %s = %q, want %q", name, got, text)
			}
		}
		if !strings.Contains(res.stdout, "collected 4 file(s)") {
			t.Errorf("output does not report 4 collected files:\n%s", res)
		}
	})

	t.Run("missing file fails", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		missing := filepath.Join(w.board, "no-such-file.log")
		w.write("plan.yaml", sshCollectPlan(missing, ""))
		res := w.apply("plan.yaml")
		if res.code != 1 {
			t.Fatalf("exit %d for a missing file, want 1:\n%s", res.code, res)
		}
		if !strings.Contains(res.stdout+res.stderr, missing) {
			t.Errorf("the missing path is not named:\n%s", res)
		}
	})

	t.Run("missing optional file passes", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		if err := os.WriteFile(filepath.Join(w.board, "present.txt"), []byte("here\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		paths := fmt.Sprintf(`["%s/no-such-file.log", "%s/present.txt"]`, w.board, w.board)
		w.write("plan.yaml", sshCollectPlan(paths, "      optional: true\n"))
		res := w.apply("plan.yaml")
		if res.code != 0 {
			t.Fatalf("optional collect of a missing file failed: %s", res)
		}
		got := w.artifact(filepath.Join("from-board", strings.TrimPrefix(w.board, "/"), "present.txt"))
		if got != "here\n" {
			t.Errorf("present.txt = %q", got)
		}
	})

	t.Run("unreachable board is an infrastructure error", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.writeBoards(sshClosedPort(t))
		w.write("plan.yaml", sshCollectPlan(filepath.Join(w.board, "*.log"), "      optional: true\n"))
		res := w.apply("plan.yaml")
		if res.code != 3 {
			t.Fatalf("exit %d, want 3:\n%s", res.code, res)
		}
		if !strings.Contains(res.stdout+res.stderr, "Connection refused") {
			t.Errorf("ssh's reason is not shown:\n%s", res)
		}
	})

	t.Run("glob matching nothing fails", func(t *testing.T) {
		w := newSSHWorld(t, bin, srv)
		w.write("plan.yaml", sshCollectPlan(filepath.Join(w.board, "no-such-dir", "*.log"), ""))
		if res := w.apply("plan.yaml"); res.code != 1 {
			t.Fatalf("exit %d for a glob that matches nothing, want 1:\n%s", res.code, res)
		}
	})
}

// BenchmarkAnsibleSSH runs a three-task playbook on the board through
// jsplan apply, with and without pipelining, and ansible-playbook directly
// with the settings the step uses: the ratios show what pipelining saves
// and what jsplan adds. logins/op counts SSH logins at the server.
//
//	go test -run '^$' -bench AnsibleSSH -benchtime 5x ./cmd
func BenchmarkAnsibleSSH(b *testing.B) {
	srv := sshNeeds(b, "ansible-playbook")
	bin := sshBuildJSPlan(b)
	const playbook = `- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.shell: echo hi > {{ out }}/marker
    - ansible.builtin.file: {path: "{{ out }}/extra", state: touch}
    - ansible.builtin.copy: {dest: "{{ out }}/copied", content: "x"}
`
	logins := func() int { return strings.Count(srv.Log(), "Accepted publickey") }
	for _, mode := range []struct{ name, env string }{
		{"jsplan/pipelining", ""},
		{"jsplan/no-pipelining", `      env: {ANSIBLE_PIPELINING: "False"}` + "\n"},
	} {
		b.Run(mode.name, func(b *testing.B) {
			w := newSSHWorld(b, bin, srv)
			w.write("bench.yml", playbook)
			w.write("plan.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
name: bench
params:
  out: {type: string}
  secret: {type: string, secret: true}
steps:
  - ansible:
      playbook: bench.yml
      extra-vars: {out: "${{ params.out }}"}
`+mode.env)
			n := logins()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if res := w.apply("plan.yaml", "--set", "out="+w.board); res.code != 0 {
					b.Fatalf("apply: %s", res)
				}
			}
			b.ReportMetric(float64(logins()-n)/float64(b.N), "logins/op")
		})
	}
	b.Run("ansible-playbook", func(b *testing.B) {
		w := newSSHWorld(b, bin, srv)
		pb := w.write("bench.yml", playbook)
		inv := w.write("inventory.yml", fmt.Sprintf(
			"board:\n  hosts:\n    sim-1: {ansible_host: 127.0.0.1, ansible_port: %d, ansible_user: %s, ansible_ssh_private_key_file: %s}\n",
			srv.Port, srv.User, srv.KeyFile))
		n := logins()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			cmd := exec.Command("ansible-playbook", "-i", inv, pb, "-e", "out="+w.board)
			cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+filepath.Join(w.home, "ansible"), "ANSIBLE_HOST_KEY_CHECKING=False",
				"ANSIBLE_PIPELINING=True", "ANSIBLE_SSH_ARGS=-o ControlMaster=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("ansible-playbook: %v\n%s", err, out)
			}
		}
		b.ReportMetric(float64(logins()-n)/float64(b.N), "logins/op")
	})
}
