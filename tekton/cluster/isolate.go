package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	insideEnv = "JSPLAN_CLUSTER_INSIDE"
	rootEnv   = "JSPLAN_CLUSTER_ROOT"
	binEnv    = "JSPLAN_CLUSTER_BIN"
	// CgroupRoot is the kubelet's cgroupRoot: every container's cgroup is
	// made under it, in each hierarchy, and removed from there afterwards.
	CgroupRoot = "jsplan-cluster"
	rootPrefix = "jsplan-cluster-"
)

// systemDirs are the paths the node's components and the shipped manifests
// use as they would on a real node. Inside the node's mount namespace each
// is a private mount of a directory under the node's root (/run a tmpfs), so
// nothing the node writes there reaches the host, and it is all gone when
// the namespace ends.
var systemDirs = []string{
	"/var/lib/kubelet",
	"/var/lib/containerd",
	"/var/lib/jsplan",
	"/var/log/pods",
	"/var/log/containers",
	"/etc/cdi",
	"/etc/jsplan",
	"/etc/kubernetes",
	// udev's link directories, for the test's boards (loop-device disks, a
	// pty UART): the host may have none.
	"/dev/disk",
	"/dev/serial",
}

// Inside reports whether this process runs inside the node's namespaces.
func Inside() bool { return os.Getenv(insideEnv) == "1" }

// Root is the node's root directory (inside the namespaces).
func Root() string { return os.Getenv(rootEnv) }

// Bin returns the binaries Isolate built (inside the namespaces).
func Bin() (Binaries, error) { return decodeBinaries(os.Getenv(binEnv)) }

