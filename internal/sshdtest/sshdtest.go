// Package sshdtest starts a private OpenSSH server on 127.0.0.1 for tests:
// a real sshd with its own host key, client key and configuration in a
// temporary directory, listening on a free loopback port, and stopped (with
// every process it spawned) when the test ends.
//
// It is meant for tests only: the server accepts the generated client key
// for the current user and nothing else.
package sshdtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the OpenSSH programs the package runs.
const (
	SSHD      = "/usr/sbin/sshd"
	SSHKeygen = "ssh-keygen"
	SSH       = "ssh"
)

// Server is a running sshd on the loopback interface.
type Server struct {
	// Host is the address sshd listens on (always 127.0.0.1).
	Host string
	// Port is the TCP port sshd listens on.
	Port int
	// User is the user the client key logs in as (the current user).
	User string
	// KeyFile is the client's private key (ed25519).
	KeyFile string
	// Dir holds the keys, the configuration and the pid file. Processes
	// whose command line names it (ssh clients using KeyFile) are
	// attributed to the server and ended with it.
	Dir string
	// Home is HOME in the server's sessions (a directory in Dir): the
	// user's shell startup files (~/.bashrc) are not read, so a login is
	// as quick as on a plain board, and what tools keep in ~ (ansible's
	// remote temp files) stays in the test's directory.
	Home string

	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{} // closed when sshd has exited
}

