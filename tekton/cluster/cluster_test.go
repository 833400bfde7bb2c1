package cluster_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
				b, _ := exec.Command("tail", "-n", "40", n.LogFile(c)).Output()
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
// http://NodeIP:8080/ (git's dumb HTTP protocol: plain files).
func (e *env) serve() {
	t := e.t
	if err := os.MkdirAll(filepath.Join(e.www, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", wwwAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(e.www))}
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
	var pp strings.Builder
	for _, p := range planParams {
		fmt.Fprintf(&pp, "\n        - %q", p)
	}
	if len(planParams) == 0 {
		pp.WriteString(" []")
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
              jsplan.dev/virtual: "1"
  workspaces:
    - name: shared
      volumeClaimTemplate:
        spec:
          accessModes: [ReadWriteMany]
          resources: {requests: {storage: 1Gi}}
`, ns, gitURL, plan, imageURL, sum, pp.String()))
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
	pr = strings.TrimPrefix(pr, "pipelinerun.tekton.dev/")
	pvc := strings.TrimSpace(e.kubectl("-n", ns, "get", "pvc", "-l", "tekton.dev/pipelineRun="+pr, "-o", "jsonpath={.items[0].spec.volumeName}"))
	dir := strings.TrimSpace(e.kubectl("get", "pv", pvc, "-o", "jsonpath={.spec.hostPath.path}"))
	return filepath.Join(dir, "artifacts")
}

const inventory = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual, arch: x86_64}
    vars: {image-id-file: etc/image-id}
    drivers:
      sim: {password: demo-password}
`

// TestPipelineOnRealNode runs the seed's pipeline on a real node: Tekton's
// controller turns a PipelineRun into pods, the scheduler places the jsplan
// pod through the board's ResourceClaim, the kubelet asks the DRA driver
// (a pod of the shipped DaemonSet) to prepare the board, containerd
// injects it through CDI, and the plan runs on the board as uid 1000.
func TestPipelineOnRealNode(t *testing.T) {
	e := setup(t)
	e.deployDriver(inventory)
	if err := cluster.InstallTekton(e.ctx, e.n, e.n.Bin.TektonConfig); err != nil {
		t.Fatal(err)
	}
	e.kubectl("create", "namespace", ns)
	// The run's namespace enforces Pod Security "restricted": the jsplan
	// pod is unprivileged.
	e.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
	e.kubectl("-n", ns, "apply", "-f", filepath.Join(e.repo, "tekton", "task", "jsplan", "0.1", "jsplan.yaml"))
	e.kubectl("-n", ns, "apply", "-f", filepath.Join(e.repo, "tekton", "pipeline", "jsplan-hil", "jsplan-hil.yaml"))
	e.storage(6)
	git := e.gitRepo(nil)

	url, id, sum := e.image("demo.img")
	pr := e.pipelineRun(git, "plans/examples/virtual-smoke.yaml", url, sum, "image-id="+id, "sha256="+sum)
	e.logf("started %s", pr)
	status, reason := e.waitDone(pr, 15*time.Minute)
	tr := e.taskRun(pr, "jsplan")
	if status != "True" {
		t.Fatalf("%s: %s %s\n%s\n%s", pr, status, reason, e.n.Describe(e.ctx, ns, "taskruns"), e.n.Describe(e.ctx, ns, "pods"))
	}
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
		if uid := st.Sys().(*syscallStat).Uid; uid != 1000 {
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
	e.logf("report.json: board %q, status %q", rep.Board, rep.Status)
	if rep.Board != "sim-1" {
		t.Errorf("report.json board %q, want sim-1 (JSPLAN_BOARD)", rep.Board)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type syscallStat = syscall.Stat_t
