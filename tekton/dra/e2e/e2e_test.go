// Package e2e places pods on boards with a real kube-apiserver, a real
// kube-scheduler and Kubernetes' ResourceClaim controller, all in the test
// process (etcd embedded), and the jsplan DRA driver publishing each fake
// node's boards. No kubelet: pods are bound, not run.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/etcd/server/v3/embed"
	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	kubeschedulertesting "k8s.io/kubernetes/cmd/kube-scheduler/app/testing"
	"k8s.io/kubernetes/pkg/controller/resourceclaim"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/jsplan/jsplan/tekton/dra/driver"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs etcd in the test process on 127.0.0.1.
func startEtcd(t *testing.T) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	peer, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		t.Fatal("etcd did not start")
	}
	return client.String()
}

// cluster is the control plane of the test.
type cluster struct {
	t      *testing.T
	client kubernetes.Interface
}

// startCluster starts the control plane; extra flags go to the scheduler.
func startCluster(t *testing.T, ctx context.Context, schedFlags ...string) *cluster {
	t.Helper()
	storage := storagebackend.NewDefaultConfig(path.Join(uuid.New().String(), "registry"), nil)
	storage.Transport.ServerList = []string{startEtcd(t)}
	srv := kubeapiservertesting.StartTestServerOrDie(t, nil, nil, storage)
	t.Cleanup(srv.TearDownFn)
	rc := srv.ClientConfig
	client := kubernetes.NewForConfigOrDie(rc)

	// The scheduler, from a kubeconfig as in a cluster.
	kc := clientcmdapi.NewConfig()
	// The server's certificate is the test server's own, self-signed, on
	// 127.0.0.1: not verified.
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken, ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	kcFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kcFile); err != nil {
		t.Fatal(err)
	}
	sched := kubeschedulertesting.StartTestServerOrDie(t, ctx, append([]string{"--kubeconfig=" + kcFile, "--leader-elect=false"}, schedFlags...))
	t.Cleanup(sched.TearDownFn)

	// The ResourceClaim controller (of kube-controller-manager): claims
	// from templates, and their release when the pod is gone.
	inf := informers.NewSharedInformerFactory(client, 0)
	ctrl, err := resourceclaim.NewController(klog.FromContext(ctx), client, inf.Core().V1().Pods(),
		inf.Scheduling().V1beta1().PodGroups(), inf.Resource().V1().ResourceClaims(), inf.Resource().V1().ResourceClaimTemplates())
	if err != nil {
		t.Fatal(err)
	}
	inf.Start(ctx.Done())
	go ctrl.Run(ctx, 5)
	t.Cleanup(inf.Shutdown)
	return &cluster{t: t, client: client}
}

// addNode creates a Node and runs the jsplan DRA driver for it with the
// given inventory, publishing into the API server.
func (c *cluster) addNode(ctx context.Context, name, inventory string) {
	t := c.t
	t.Helper()
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "jsplan.dev/boards": "true"}}}
	n, err := c.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status = v1.NodeStatus{
		Capacity:    v1.ResourceList{v1.ResourcePods: resource.MustParse("110"), v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi")},
		Allocatable: v1.ResourceList{v1.ResourcePods: resource.MustParse("110"), v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi")},
		Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now(), Reason: "KubeletReady"}},
	}
	if n, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Admission taints a new node not-ready until its kubelet reports;
	// the node lifecycle controller would lift it once Ready.
	n.Spec.Taints = nil
	if _, err := c.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	inv := filepath.Join(dir, "boards.yaml")
	if err := os.WriteFile(inv, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"reg", "plug"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d, err := driver.Start(ctx, driver.Config{NodeName: name, Inventory: inv, StateDir: filepath.Join(dir, "state"),
		CDIDir: filepath.Join(dir, "cdi"), LockDir: filepath.Join(dir, "locks"), Host: driver.Host{Root: dir}, KubeClient: c.client},
		kubeletplugin.RegistrarDirectoryPath(filepath.Join(dir, "reg")), kubeletplugin.PluginDataDirectoryPath(filepath.Join(dir, "plug")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
}

// applyManifests creates the DeviceClasses and the ResourceClaimTemplate of
// ../deploy, as kubectl apply would.
func (c *cluster) applyManifests(ctx context.Context) {
	t := c.t
	t.Helper()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ci"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No service account controller runs: make the namespace's default one.
	if _, err := c.client.CoreV1().ServiceAccounts("ci").Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"../deploy/deviceclass.yaml", "../deploy/resourceclaimtemplate.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			var tm struct{ Kind string }
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatal(err)
			}
			switch tm.Kind {
			case "DeviceClass":
				var o resourcev1.DeviceClass
				if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
					t.Fatal(err)
				}
				_, err = c.client.ResourceV1().DeviceClasses().Create(ctx, &o, metav1.CreateOptions{})
			case "ResourceClaimTemplate":
				var o resourcev1.ResourceClaimTemplate
				if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
					t.Fatal(err)
				}
				_, err = c.client.ResourceV1().ResourceClaimTemplates(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
}

// taskPod is shaped like the pod Tekton makes for the jsplan Task: one
// step container. claim names a ResourceClaimTemplate; limit an extended
// resource on the step (the stock-Tekton route).
func taskPod(name, template, limit string) *v1.Pod {
	step := v1.Container{Name: "step-apply", Image: "ghcr.io/jsplan/jsplan:v0.1.0", Command: []string{"/tekton/bin/entrypoint"},
		SecurityContext: &v1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false)}}
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ci", Labels: map[string]string{"tekton.dev/task": "jsplan", "tekton.dev/taskRun": name}},
		Spec:       v1.PodSpec{RestartPolicy: v1.RestartPolicyNever},
	}
	if template != "" {
		p.Spec.ResourceClaims = []v1.PodResourceClaim{{Name: "board", ResourceClaimTemplateName: ptr.To(template)}}
		step.Resources.Claims = []v1.ResourceClaim{{Name: "board"}}
	}
	if limit != "" {
		step.Resources.Limits = v1.ResourceList{v1.ResourceName(limit): resource.MustParse("1")}
	}
	p.Spec.Containers = []v1.Container{step}
	return p
}