// Isolate runs the calling program again inside new PID, mount and network
// namespaces (unshare(1)) and returns its exit status; inside them it sets
// up the node's private mounts and loopback-only network and returns
// run(). Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(cluster.Isolate(m.Run)) }
//
// Whatever way the run ends (a failure, Ctrl-C, the test killed), the
// kernel ends every process of the PID namespace and drops its mounts and
// network with it; what lives outside the namespaces (containers' cgroup
// directories, loop devices, the node's root directory, mount points made
// on the host) is removed here afterwards, or by the next run when this one
// was killed.
func Isolate(run func() int) int {
	if Inside() {
		if err := setupInside(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster: setting up the node's namespaces:", err)
			return 1
		}
		// The first process of a PID namespace ignores signals it has no
		// handler for: end at Ctrl-C and SIGTERM explicitly (the kernel then
		// ends the whole node; the process outside cleans up).
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-sig
			fmt.Fprintf(os.Stderr, "cluster: %v: ending the node\n", s)
			os.Exit(128 + int(s.(syscall.Signal)))
		}()
		return run()
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "cluster: skipped: the test cluster needs root (namespaces, mounts, containers)")
		return 0
	}
	if left := Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cluster: an earlier run was killed; cleaning up after it:\n  %s\n", strings.Join(left, "\n  "))
	}
	// A namespace whose first process was just killed takes a moment to
	// end the rest, and its mounts (which keep directories busy) go with
	// its last process: wait for that before sweeping.
	waitProcesses(30 * time.Second)
	Sweep()
	if procs := processes(); len(procs) > 0 {
		fmt.Fprintf(os.Stderr, "cluster: processes of an earlier run are still running: %s\n", strings.Join(procs, ", "))
		return 1
	}
	mountsBefore := mounts()
	// Built here, outside the namespaces: the module proxy is not reachable
	// from inside.
	bin, err := Build(context.Background(), ".", os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	root, err := os.MkdirTemp("", rootPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(root, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	created, err := makeMountPoints()
	writeLines(filepath.Join(root, "created"), created)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		cleanup(root)
		return 1
	}
	code := runInside(root, bin)
	waitProcesses(30 * time.Second)
	cleanup(root)
	Sweep()
	// Nothing of the run may be left on the host, whichever way it ended
	// (a loop device stays listed until its last user is gone: give the
	// kernel a moment).
	// What an earlier killed run left and could not be removed yet is
	// reported, not held against this run.
	var left []string
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(time.Second) {
		left = left[:0]
		for _, l := range Leftovers() {
			if strings.HasPrefix(l, "process ") || strings.Contains(l, root) {
				left = append(left, l)
			}
		}
		for m := range mounts() {
			if !mountsBefore[m] {
				left = append(left, "mount "+m)
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
		Sweep()
	}
	if others := Leftovers(); len(others) > 0 && len(left) == 0 {
		fmt.Fprintf(os.Stderr, "cluster: not yet removed (earlier runs; the next run sweeps again):\n  %s\n", strings.Join(others, "\n  "))
	}
	if len(left) > 0 {
		sort.Strings(left)
		fmt.Fprintf(os.Stderr, "cluster: the run left behind:\n  %s\n", strings.Join(left, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

// waitProcesses waits until no process of the cluster's binaries runs, at
// most d.
func waitProcesses(d time.Duration) {
	for end := time.Now().Add(d); len(processes()) > 0 && time.Now().Before(end); {
		time.Sleep(500 * time.Millisecond)
	}
}

// Leftovers lists what runs of the test cluster left on the host: processes
// of its binaries, loop devices over files in its roots, container cgroups,
// roots.
func Leftovers() []string {
	var left []string
	for _, p := range processes() {
		left = append(left, "process "+p)
	}
	if out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "/"+rootPrefix) {
				left = append(left, "loop device "+strings.TrimSpace(l))
			}
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/" + CgroupRoot)
	for _, d := range cg {
		left = append(left, "cgroup "+d)
	}
	roots, _ := filepath.Glob(filepath.Join(os.TempDir(), rootPrefix+"*"))
	for _, d := range roots {
		left = append(left, "directory "+d)
	}
	return left
}

// processes lists the running processes whose program is one of the
// cluster's binaries (in CacheDir).
func processes() []string {
	cache := CacheDir() + "/"
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, cache) {
			out = append(out, e.Name()+" "+filepath.Base(exe))
		}
	}
	return out
}

// mounts returns this mount namespace's mount points.
func mounts() map[string]bool {
	m := map[string]bool{}
	for _, l := range readLines("/proc/self/mountinfo") {
		if f := strings.Fields(l); len(f) > 4 {
			m[f[4]] = true
		}
	}
	return m
}

func runInside(root string, bin Binaries) int {
	// Pdeathsig is per thread: keep this goroutine on the thread that
	// starts unshare, so that unshare (and with --kill-child the whole PID
	// namespace) dies with this process however it ends.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	args := append([]string{"--fork", "--pid", "--mount", "--net", "--mount-proc", "--kill-child", "--propagation", "private", "--", exe}, os.Args[1:]...)
	cmd := exec.Command("unshare", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), insideEnv+"=1", rootEnv+"="+root, binEnv+"="+bin.encode())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Ctrl-C and SIGTERM reach the namespace's first process (the test,
	// which then ends and takes the node with it); this process waits for
	// that and cleans up.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster: unshare:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sig:
			// unshare ignores it while it waits: tell the node's first
			// process (a Ctrl-C at a terminal reaches it directly).
			for _, c := range strings.Fields(string(readFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)))) {
				if pid, err := strconv.Atoi(c); err == nil {
					_ = syscall.Kill(pid, s.(syscall.Signal))
				}
			}
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if code := ee.ExitCode(); code >= 0 {
					return code
				}
				return 1
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "cluster:", err)
				return 1
			}
			return 0
		}
	}
}

// makeMountPoints creates the system directories that do not exist on the
// host (empty: they are only mount points) and returns the ones it made,
// outermost first.
func makeMountPoints() ([]string, error) {
	var created []string
	for _, d := range systemDirs {
		var missing []string
		for p := d; p != "/"; p = filepath.Dir(p) {
			if _, err := os.Lstat(p); err == nil {
				break
			}
			missing = append([]string{p}, missing...)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return created, err
		}
		created = append(created, missing...)
	}
	return created, nil
}