// Start starts sshd for the test and registers its shutdown with
// t.Cleanup. The test is skipped when OpenSSH is not installed, unless the
// environment variable CI is set: then it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	for _, p := range []string{SSHD, SSHKeygen, SSH} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (Debian packages openssh-server, openssh-client; make deps installs them)", p)
			}
			t.Skipf("%s is not installed (Debian packages openssh-server, openssh-client)", p)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: current user: %v", err)
	}
	dir := t.TempDir()
	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: dir, KeyFile: filepath.Join(dir, "id_ed25519"), Home: filepath.Join(dir, "home")}
	if err := os.Mkdir(s.Home, 0o700); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	for _, k := range []struct{ file, comment string }{{hostKey, "jsplan-test-host"}, {s.KeyFile, "jsplan-test-client"}} {
		out, err := exec.Command(SSHKeygen, "-q", "-t", "ed25519", "-N", "", "-C", k.comment, "-f", k.file).CombinedOutput()
		if err != nil {
			t.Fatalf("sshdtest: ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(s.KeyFile + ".pub")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	// The key only works from the loopback address.
	auth := `from="127.0.0.1",no-agent-forwarding,no-port-forwarding,no-X11-forwarding ` + string(pub)
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(auth), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshdtest: sshd needs the directory /run/sshd: %v", err)
	}

	// A free port can be taken by someone else before sshd binds it: try
	// again with another one.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		s.Port = port
		if lastErr = s.start(hostKey); lastErr == nil {
			t.Cleanup(func() { s.stop(t) })
			return s
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	t.Fatalf("sshdtest: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// config is the sshd configuration: loopback only, public keys only, the
// one user, nothing forwarded.
func (s *Server) config(hostKey string) string {
	lines := []string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress 127.0.0.1",
		"AddressFamily inet",
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(s.Dir, "authorized_keys"),
		"AllowUsers " + s.User,
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"UseDNS no",
		"PrintMotd no",
		"AllowAgentForwarding no",
		"AllowTcpForwarding no",
		"X11Forwarding no",
		"PermitTunnel no",
		"MaxStartups 64",
		"LogLevel INFO",
		"Subsystem sftp internal-sftp",
		"SetEnv HOME=" + s.Home,
	}
	return strings.Join(lines, "\n") + "\n"
}

func (s *Server) start(hostKey string) error {
	cfg := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(s.config(hostKey)), 0o600); err != nil {
		return err
	}
	s.log = &syncBuffer{}
	s.done = make(chan struct{})
	// sshd must be run by its absolute path (it re-executes itself).
	s.cmd = exec.Command(SSHD, "-D", "-e", "-f", cfg)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(20 * time.Second); err != nil {
		s.kill(s.cmd.Process.Pid)
		<-s.done
		log := s.log.String()
		if strings.Contains(log, "Address already in use") { // sshd's own words, in its log
			err = fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return fmt.Errorf("%w\nsshd log:\n%s", err, log)
	}
	return nil
}

// errPortTaken is start's error when sshd found its port taken.
var errPortTaken = errors.New("the port was taken before sshd bound it")

// waitReady waits until sshd answers with its version banner.
func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	for {
		select {
		case <-s.done:
			return fmt.Errorf("sshd exited: %v", s.cmd.ProcessState)
		default:
		}
		if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd did not accept connections on %s within %s", addr, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns what sshd wrote so far (its log, with -e).
func (s *Server) Log() string { return s.log.String() }

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// SSHArgs are ssh client arguments that log in to the server without
// prompts, host key store or connection sharing; append the command.
func (s *Server) SSHArgs() []string {
	return []string{"-p", strconv.Itoa(s.Port), "-i", s.KeyFile, "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ControlMaster=no", "-o", "ControlPath=none",
		s.User + "@" + s.Host}
}

// PID is sshd's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Processes lists the processes attributed to the server that are still
// alive: sshd, everything it spawned, commands run in its sessions (found
// by SSH_CONNECTION in their environment, also once orphaned), and any
// process whose command line names the server's directory (ssh clients
// with its key, ControlMaster mux processes with a control path in it).
func (s *Server) Processes() []int {
	procs := scanProcs()
	var pids []int
	root := s.cmd.Process.Pid
	session := []byte(" 127.0.0.1 " + strconv.Itoa(s.Port) + "\x00")
	for pid, p := range procs {
		if pid == os.Getpid() || p.state == 'Z' {
			continue
		}
		if pid == root || descends(procs, pid, root) || strings.Contains(p.cmdline, s.Dir) || inSession(pid, session) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// inSession tells whether the process's SSH_CONNECTION ends with the
// server's address (" 127.0.0.1 PORT").
func inSession(pid int, suffix []byte) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range bytes.SplitAfter(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("SSH_CONNECTION=")); ok {
			return bytes.HasSuffix(v, suffix)
		}
	}
	return false
}

// Mentioning lists the live processes (not zombies) whose command line
// contains substr, other than the calling process: to check that a test
// left nothing running that used its files.
func Mentioning(substr string) []int {
	var pids []int
	for pid, p := range scanProcs() {
		if pid != os.Getpid() && p.state != 'Z' && strings.Contains(p.cmdline, substr) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// Describe returns "pid cmdline" lines for pids, for error messages.
func Describe(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fmt.Fprintf(&b, "  %d %s\n", pid, strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))))
	}
	return b.String()
}

// stop ends sshd and every process attributed to it, by PID, then checks
// that none is left.
func (s *Server) stop(t testing.TB) {
	// Remember the processes with their start times: children of sshd lose
	// their parent link when it exits, and a PID may be reused later.
	procs := scanProcs()
	known := map[int]uint64{}
	for _, pid := range s.Processes() {
		known[pid] = procs[pid].start
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	for pid := range known {
		if pid != s.cmd.Process.Pid {
			s.kill(pid)
		}
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.kill(s.cmd.Process.Pid)
		<-s.done
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := scanProcs()
		for _, pid := range s.Processes() {
			if _, ok := known[pid]; !ok {
				known[pid] = procs[pid].start
			}
		}
		var left []int
		for pid, start := range known {
			if p, ok := procs[pid]; ok && p.start == start && p.state != 'Z' {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		slices.Sort(left)
		if time.Now().After(deadline) {
			t.Errorf("sshdtest: processes of the test's sshd are still running:\n%s", Describe(left))
			return
		}
		for _, pid := range left {
			s.kill(pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) kill(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

type proc struct {
	ppid    int
	state   byte
	start   uint64 // start time in clock ticks since boot
	cmdline string
}

// scanProcs reads the process table from /proc.
func scanProcs() map[int]proc {
	ents, _ := os.ReadDir("/proc")
	procs := make(map[int]proc, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 20 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		start, _ := strconv.ParseUint(f[19], 10, 64)
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		procs[pid] = proc{ppid: ppid, state: f[0][0], start: start, cmdline: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))}
	}
	return procs
}

func descends(procs map[int]proc, pid, root int) bool {
	for i := 0; i < 64; i++ {
		p, ok := procs[pid]
		if !ok || p.ppid <= 1 {
			return false
		}
		if p.ppid == root {
			return true
		}
		pid = p.ppid
	}
	return false
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
