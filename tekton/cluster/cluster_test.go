package cluster_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jsplan/jsplan/tekton/cluster"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("cluster: skipped in -short mode")
		os.Exit(0)
	}
	os.Exit(cluster.Isolate(m.Run))
}

// repo is the repository's root.
func repo(t testing.TB) string {
	d, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// env is one node with Tekton and the jsplan DRA driver deployed as an
// operator deploys them, and a server for the plans and images on the
// node's address.
type env struct {
	t    *testing.T
	n    *cluster.Node
	ctx  context.Context
	www  string // served at http://NodeIP:8080/
	pvs  string // the PersistentVolumes' directories
	repo string
}

const (
	wwwAddr = cluster.NodeIP + ":8080"
	ns      = "ci"
)

func (e *env) kubectl(args ...string) string {
	e.t.Helper()
	out, err := e.n.Kubectl(e.ctx, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) apply(yaml string) string {
	e.t.Helper()
	out, err := e.n.KubectlIn(e.ctx, strings.NewReader(yaml), "apply", "-f", "-")
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) create(yaml string) string {
	e.t.Helper()
	out, err := e.n.KubectlIn(e.ctx, strings.NewReader(yaml), "create", "-o", "name", "-f", "-")
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// logf is t.Logf with the time, for a test that runs for minutes.
func (e *env) logf(format string, args ...any) {
	e.t.Helper()
	e.t.Logf("%s %s", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func setup(t *testing.T) *env {
	root := cluster.Root()
	bin, err := cluster.Bin()
	if err != nil {
		t.Fatal(err)
	}
	r := repo(t)
	images := []string{filepath.Join(r, "out", "jsplan-image.oci.tar"), filepath.Join(r, "out", "jsplan-dra-image.oci.tar")}
	for _, im := range images {
		if _, err := os.Stat(im); err != nil {
			t.Fatalf("%v: build the images first: make image image-dra (make test-cluster does)", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	t.Cleanup(cancel)
	n := &cluster.Node{Root: root, Bin: bin, Log: logWriter{t}}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"kubelet", "containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver"} {
				b, _ := exec.Command("tail", "-n", "8", n.LogFile(c)).Output()
				t.Logf("--- last lines of %s:\n%s", c, b)
			}
		}
		n.Stop()
	})
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	scratch, err := cluster.Images(bin, filepath.Join(root, "images"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Import(ctx, append(scratch, images...)...); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, n: n, ctx: ctx, www: filepath.Join(root, "www"), pvs: filepath.Join(root, "pv"), repo: r}
	e.serve()
	return e
}

// serve starts the plans' Git repository and the images on
// http://NodeIP:8080/.
func (e *env) serve() {
	t := e.t
	if err := os.MkdirAll(filepath.Join(e.www, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", wwwAddr)
	if err != nil {
		t.Fatal(err)
	}
	// Git's smart HTTP protocol, as a Git server speaks it (shallow fetches
	// need it), through git's own http-backend.
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(e.www)))
	mux.Handle("/plans.git/", &cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + e.www, "GIT_HTTP_EXPORT_ALL=1"},
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// gitRepo publishes the plans as a Git repository at /plans.git: the
// repository's plans/ plus extra files (path -> content).
func (e *env) gitRepo(extra map[string]string) string {
	t := e.t
	src := filepath.Join(cluster.Root(), "plans-src")
	os.RemoveAll(src)
	if out, err := exec.Command("cp", "-a", filepath.Join(e.repo, "plans"), filepath.Join(src, "plans")).CombinedOutput(); err != nil {
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", filepath.Join(e.repo, "plans"), src).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		_ = out
	}
	for p, c := range extra {
		f := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bare := filepath.Join(e.www, "plans.git")
	os.RemoveAll(bare)
	for _, c := range [][]string{
		{"git", "-C", src, "init", "-q", "-b", "main"},
		{"git", "-C", src, "add", "."},
		{"git", "-C", src, "-c", "user.name=lab", "-c", "user.email=lab@example.org", "commit", "-q", "-m", "plans"},
		{"git", "clone", "-q", "--bare", src, bare},
		{"git", "-C", bare, "update-server-info"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return "http://" + wwwAddr + "/plans.git"
}

// image writes a 4 MiB image for the virtual board, as make demo does, and
// returns its URL, id and SHA-256.
func (e *env) image(name string) (url, id, sum string) {
	t := e.t
	id = "cluster-" + name
	b := make([]byte, 4<<20)
	rand.Read(b)
	b = append(b, []byte("\nJSPLAN_IMAGE_ID="+id+"\n")...)
	if err := os.WriteFile(filepath.Join(e.www, "images", name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return "http://" + wwwAddr + "/images/" + name, id, fmt.Sprintf("%x", sha256.Sum256(b))
}

// deployDriver does what README's "Running in a cluster" tells an
// operator: label the node, write its inventory, apply the shipped
// manifests.
func (e *env) deployDriver(inventory string) {
	if err := os.WriteFile("/etc/jsplan/boards.yaml", []byte(inventory), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.kubectl("label", "node", cluster.NodeName, "jsplan.dev/boards=true")
	for _, f := range []string{"rbac.yaml", "deviceclass.yaml", "daemonset.yaml"} {
		e.kubectl("apply", "-f", filepath.Join(e.repo, "tekton", "dra", "deploy", f))
	}
	if _, err := e.n.Kubectl(e.ctx, "-n", "jsplan-dra", "rollout", "status", "daemonset/jsplan-dra", "--timeout=180s"); err != nil {
		e.t.Fatalf("%v\n%s", err, e.n.Describe(e.ctx, "jsplan-dra", "pods"))
	}
	e.waitFor("the node's ResourceSlice", 2*time.Minute, func() (bool, string) {
		out := e.kubectl("get", "resourceslices", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {.spec.devices[*].name}{\"\\n\"}{end}")
		return strings.Contains(out, cluster.NodeName), out
	})
}

func (e *env) waitFor(what string, timeout time.Duration, cond func() (bool, string)) string {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return state
		}
		if err := e.n.Exited(); err != nil {
			e.t.Fatal(err)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waiting for %s: still %s after %s", what, state, timeout)
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatal(e.ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// storage makes the StorageClass and PersistentVolumes the PipelineRuns'
// volumeClaimTemplates bind to: hostPath volumes on the node, as a lab's
// shared storage would be (ReadWriteMany).
func (e *env) storage(count int) {
	var b strings.Builder
	b.WriteString(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: lab
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
`)
	for i := 0; i < count; i++ {
		dir := filepath.Join(e.pvs, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o777); err != nil {
			e.t.Fatal(err)
		}
		os.Chmod(dir, 0o777) // the run's user (uid 1000) writes there
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: PersistentVolume
metadata: {name: lab-%d}
spec:
  storageClassName: lab
  capacity: {storage: 16Gi}
  accessModes: [ReadWriteMany, ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: %s, type: Directory}
`, i, dir)
	}
	e.apply(b.String())
}

// pipelineRun is a run of the shipped jsplan-hil Pipeline with the board
// asked for as an extended resource (samples/pipelinerun-dra.yaml).
func (e *env) pipelineRun(gitURL, plan, imageURL, sum string, planParams ...string) string {
	return e.pipelineRunFor("jsplan.dev/virtual", "", gitURL, plan, imageURL, sum, planParams...)
}

// pipelineRunFor asks for a board of another kind (an extended resource),
// with extra lines for the run's spec (e.g. its pod template).
func (e *env) pipelineRunFor(resource, extraSpec, gitURL, plan, imageURL, sum string, planParams ...string) string {
	return e.pipelineRunWith(resource, extraSpec, "", gitURL, plan, imageURL, sum, planParams...)
}

// pipelineRunWith is pipelineRunFor with a Secret bound to the Pipeline's
// credentials workspace (its params.yaml is the plan's --params-file),
// unless credentials is "".
func (e *env) pipelineRunWith(resource, extraSpec, credentials, gitURL, plan, imageURL, sum string, planParams ...string) string {
	var pp strings.Builder
	for _, p := range planParams {
		fmt.Fprintf(&pp, "\n        - %q", p)
	}
	if len(planParams) == 0 {
		pp.WriteString(" []")
	}
	creds := ""
	if credentials != "" {
		creds = fmt.Sprintf("    - name: credentials\n      secret: {secretName: %s}\n", credentials)
	}
	return e.create(fmt.Sprintf(`apiVersion: tekton.dev/v1
kind: PipelineRun
metadata:
  generateName: jsplan-hil-
  namespace: %s
spec:
  pipelineRef: {name: jsplan-hil}
  params:
    - {name: repo-url, value: %q}
    - {name: plan, value: %q}
    - {name: image-url, value: %q}
    - {name: image-sha256, value: %q}
    - name: plan-params
      value:%s
  taskRunSpecs:
    - pipelineTaskName: jsplan
      stepSpecs:
        - name: apply
          computeResources:
            limits:
              %s: "1"
%s  workspaces:
    - name: shared
      volumeClaimTemplate:
        spec:
          accessModes: [ReadWriteMany]
          resources: {requests: {storage: 1Gi}}
%s`, ns, gitURL, plan, imageURL, sum, pp.String(), resource, extraSpec, creds))
}

// condition returns a run's Succeeded condition: status and reason.
func (e *env) condition(kind, name string) (string, string) {
	out, err := e.n.Kubectl(e.ctx, "-n", ns, "get", kind, name, "-o", `jsonpath={.status.conditions[?(@.type=="Succeeded")].status} {.status.conditions[?(@.type=="Succeeded")].reason}`)
	if err != nil {
		return "", err.Error()
	}
	f := strings.Fields(out)
	for len(f) < 2 {
		f = append(f, "")
	}
	return f[0], f[1]
}

func (e *env) waitDone(pr string, timeout time.Duration) (string, string) {
	var status, reason string
	e.waitFor(pr+" to finish", timeout, func() (bool, string) {
		status, reason = e.condition("pipelinerun", strings.TrimPrefix(pr, "pipelinerun.tekton.dev/"))
		return status == "True" || status == "False", status + " " + reason
	})
	return status, reason
}

// taskRun returns the name of a PipelineRun's TaskRun for pipelineTask.
func (e *env) taskRun(pr, task string) string {
	pr = strings.TrimPrefix(pr, "pipelinerun.tekton.dev/")
	return strings.TrimSpace(e.kubectl("-n", ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun="+pr+",tekton.dev/pipelineTask="+task, "-o", "jsonpath={.items[0].metadata.name}"))
}

type podInfo struct {
	Spec struct {
		NodeName        string `json:"nodeName"`
		SecurityContext struct {
			RunAsUser *int64 `json:"runAsUser"`
		} `json:"securityContext"`
		Containers []struct {
			Name            string `json:"name"`
			SecurityContext struct {
				Privileged *bool  `json:"privileged"`
				RunAsUser  *int64 `json:"runAsUser"`
			} `json:"securityContext"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase                       string `json:"phase"`
		ExtendedResourceClaimStatus *struct {
			ResourceClaimName string `json:"resourceClaimName"`
		} `json:"extendedResourceClaimStatus"`
	} `json:"status"`
}

func (e *env) pod(taskRun string) (string, podInfo) {
	name := strings.TrimSpace(e.kubectl("-n", ns, "get", "taskrun", taskRun, "-o", "jsonpath={.status.podName}"))
	var p podInfo
	if err := json.Unmarshal([]byte(e.kubectl("-n", ns, "get", "pod", name, "-o", "json")), &p); err != nil {
		e.t.Fatal(err)
	}
	return name, p
}

// artifacts finds the directory of a PipelineRun's artifacts on the
// PersistentVolume its workspace was bound to.
func (e *env) artifacts(pr string) string {
	dir := e.artifactsMaybe(pr)
	if dir == "/nonexistent" {
		e.t.Fatalf("no PersistentVolume found for %s's workspace", pr)
	}
	return dir
}

// The node's boards: the virtual board the examples run on; two boards
// whose storage is a real block device (a loop device, behind a
// /dev/disk/by-id link as udev makes for an SD mux's reader); a board whose
// console is a serial port (a pty, behind a /dev/serial/by-id link), which
// the driver watches as fixed hardware.
const inventory = `apiVersion: jsplan.dev/v1
kind: Boards
resources:
  - {name: simcan0, kind: canbus, capacity: 2}
boards:
  - name: sim-1
    labels: {kind: virtual, arch: x86_64}
    vars: {image-id-file: etc/image-id}
    drivers:
      sim: {password: demo-password}
  - name: disk-1
    labels: {kind: sim-disk}
    storage: blockdev
    drivers:
      sim: {password: demo-password}
      blockdev: {path: /dev/disk/by-id/jsplan-cluster-disk0}
  - name: disk-2
    labels: {kind: sim-disk-spare}
    storage: blockdev
    drivers:
      sim: {password: demo-password}
      blockdev: {path: /dev/disk/by-id/jsplan-cluster-disk1}
  - name: uart-1
    labels: {kind: uart}
    console: serial
    drivers:
      sim: {password: demo-password}
      serial: {port: jsplan-cluster-uart0}
  # Two virtual boards wired to one simulated CAN bus, as in
  # plans/boards/pair.yaml: the bus is a directory both boards' shells see
  # (inside the pod that holds both).
  - name: sim-ecu
    labels: {kind: pair, role: ecu, bus: simcan0}
    resources: [simcan0]
    vars: {can: /tmp/simcan0}
    drivers:
      sim: {hostname: sim-ecu, password: demo-password, share: [/tmp/simcan0]}
  - name: sim-peer
    labels: {kind: pair, role: peer, bus: simcan0}
    resources: [simcan0]
    vars: {can: /tmp/simcan0}
    drivers:
      sim: {hostname: sim-peer, password: demo-password, share: [/tmp/simcan0]}
`

// pairRun is a pod that runs plans/examples/two-boards.yaml (in the
// ConfigMap two-boards) on two boards wired together: one ResourceClaim
// with a request per role, matching on the bus, and a share of the bus.
const pairRun = `apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: sim-pair, namespace: %[1]s}
spec:
  spec:
    devices:
      requests:
        - name: ecu
          exactly:
            deviceClassName: jsplan.dev
            selectors: [{cel: {expression: 'device.attributes["jsplan.dev"].?role.orValue("") == "ecu"'}}]
        - name: peer
          exactly:
            deviceClassName: jsplan.dev
            selectors: [{cel: {expression: 'device.attributes["jsplan.dev"].?role.orValue("") == "peer"'}}]
        - name: bus
          exactly:
            deviceClassName: resource.jsplan.dev
            selectors: [{cel: {expression: 'device.attributes["jsplan.dev"].resource == "canbus"'}}]
      constraints:
        - requests: [ecu, peer, bus]
          matchAttribute: jsplan.dev/canbus
---
apiVersion: v1
kind: Pod
metadata: {name: pair, namespace: %[1]s}
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  resourceClaims:
    - {name: boards, resourceClaimTemplateName: sim-pair}
  volumes:
    - {name: plans, configMap: {name: two-boards}}
  containers:
    - name: apply
      image: ghcr.io/jsplan/jsplan:v0.1.0
      command: [sh, -c, 'env | grep ^JSPLAN_ | sort; jsplan apply /plans/two-boards.yaml --artifacts /tmp/a; rc=$?; echo "exit=$rc"; cat /tmp/a/report.json; exit $rc']
      volumeMounts: [{name: plans, mountPath: /plans}]
      resources:
        claims: [{name: boards}]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
`

// The operator's DeviceClasses for the test's own board kinds, as
// deviceclass.yaml has them for orin-nx and virtual.
const deviceClasses = `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: sim-disk.jsplan.dev}
spec:
  extendedResourceName: jsplan.dev/sim-disk
  selectors:
    - cel: {expression: 'device.driver == "jsplan.dev"'}
    - cel: {expression: 'device.attributes["jsplan.dev"].?kind.orValue("") == "sim-disk"'}
---
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: uart.jsplan.dev}
spec:
  extendedResourceName: jsplan.dev/uart
  selectors:
    - cel: {expression: 'device.driver == "jsplan.dev"'}
    - cel: {expression: 'device.attributes["jsplan.dev"].?kind.orValue("") == "uart"'}
`

// diskPlan flashes the image onto the board's block device (through the
// blockdev driver, as an SD mux's reader) and boots; its first step shows
// what the pod sees of the node's devices.
const diskPlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: disk
params:
  image: {type: path, required: true}
  sha256: {type: string, default: ""}
board:
  labels: {kind: sim-disk}
steps:
  - name: devices
    local: {command: 'id; echo JSPLAN_BOARD=$JSPLAN_BOARD; ls -lL /dev/disk/by-id/; ls /dev /dev/serial/by-id 2>&1; true'}
  - flash: {image: "${{ params.image }}", sha256: "${{ params.sha256 }}", verify: true}
  - power: on
  - wait-for-login: {username: root, password: demo-password}
finally:
  - power: off
`

// hardware makes the boards' devices: loop devices over files in the
// node's root with /dev/disk/by-id links, and a pty with a
// /dev/serial/by-id link. Loop devices are the host's: cleanup (and the
// next run's sweep) detach them.
type hardware struct {
	disks    []string // /dev/loopN
	uart     *os.File // the pty's master: the far end of the UART
	uartLink string
	uartPTS  string
}

func makeHardware(t *testing.T) *hardware {
	h := &hardware{}
	for i := 0; i < 2; i++ {
		dev := loopDisk(t, fmt.Sprintf("disk%d.img", i))
		h.disks = append(h.disks, dev)
		link := fmt.Sprintf("/dev/disk/by-id/jsplan-cluster-disk%d", i)
		os.MkdirAll(filepath.Dir(link), 0o755)
		if err := os.Symlink(dev, link); err != nil {
			t.Fatal(err)
		}
	}
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	h.uart, h.uartPTS = m, fmt.Sprintf("/dev/pts/%d", n)
	go func() { // the far end reads whatever is sent
		b := make([]byte, 4096)
		for {
			if _, err := m.Read(b); err != nil {
				return
			}
		}
	}()
	h.uartLink = "/dev/serial/by-id/jsplan-cluster-uart0"
	os.MkdirAll(filepath.Dir(h.uartLink), 0o755)
	if err := os.Symlink(h.uartPTS, h.uartLink); err != nil {
		t.Fatal(err)
	}
	return h
}

// loopDisk makes a 32 MiB file in the node's root a loop device and
// returns the device; cleanup (and the next run's sweep) detach it.
func loopDisk(t *testing.T, file string) string {
	t.Helper()
	f := filepath.Join(cluster.Root(), "disks", file)
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, 32<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", f).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// holdPlan keeps the board for a while, powered on; finally powers it off.
const holdPlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: hold
params:
  image: {type: string, default: "", description: "Given by the pipeline; not used."}
  hold: {type: duration, default: 30s}
board:
  labels: {kind: virtual}
steps:
  - power: on
  - wait-for-login: {username: root, password: demo-password}
  - log: "holding the board for ${{ params.hold }}"
  - sleep: "${{ params.hold }}"
finally:
  - power: off
`

// TestPipelineOnRealNode runs the seed's pipeline on a real node: Tekton's
// controller turns a PipelineRun into pods, the scheduler places the jsplan
// pod through the board's ResourceClaim, the kubelet asks the DRA driver
// (a pod of the shipped DaemonSet) to prepare the board, containerd
// injects it through CDI, and the plan runs on the board as uid 1000.
func TestPipelineOnRealNode(t *testing.T) {
	e := setup(t)
	hw := makeHardware(t)
	e.deployDriver(inventory)
	e.apply(deviceClasses)
	if err := cluster.InstallTekton(e.ctx, e.n, e.n.Bin.TektonConfig); err != nil {
		t.Fatal(err)
	}
	e.kubectl("create", "namespace", ns)
	// The run's namespace enforces Pod Security "restricted": the jsplan
	// pod is unprivileged.
	e.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
	e.kubectl("-n", ns, "apply", "-f", filepath.Join(e.repo, "tekton", "task", "jsplan", "0.1", "jsplan.yaml"))
	e.kubectl("-n", ns, "apply", "-f", filepath.Join(e.repo, "tekton", "pipeline", "jsplan-hil", "jsplan-hil.yaml"))
	e.storage(12)
	git := e.gitRepo(map[string]string{"plans/cluster/hold.yaml": holdPlan, "plans/cluster/disk.yaml": diskPlan})

	url, id, sum := e.image("demo.img")

	t.Run("pipeline", func(t *testing.T) {
		e.t = t
		pr := e.pipelineRun(git, "plans/examples/virtual-smoke.yaml", url, sum, "image-id="+id, "sha256="+sum)
		e.logf("started %s", pr)
		e.checkPassed(pr, id)
	})
	if t.Failed() {
		return
	}

	t.Run("the board's device nodes", func(t *testing.T) {
		e.t = t
		// The pod's groups: disk for the block device (as udev gives it),
		// on top of the image user's dialout and plugdev.
		pr := e.pipelineRunFor("jsplan.dev/sim-disk", `  taskRunTemplate:
    podTemplate:
      securityContext:
        supplementalGroups: [6]
`, git, "plans/cluster/disk.yaml", url, sum, "sha256="+sum)
		if st, r := e.waitDone(pr, 15*time.Minute); st != "True" {
			t.Fatalf("%s: %s %s\n%s", pr, st, r, e.why(pr))
		}
		log, _ := os.ReadFile(filepath.Join(e.artifacts(pr), "jsplan.log"))
		e.logf("what the pod saw:\n%s", log)
		for _, want := range []string{"uid=1000", "JSPLAN_BOARD=disk-1", "jsplan-cluster-disk0"} {
			if !strings.Contains(string(log), want) {
				t.Errorf("jsplan.log lacks %q", want)
			}
		}
		for _, other := range []string{"jsplan-cluster-disk1", "jsplan-cluster-uart0", filepath.Base(hw.disks[1])} {
			if strings.Contains(string(log), other) {
				t.Errorf("the pod saw %s, a device of another board", other)
			}
		}
		// The image is on the real block device.
		want, _ := os.ReadFile(filepath.Join(e.www, "images", "demo.img"))
		f, err := os.Open(hw.disks[0])
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		_, err = io.ReadFull(f, got)
		f.Close()
		if err != nil || fmt.Sprintf("%x", sha256.Sum256(got)) != sum {
			t.Errorf("%s does not hold the image (%v)", hw.disks[0], err)
		}
	})

	t.Run("a board whose console is gone is tainted", func(t *testing.T) {
		e.t = t
		if err := os.Remove(hw.uartLink); err != nil {
			t.Fatal(err)
		}
		e.logf("unplugged %s", hw.uartLink)
		e.waitFor("uart-1 to be tainted", 2*time.Minute, func() (bool, string) {
			out := e.kubectl("get", "resourceslices", "-o", `jsonpath={range .items[*].spec.devices[*]}{.name} {.taints[*].key}={.taints[*].value}{"\n"}{end}`)
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "uart-1 ") && strings.Contains(l, "jsplan.dev/unhealthy") {
					return true, l
				}
			}
			return false, out
		})
		pod := e.create(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {generateName: uart-user-, namespace: %s}
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: main
      image: ghcr.io/jsplan/jsplan:v0.1.0
      command: [sh, -c, 'echo "board=$JSPLAN_BOARD"']
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
      resources:
        limits: {jsplan.dev/uart: "1"}
`, ns))
		podName := name(pod)
		time.Sleep(15 * time.Second)
		if phase := strings.TrimSpace(e.kubectl("-n", ns, "get", "pod", podName, "-o", "jsonpath={.status.phase} {.spec.nodeName}")); phase != "Pending" {
			t.Fatalf("pod %s is %q while its only board is tainted", podName, phase)
		}
		if err := os.Symlink(hw.uartPTS, hw.uartLink); err != nil {
			t.Fatal(err)
		}
		e.logf("plugged %s back in", hw.uartLink)
		e.waitFor(podName+" to run on the healthy board", 3*time.Minute, func() (bool, string) {
			ph := strings.TrimSpace(e.kubectl("-n", ns, "get", "pod", podName, "-o", "jsonpath={.status.phase}"))
			return ph == "Succeeded" || ph == "Failed", ph
		})
		logs, _ := e.n.Kubectl(e.ctx, "-n", ns, "logs", podName)
		// (The pty behind the test's UART cannot be a container's device
		// node: the driver leaves it out, and the pod starts without it.)
		if !strings.Contains(logs, "board=uart-1") {
			t.Errorf("pod %s on the healthy board printed:\n%s\n%s", podName, logs, e.n.Describe(e.ctx, ns, "pod "+podName))
		}
	})

	t.Run("two boards wired together", func(t *testing.T) {
		e.t = t
		e.kubectl("-n", ns, "create", "configmap", "two-boards", "--from-file="+filepath.Join(e.repo, "plans", "examples", "two-boards.yaml"))
		e.apply(fmt.Sprintf(pairRun, ns))
		e.waitFor("pod pair to finish", 5*time.Minute, func() (bool, string) {
			ph := strings.TrimSpace(e.kubectl("-n", ns, "get", "pod", "pair", "-o", "jsonpath={.status.phase}"))
			return ph == "Succeeded" || ph == "Failed", ph
		})
		logs, _ := e.n.Kubectl(e.ctx, "-n", ns, "logs", "pair")
		phase := strings.TrimSpace(e.kubectl("-n", ns, "get", "pod", "pair", "-o", "jsonpath={.status.phase}"))
		for _, want := range []string{"JSPLAN_BOARD_ECU=sim-ecu", "JSPLAN_BOARD_PEER=sim-peer", "JSPLAN_RESOURCE_BUS=simcan0", "exit=0", `"sim-peer"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("pod pair (%s) lacks %q:\n%s", phase, want, tail(logs, 4000))
			}
		}
		if strings.Contains(logs, "JSPLAN_BOARD=") {
			t.Errorf("a two-board pod was given JSPLAN_BOARD:\n%s", logs)
		}
		// exit=0: the peer's step expected the ECU's frame on the bus and
		// got it (two-boards.yaml). The claim goes with the pod.
		e.kubectl("-n", ns, "delete", "pod", "pair", "--wait=true")
		e.waitFor("the pair's claim to be released", 2*time.Minute, func() (bool, string) {
			out := e.kubectl("-n", ns, "get", "resourceclaims", "-o", "name")
			return !strings.Contains(out, "pair-boards"), out
		})
	})

	t.Run("second run waits for the board", func(t *testing.T) {
		e.t = t
		a := e.pipelineRun(git, "plans/cluster/hold.yaml", url, sum, "hold=40s")
		podA := e.waitPodPhase(a, "Running", 10*time.Minute)
		b := e.pipelineRun(git, "plans/examples/virtual-smoke.yaml", url, sum, "image-id="+id, "sha256="+sum)
		e.logf("started %s while %s holds the board", b, a)
		// b's jsplan pod exists, cannot be scheduled while a holds the board,
		// and says why.
		why := e.waitFor(b+"'s jsplan pod to wait for the board", 5*time.Minute, func() (bool, string) {
			tr := e.taskRunMaybe(b, "jsplan")
			if tr == "" {
				return false, "no TaskRun yet"
			}
			name, p := e.podMaybe(tr)
			if name == "" {
				return false, "no pod yet"
			}
			if p.Status.Phase != "Pending" || p.Spec.NodeName != "" {
				return false, fmt.Sprintf("pod %s %s on %q", name, p.Status.Phase, p.Spec.NodeName)
			}
			ev := e.kubectl("-n", ns, "get", "events", "--field-selector", "involvedObject.name="+name, "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
			return strings.Contains(ev, "FailedScheduling"), ev
		})
		e.logf("waiting, as it should: %s", strings.TrimSpace(why))
		if st, _ := e.condition("pipelinerun", name(a)); st != "Unknown" {
			t.Errorf("%s is %q while %s waits; the waiting run should have waited for a running one", a, st, b)
		}
		if st, r := e.waitDone(a, 10*time.Minute); st != "True" {
			t.Fatalf("%s: %s %s\n%s", a, st, r, e.why(a))
		}
		aEnd := e.finishedAt(podA)
		e.checkPassed(b, id)
		bPod, _ := e.pod(e.taskRun(b, "jsplan"))
		if bStart := e.startedAt(bPod); bStart.Before(aEnd) {
			t.Errorf("%s's jsplan pod started at %s, before %s's ended at %s", b, bStart, a, aEnd)
		}
	})

	t.Run("failing plan", func(t *testing.T) {
		e.t = t
		pr := e.pipelineRun(git, "plans/examples/virtual-smoke.yaml", url, sum, "image-id=not-"+id, "sha256="+sum)
		if st, r := e.waitDone(pr, 15*time.Minute); st != "False" {
			t.Fatalf("%s: %s %s, want it to fail", pr, st, r)
		}
		tr := e.taskRun(pr, "jsplan")
		if st, r := e.condition("taskrun", tr); st != "False" {
			t.Errorf("TaskRun %s: %s %s, want False", tr, st, r)
		}
		results := e.kubectl("-n", ns, "get", "taskrun", tr, "-o", "jsonpath={range .status.results[*]}{.name}={.value}{\"\\n\"}{end}")
		if !strings.Contains(results, "verdict=failed") {
			t.Errorf("TaskRun %s results, want verdict=failed (a test failure, exit 1):\n%s", tr, results)
		}
	})

	t.Run("cancelled run powers off and frees the board", func(t *testing.T) {
		e.t = t
		pr := e.pipelineRun(git, "plans/cluster/hold.yaml", url, sum, "hold=10m")
		pod := e.waitPodPhase(pr, "Running", 10*time.Minute)
		art := e.artifacts(pr)
		e.waitFor("the plan to hold the board", 3*time.Minute, func() (bool, string) {
			b, _ := os.ReadFile(filepath.Join(art, "jsplan.log"))
			return strings.Contains(string(b), "holding"), tail(string(b), 300)
		})
		e.kubectl("-n", ns, "patch", "pipelinerun", name(pr), "--type=merge", "-p", `{"spec":{"status":"Cancelled"}}`)
		e.logf("cancelled %s", pr)
		if st, r := e.waitDone(pr, 5*time.Minute); st != "False" || !strings.Contains(r, "Cancelled") {
			t.Errorf("%s: %s %s, want False Cancelled", pr, st, r)
		}
		e.waitFor("the jsplan pod to be gone", 3*time.Minute, func() (bool, string) {
			out, err := e.n.Kubectl(e.ctx, "-n", ns, "get", "pod", pod, "-o", "name")
			return err != nil && strings.Contains(err.Error(), "NotFound"), out
		})
		var rep struct {
			Status  string `json:"status"`
			Finally []struct {
				Name   string `json:"name"`
				Status string `json:"status"`
			} `json:"finally"`
		}
		b, err := os.ReadFile(filepath.Join(art, "report.json"))
		if err != nil {
			t.Fatalf("the cancelled run wrote no report: %v", err)
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Finally) == 0 || rep.Finally[0].Status != "passed" {
			t.Errorf("report.json of the cancelled run: status %q, finally %+v: the plan's finally (power off) did not run", rep.Status, rep.Finally)
		}
		console, _ := os.ReadFile(filepath.Join(art, "console.log"))
		if !strings.Contains(string(console), "power off") {
			t.Errorf("console.log does not show the board powered off:\n%s", tail(string(console), 1500))
		}
		claims := e.kubectl("-n", ns, "get", "resourceclaims", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.reservedFor[*].name}{\"\\n\"}{end}")
		if strings.Contains(claims, pod) {
			t.Errorf("a ResourceClaim is still reserved for the cancelled pod %s:\n%s", pod, claims)
		}
		// The board is free: the next run gets it.
		next := e.pipelineRun(git, "plans/examples/virtual-smoke.yaml", url, sum, "image-id="+id, "sha256="+sum)
		e.checkPassed(next, id)
	})

	t.Run("driver restarted mid-run", func(t *testing.T) {
		e.t = t
		pr := e.pipelineRun(git, "plans/cluster/hold.yaml", url, sum, "hold=45s")
		pod := e.waitPodPhase(pr, "Running", 10*time.Minute)
		e.kubectl("-n", "jsplan-dra", "delete", "pod", "-l", "app.kubernetes.io/name=jsplan-dra", "--wait=true")
		if _, err := e.n.Kubectl(e.ctx, "-n", "jsplan-dra", "rollout", "status", "daemonset/jsplan-dra", "--timeout=180s"); err != nil {
			t.Fatal(err)
		}
		e.logf("driver pod replaced while %s runs", pod)
		if st, r := e.waitDone(pr, 10*time.Minute); st != "True" {
			t.Fatalf("%s: %s %s: the running pod lost its board when the driver restarted\n%s", pr, st, r, e.why(pr))
		}

		// As after a reboot: the node's CDI specs are gone and the driver
		// starts again; new claims work.
		specs, _ := filepath.Glob("/var/run/cdi/*")
		for _, f := range specs {
			os.RemoveAll(f)
		}
		e.kubectl("-n", "jsplan-dra", "delete", "pod", "-l", "app.kubernetes.io/name=jsplan-dra", "--wait=true")
		if _, err := e.n.Kubectl(e.ctx, "-n", "jsplan-dra", "rollout", "status", "daemonset/jsplan-dra", "--timeout=180s"); err != nil {
			t.Fatal(err)
		}
		next := e.pipelineRun(git, "plans/examples/virtual-smoke.yaml", url, sum, "image-id="+id, "sha256="+sum)
		e.checkPassed(next, id)
	})

	t.Run("boards through the driver's agent", func(t *testing.T) {
		e.t = t
		// The driver again, now giving pods only an agent socket and a
		// lease token (--access=agent): the same pipeline runs on sim-1,
		// the board driven by the claim's agent in the driver's pod.
		e.kubectl("-n", "jsplan-dra", "patch", "daemonset", "jsplan-dra", "--type=json",
			"-p", `[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--access=agent"}]`)
		if _, err := e.n.Kubectl(e.ctx, "-n", "jsplan-dra", "rollout", "status", "daemonset/jsplan-dra", "--timeout=180s"); err != nil {
			t.Fatalf("%v\n%s", err, e.n.Describe(e.ctx, "jsplan-dra", "pods"))
		}
		pr := e.pipelineRun(git, "plans/examples/virtual-smoke.yaml", url, sum, "image-id="+id, "sha256="+sum)
		e.checkPassed(pr, id)
		logs, _ := e.n.Kubectl(e.ctx, "-n", "jsplan-dra", "logs", "daemonset/jsplan-dra")
		if !strings.Contains(logs, "lease of sim-1 granted to ResourceClaim") {
			t.Errorf("the driver's log does not show the claim's lease of sim-1:\n%s", tail(logs, 3000))
		}

		// The DUTLink sample on a board behind the DUTLink simulator
		// (dutlink_test.go), through the claim's agent.
		t.Run("DUTLink sample", func(t *testing.T) {
			e.t = t
			e.dutlinkSample(git, url, id, sum)
		})
	})
}

// checkPassed waits for a PipelineRun and checks that its plan ran on the
// board (sim-1) through the claim, unprivileged, and left its reports.
func (e *env) checkPassed(pr, id string) {
	e.t.Helper()
	e.checkPassedOn(pr, id, "sim-1")
}

// checkPassedOn is checkPassed on the given board.
func (e *env) checkPassedOn(pr, id, board string) {
	t := e.t
	t.Helper()
	status, reason := e.waitDone(pr, 15*time.Minute)
	if status != "True" {
		t.Fatalf("%s: %s %s\n%s", pr, status, reason, e.why(pr))
	}
	tr := e.taskRun(pr, "jsplan")
	podName, p := e.pod(tr)
	if p.Spec.NodeName != cluster.NodeName {
		t.Errorf("jsplan pod %s on node %q", podName, p.Spec.NodeName)
	}
	if p.Status.ExtendedResourceClaimStatus == nil || p.Status.ExtendedResourceClaimStatus.ResourceClaimName == "" {
		t.Errorf("jsplan pod %s was not given a ResourceClaim for its board: %+v", podName, p.Status)
	}
	results := e.kubectl("-n", ns, "get", "taskrun", tr, "-o", "jsonpath={range .status.results[*]}{.name}={.value}{\"\\n\"}{end}")
	if !strings.Contains(results, "verdict=passed") {
		t.Errorf("TaskRun %s results:\n%s", tr, results)
	}
	art := e.artifacts(pr)
	for _, f := range []string{"report.json", "junit.xml", "report.html", "console.log"} {
		st, err := os.Stat(filepath.Join(art, f))
		if err != nil {
			t.Errorf("artifacts: %v", err)
			continue
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 1000 {
			t.Errorf("%s written by uid %d, not 1000", f, uid)
		}
	}
	console, _ := os.ReadFile(filepath.Join(art, "console.log"))
	if !strings.Contains(string(console), "login:") || !strings.Contains(string(console), id) {
		t.Errorf("console.log does not show the board booting image %s:\n%s", id, tail(string(console), 2000))
	}
	var rep struct {
		Board  string `json:"board"`
		Status string `json:"status"`
	}
	b, _ := os.ReadFile(filepath.Join(art, "report.json"))
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Errorf("report.json: %v", err)
	}
	if rep.Board != board {
		t.Errorf("report.json board %q, want %s (JSPLAN_BOARD)", rep.Board, board)
	}
	e.logf("%s passed on %s: pod %s, claim %s", name(pr), rep.Board, podName, p.Status.ExtendedResourceClaimStatus.ResourceClaimName)
}

// why gathers what a failed PipelineRun left: its conditions, its
// TaskRuns, its pods' logs and the jsplan log in the artifacts.
func (e *env) why(pr string) string {
	var b strings.Builder
	b.WriteString(e.n.Describe(e.ctx, ns, "pipelinerun "+name(pr)))
	out, _ := e.n.Kubectl(e.ctx, "-n", ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun="+name(pr), "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[0].reason}: {.status.conditions[0].message}{"\n"}{end}`)
	b.WriteString("\nTaskRuns:\n" + out)
	out, _ = e.n.Kubectl(e.ctx, "-n", ns, "logs", "-l", "tekton.dev/pipelineRun="+name(pr), "--all-containers", "--prefix", "--tail=40")
	b.WriteString("\nlogs:\n" + out)
	if log, err := os.ReadFile(filepath.Join(e.artifactsMaybe(pr), "jsplan.log")); err == nil {
		b.WriteString("\njsplan.log:\n" + tail(string(log), 3000))
	}
	return b.String()
}

func (e *env) artifactsMaybe(pr string) string {
	// The volumeClaimTemplate's PVC belongs to the PipelineRun.
	out, err := e.n.Kubectl(e.ctx, "-n", ns, "get", "pvc", "-o", `jsonpath={.items[?(@.metadata.ownerReferences[0].name=="`+name(pr)+`")].spec.volumeName}`)
	if err != nil || strings.TrimSpace(out) == "" {
		return "/nonexistent"
	}
	dir, err := e.n.Kubectl(e.ctx, "get", "pv", strings.TrimSpace(out), "-o", "jsonpath={.spec.hostPath.path}")
	if err != nil {
		return "/nonexistent"
	}
	return filepath.Join(strings.TrimSpace(dir), "artifacts")
}

func name(obj string) string { return obj[strings.LastIndex(obj, "/")+1:] }

func (e *env) taskRunMaybe(pr, task string) string {
	out, err := e.n.Kubectl(e.ctx, "-n", ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun="+name(pr)+",tekton.dev/pipelineTask="+task, "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

func (e *env) podMaybe(taskRun string) (string, podInfo) {
	var p podInfo
	name, err := e.n.Kubectl(e.ctx, "-n", ns, "get", "taskrun", taskRun, "-o", "jsonpath={.status.podName}")
	name = strings.TrimSpace(name)
	if err != nil || name == "" {
		return "", p
	}
	out, err := e.n.Kubectl(e.ctx, "-n", ns, "get", "pod", name, "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &p) != nil {
		return "", p
	}
	return name, p
}

// waitPodPhase waits for a PipelineRun's jsplan pod to reach phase and
// returns its name.
func (e *env) waitPodPhase(pr, phase string, timeout time.Duration) string {
	var pod string
	e.waitFor(pr+"'s jsplan pod to be "+phase, timeout, func() (bool, string) {
		tr := e.taskRunMaybe(pr, "jsplan")
		if tr == "" {
			return false, "no TaskRun yet"
		}
		name, p := e.podMaybe(tr)
		pod = name
		return name != "" && p.Status.Phase == phase, p.Status.Phase
	})
	return pod
}

func (e *env) podTime(pod, jsonpath string) time.Time {
	out := strings.TrimSpace(e.kubectl("-n", ns, "get", "pod", pod, "-o", "jsonpath="+jsonpath))
	tm, err := time.Parse(time.RFC3339, out)
	if err != nil {
		e.t.Fatalf("pod %s %s: %q: %v", pod, jsonpath, out, err)
	}
	return tm
}

func (e *env) startedAt(pod string) time.Time {
	return e.podTime(pod, "{.status.containerStatuses[?(@.name==\"step-apply\")].state.*.startedAt}")
}

func (e *env) finishedAt(pod string) time.Time {
	var out string
	e.waitFor("pod "+pod+" to end", 10*time.Minute, func() (bool, string) {
		out = strings.TrimSpace(e.kubectl("-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[?(@.name==\"step-apply\")].state.terminated.finishedAt}"))
		return out != "", "running"
	})
	tm, err := time.Parse(time.RFC3339, out)
	if err != nil {
		e.t.Fatal(err)
	}
	return tm
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