// setupInside runs as the first process of the new namespaces.
func setupInside() error {
	root := Root()
	if root == "" {
		return errors.New(rootEnv + " is not set")
	}
	// Mounts below propagate among the node's own mounts (the kubelet and
	// containerd need shared propagation), never to the host: unshare made
	// them private first.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make / rshared: %w", err)
	}
	for _, d := range systemDirs {
		src := filepath.Join(root, "fs", d)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(src, d, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", d, err)
		}
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on /run: %w", err)
	}
	if err := os.MkdirAll("/run/lock", 0o755); err != nil {
		return err
	}
	if err := os.Chmod("/run/lock", 0o1777); err != nil {
		return err
	}
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", NodeIP + "/32", "dev", "lo"},
		{"ip", "addr", "add", ServiceIP + "/32", "dev", "lo"},
		{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// LogsDir is where the components' logs of the last run are kept:
// $JSPLAN_CLUSTER_LOGS, else out/cluster-logs in the checkout (the test
// runs in tekton/cluster).
func LogsDir() string {
	if d := os.Getenv("JSPLAN_CLUSTER_LOGS"); d != "" {
		return d
	}
	d, _ := filepath.Abs("../../out/cluster-logs")
	return d
}

// cleanup removes what a run leaves outside its namespaces, keeping its
// logs in LogsDir.
func cleanup(root string) {
	if _, err := os.Stat(filepath.Join(root, "logs")); err == nil {
		dst := LogsDir()
		_ = os.RemoveAll(dst)
		_ = os.MkdirAll(filepath.Dir(dst), 0o755)
		_ = exec.Command("cp", "-a", filepath.Join(root, "logs"), dst).Run()
		_ = exec.Command("cp", "-a", filepath.Join(root, "fs", "var", "log", "pods"), filepath.Join(dst, "pods")).Run()
	}
	detachLoops(root)
	removeCgroups()
	// Directories that are mount points in a namespace that is still
	// ending stay busy until its last process is gone: retry for a while.
	// The mount points this run made on the host (only if empty) go first:
	// the root holds their list.
	created := readLines(filepath.Join(root, "created"))
	for end := time.Now().Add(30 * time.Second); ; {
		detachLoops(root)
		busy := false
		for i := len(created) - 1; i >= 0; i-- {
			if err := os.Remove(created[i]); err != nil && !os.IsNotExist(err) && !errors.Is(err, syscall.ENOTEMPTY) {
				busy = true
			}
		}
		if busy && time.Now().Before(end) {
			time.Sleep(time.Second)
			continue
		}
		if err := os.RemoveAll(root); err == nil || time.Now().After(end) {
			break
		}
		time.Sleep(time.Second)
	}
}

// Sweep cleans up after earlier runs that were killed: roots whose owner
// process is gone, with their loop devices and mount points, and empty
// container cgroups.
func Sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), rootPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // still running
		}
		cleanup(d)
	}
	removeCgroups()
}

// removeCgroups removes the empty cgroup directories under CgroupRoot in
// every hierarchy, deepest first. Live ones stay (rmdir refuses them).
func removeCgroups() {
	tops, _ := filepath.Glob("/sys/fs/cgroup/*/" + CgroupRoot)
	if t := "/sys/fs/cgroup/" + CgroupRoot; exists(t) {
		tops = append(tops, t)
	}
	for _, top := range tops {
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}

// detachLoops detaches the loop devices whose backing files are under root.
func detachLoops(root string) {
	out, err := exec.Command("losetup", "--list", "--json", "--output", "NAME,BACK-FILE").Output()
	if err != nil || len(out) == 0 {
		return
	}
	var l struct {
		Loopdevices []struct {
			Name     string `json:"name"`
			BackFile string `json:"back-file"`
		} `json:"loopdevices"`
	}
	if json.Unmarshal(out, &l) != nil {
		return
	}
	for _, d := range l.Loopdevices {
		if strings.HasPrefix(d.BackFile, root+"/") {
			_ = exec.Command("losetup", "-d", d.Name).Run()
		}
	}
}

func readFile(p string) []byte { b, _ := os.ReadFile(p); return b }

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func writeLines(file string, lines []string) {
	_ = os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func readLines(file string) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if t := strings.TrimSpace(s.Text()); t != "" {
			lines = append(lines, t)
		}
	}
	return lines
}
