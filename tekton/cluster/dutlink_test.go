package cluster_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jsplan/jsplan/tekton/cluster"
)

// dutlinkBoard is the node's board behind the DUTLink simulator: its
// harness's control port is a pty named /dev/serial/by-id/<dutlinkPort>,
// its storage mux shows a loop device as /dev/disk/by-id/<dutlinkDisk>
// while switched to the host.
const (
	dutlinkPort  = "jsplan-cluster-dutlink0"
	dutlinkDisk  = "/dev/disk/by-id/jsplan-cluster-dutlink0-disk"
	dutlinkBoard = `  - name: dutlink-1
    labels: {harness: dutlink}
    vars: {image-id-file: etc/image-id}
    drivers:
      dutlink: {port: ` + dutlinkPort + `, disk: ` + dutlinkDisk + `, disk-wait: 30s}
`
)

// dutlinkClass is the operator's DeviceClass for boards behind a DUTLink.
const dutlinkClass = `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: dutlink.jsplan.dev}
spec:
  extendedResourceName: jsplan.dev/dutlink
  selectors:
    - cel: {expression: 'device.driver == "jsplan.dev"'}
    - cel: {expression: 'device.attributes["jsplan.dev"].?harness.orValue("") == "dutlink"'}
`

// dutlinkSim is the DUTLink simulator (cmd dutlinksim, built from the
// tree) running on the node with a built-in board: what it prints as
// "event: <what>" is the simulated hardware's doing.
type dutlinkSim struct {
	mu     sync.Mutex
	events []string
}

// last is the last event that starts with prefix ("" when none).
func (s *dutlinkSim) last(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.events) - 1; i >= 0; i-- {
		if strings.HasPrefix(s.events[i], prefix) {
			return s.events[i]
		}
	}
	return ""
}

func (s *dutlinkSim) saw(event string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.events, event)
}

// startDUTLink builds and starts the simulator over a new loop device.
func (e *env) startDUTLink() *dutlinkSim {
	t := e.t
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dutlinksim")
	build := exec.CommandContext(e.ctx, "go", "build", "-o", bin, "./drivers/dutlink/dutlinktest/cmd/dutlinksim")
	build.Dir = e.repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOPROXY=off", "GOFLAGS=-mod=readonly") // the node has no network: the module cache has what the main module needs
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building dutlinksim: %v\n%s", err, out)
	}
	medium := loopDisk(t, "dutlink0.img")
	link := "/dev/serial/by-id/" + dutlinkPort
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dutlinkDisk), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	cmd := exec.CommandContext(ctx, bin, "-disk", dutlinkDisk, "-medium", medium, "-disk-delay", "200ms",
		"-boot", filepath.Join(cluster.Root(), "dutlink0"), "-password", "demo-password", "-link", link)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stderr = logWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &dutlinkSim{}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l := sc.Text()
			if p, ok := strings.CutPrefix(l, "control port: "); ok {
				ready <- p
			}
			if ev, ok := strings.CutPrefix(l, "event: "); ok {
				s.mu.Lock()
				s.events = append(s.events, ev)
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	select {
	case p := <-ready:
		e.logf("DUTLink simulator: control port %s (%s), storage %s", p, link, medium)
	case <-time.After(30 * time.Second):
		t.Fatal("the DUTLink simulator did not start")
	}
	return s
}

// dutlinkSample runs the DUTLink sample (plans/examples/dutlink-smoke.yaml:
// flash through the storage mux, boot, log in, smoke test, collect logs)
// through the pipeline on a board behind the DUTLink simulator, with the
// driver in agent access (the pod gets no device node: the agent in the
// driver's pod drives the harness and its storage mux). The password comes
// from the credentials workspace. After the run the claim's lease ends and
// the harness is off with its storage given back to the board.
func (e *env) dutlinkSample(git, url, id, sum string) {
	t := e.t
	sim := e.startDUTLink()
	// The operator adds the board to the node's inventory; the driver
	// follows the file.
	if err := os.WriteFile("/etc/jsplan/boards.yaml.tmp", []byte(inventory+dutlinkBoard), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename("/etc/jsplan/boards.yaml.tmp", "/etc/jsplan/boards.yaml"); err != nil {
		t.Fatal(err)
	}
	e.apply(dutlinkClass)
	e.waitFor("dutlink-1 published untainted", 2*time.Minute, func() (bool, string) {
		out := e.kubectl("get", "resourceslices", "-o", `jsonpath={range .items[*].spec.devices[*]}{.name} {.taints[*].key}{"\n"}{end}`)
		for _, l := range strings.Split(out, "\n") {
			if strings.TrimSpace(l) == "dutlink-1" {
				return true, l
			}
		}
		return false, out
	})
	e.kubectl("-n", ns, "create", "secret", "generic", "dutlink-credentials", "--from-literal=params.yaml=password: demo-password\n")

	pr := e.pipelineRunWith("jsplan.dev/dutlink", "", "dutlink-credentials", git, "plans/examples/dutlink-smoke.yaml", url, sum, "image-id="+id)
	e.logf("started %s", pr)
	e.checkPassedOn(pr, id, "dutlink-1")
	for _, ev := range []string{"storage host", "power 1"} {
		if !sim.saw(ev) {
			t.Errorf("the harness never did %q: the image did not go through its storage mux, or the board never booted", ev)
		}
	}
	logs, _ := e.n.Kubectl(e.ctx, "-n", "jsplan-dra", "logs", "daemonset/jsplan-dra")
	if !strings.Contains(logs, "lease of dutlink-1 granted to ResourceClaim") {
		t.Errorf("the driver's log does not show the claim's lease of dutlink-1:\n%s", tail(logs, 3000))
	}
	// The pod is done: the kubelet unprepares its claim, the lease ends
	// and the agent leaves the board off.
	ended := e.waitFor("the lease of dutlink-1 to end", 3*time.Minute, func() (bool, string) {
		logs, _ := e.n.Kubectl(e.ctx, "-n", "jsplan-dra", "logs", "daemonset/jsplan-dra")
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "lease of dutlink-1 by ResourceClaim") {
				return true, l
			}
		}
		return false, tail(logs, 1000)
	})
	if !strings.Contains(ended, "powered off") {
		t.Errorf("the lease ended without powering the board off: %s", ended)
	}
	if p, st := sim.last("power "), sim.last("storage "); p != "power 0" || st != "storage dut" {
		t.Errorf("after the lease the harness's last power event is %q and storage event %q, want power 0 and storage dut", p, st)
	}
}