func (c *cluster) waitPod(ctx context.Context, name string, ok func(*v1.Pod) bool, what string) *v1.Pod {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var p *v1.Pod
	for time.Now().Before(deadline) {
		var err error
		p, err = c.client.CoreV1().Pods("ci").Get(ctx, name, metav1.GetOptions{})
		if err == nil && ok(p) {
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("pod %s: never %s; last: %+v", name, what, p.Status)
	return nil
}

func unschedulable(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

const (
	invA = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: orin-nx-1
    labels: {soc: orin-nx, lab: bench-a}
    drivers:
      sim: {password: x}
`
	invB = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: rpi4-1
    labels: {soc: bcm2711, lab: bench-b}
    drivers:
      sim: {password: x}
  - name: sim-1
    labels: {kind: virtual}
    drivers:
      sim: {password: x}
`
)

// TestSchedulerPlacesRunsOnBoards: a Task-shaped pod whose claim wants an
// orin-nx board is bound to the node with it; a second one stays Pending
// while the first holds the only such board, and binds once it is deleted;
// a pod asking for a board as an extended resource (the stock-Tekton route)
// lands on the node with a virtual board.
func TestSchedulerPlacesRunsOnBoards(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := startCluster(t, ctx)
	c.applyManifests(ctx)
	c.addNode(ctx, "node-a", invA)
	c.addNode(ctx, "node-b", invB)

	bound := func(p *v1.Pod) bool { return p.Spec.NodeName != "" }
	if _, err := c.client.CoreV1().Pods("ci").Create(ctx, taskPod("run-1", "orin-nx-board", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := c.waitPod(ctx, "run-1", bound, "bound"); p.Spec.NodeName != "node-a" {
		t.Fatalf("run-1 bound to %s, want node-a (the orin-nx board)", p.Spec.NodeName)
	}
	if _, err := c.client.CoreV1().Pods("ci").Create(ctx, taskPod("run-2", "orin-nx-board", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPod(ctx, "run-2", unschedulable, "unschedulable")
	time.Sleep(2 * time.Second)
	if p := c.waitPod(ctx, "run-2", func(*v1.Pod) bool { return true }, ""); p.Spec.NodeName != "" {
		t.Fatalf("run-2 bound to %s while run-1 holds the only orin-nx board", p.Spec.NodeName)
	}
	if err := c.client.CoreV1().Pods("ci").Delete(ctx, "run-1", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if p := c.waitPod(ctx, "run-2", bound, "bound after run-1 ended"); p.Spec.NodeName != "node-a" {
		t.Fatalf("run-2 bound to %s, want node-a", p.Spec.NodeName)
	}

	// The stock-Tekton route: a limit on the step, mapped to a claim.
	if _, err := c.client.CoreV1().Pods("ci").Create(ctx, taskPod("run-3", "", "jsplan.dev/virtual"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := c.waitPod(ctx, "run-3", bound, "bound"); p.Spec.NodeName != "node-b" {
		t.Fatalf("run-3 bound to %s, want node-b (the virtual board)", p.Spec.NodeName)
	}
	claims, err := c.client.ResourceV1().ResourceClaims("ci").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cl := range claims.Items {
		if cl.Status.Allocation != nil {
			for _, r := range cl.Status.Allocation.Devices.Results {
				got = append(got, r.Pool+"/"+r.Device)
			}
		}
	}
	if s := strings.Join(got, " "); !strings.Contains(s, "node-b/sim-1") || !strings.Contains(s, "node-a/orin-nx-1") {
		t.Errorf("allocated devices: %v", got)
	}
}
