package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/jsplan/jsplan/tekton/dra/driver"
)

// The scale test: N fake nodes with 8 boards each, published as the driver
// publishes them, and 4 Task-shaped pods per node (half the boards), each
// wanting one board of a kind by CEL, through a ResourceClaimTemplate or
// the extended-resource route of deploy/deviceclass.yaml. It measures how
// fast the scheduler binds them, as Kubernetes' scheduler_perf does
// (SchedulingThroughput: bound pods counted every second, the average of
// those rates), and the same pods on the same nodes whose boards carry only
// the one attribute the selectors read: the ratio is what jsplan's
// attributes cost the scheduler.
//
// By default it runs a tiny farm (5 nodes, 20 pods per case) so that
// make test-dra-e2e notices breakage; JSPLAN_DRA_SCALE=100,500 (make
// bench-dra-e2e) runs the given farm sizes and prints the table.

const boardsPerNode = 8

// boardKinds cycles over a node's boards: three SoCs and a virtual board.
// Pods ask for the kinds that deploy/deviceclass.yaml has a class for.
var boardKinds = []string{"orin-nx", "bcm2711", "imx8mp", "virtual"}

var podKinds = []string{"orin-nx", "virtual"}

// kindSelector is the CEL the claim template uses for a kind: the same
// expression as the kind's DeviceClass in deploy/deviceclass.yaml.
func kindSelector(kind string) string {
	if kind == "virtual" {
		return `device.attributes["jsplan.dev"].?kind.orValue("") == "virtual"`
	}
	return fmt.Sprintf(`device.attributes["jsplan.dev"].?soc.orValue("") == %q`, kind)
}

// nodeInventory is one node's Boards inventory: 8 sim boards, labelled as
// a lab would label them.
func nodeInventory(node string) string {
	var b strings.Builder
	b.WriteString("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n")
	for i := 0; i < boardsPerNode; i++ {
		kind := boardKinds[i%len(boardKinds)]
		label := "soc: " + kind
		if kind == "virtual" {
			label = "kind: virtual"
		}
		fmt.Fprintf(&b, "  - name: %s-%s-%d\n    labels: {%s, lab: %s, rack: r%d, board-rev: a%d}\n    drivers:\n      sim: {password: x}\n",
			node, kind, i, label, node, i/4, i%3)
	}
	return b.String()
}

// jsplanDevices are the devices the driver publishes for a node: its
// inventory through the driver's own loader and driver.Devices.
func jsplanDevices(t *testing.T, dir, node string) []resourcev1.Device {
	t.Helper()
	p := filepath.Join(dir, node+".yaml")
	if err := os.WriteFile(p, []byte(nodeInventory(node)), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := driver.LoadInventory(p)
	if err != nil {
		t.Fatal(err)
	}
	devs, warn := driver.Devices(inv, nil, true)
	if len(warn) > 0 {
		t.Fatal(warn)
	}
	if len(devs) != boardsPerNode {
		t.Fatalf("%d devices, want %d", len(devs), boardsPerNode)
	}
	return devs
}

// plainDevices are the same devices with only the attribute a selector
// reads (soc or kind): the baseline.
func plainDevices(devs []resourcev1.Device) []resourcev1.Device {
	out := make([]resourcev1.Device, len(devs))
	for i, d := range devs {
		out[i] = resourcev1.Device{Name: d.Name, Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{}}
		for _, k := range []resourcev1.QualifiedName{"soc", "kind"} {
			if a, ok := d.Attributes[k]; ok {
				out[i].Attributes[k] = a
			}
		}
	}
	return out
}

type scaleCase struct {
	nodes, pods int
	route       string // "template" or "extended"
	devices     string // "jsplan" or "plain"
}

type scaleResult struct {
	scaleCase
	attrs   int // attributes per device
	setup   time.Duration
	elapsed time.Duration // first pod created to last pod bound
	average float64       // scheduler_perf's SchedulingThroughput Average
	perc50  float64
	load1   string
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// addFakeNodes creates nodes (Ready, room for 110 pods, no kubelet) and
// their ResourceSlices, a few at a time.
func (c *cluster) addFakeNodes(ctx context.Context, devices [][]resourcev1.Device) {
	t := c.t
	t.Helper()
	work := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := c.addFakeNode(ctx, nodeName(i), devices[i]); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := range devices {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%03d", i) }

func (c *cluster) addFakeNode(ctx context.Context, name string, devices []resourcev1.Device) error {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "jsplan.dev/boards": "true"}}}
	n, err := c.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	alloc := v1.ResourceList{v1.ResourcePods: resource.MustParse("110"), v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("8Gi")}
	n.Status = v1.NodeStatus{Capacity: alloc, Allocatable: alloc,
		Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now(), Reason: "KubeletReady"}}}
	if n, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return err
	}
	n.Spec.Taints = nil // as in addNode: the not-ready taint of admission
	if _, err := c.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		return err
	}
	// The slice as the driver's kubeletplugin helper publishes it: one pool
	// per node, named after the node, in one slice.
	s := &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-" + driver.DefaultDriverName + "-"},
		Spec: resourcev1.ResourceSliceSpec{
			Driver:   driver.DefaultDriverName,
			Pool:     resourcev1.ResourcePool{Name: name, Generation: 1, ResourceSliceCount: 1},
			NodeName: ptr.To(name),
			Devices:  devices,
		},
	}
	_, err = c.client.ResourceV1().ResourceSlices().Create(ctx, s, metav1.CreateOptions{})
	return err
}

// runScale runs one case on a control plane of its own.
func runScale(t *testing.T, sc scaleCase) scaleResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := scaleResult{scaleCase: sc}
	start := time.Now()
	// As scheduler_perf: the scheduler's client is not rate limited (a
	// deployed kube-scheduler defaults to 50 requests/s).
	c := startCluster(t, ctx, "--kube-api-qps=5000", "--kube-api-burst=5000")
	c.applyManifests(ctx)
	for _, kind := range podKinds {
		tmpl := &resourcev1.ResourceClaimTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: kind + "-any", Namespace: "ci"},
			Spec: resourcev1.ResourceClaimTemplateSpec{Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{
				Requests: []resourcev1.DeviceRequest{{Name: "board", Exactly: &resourcev1.ExactDeviceRequest{
					DeviceClassName: "jsplan.dev",
					Selectors:       []resourcev1.DeviceSelector{{CEL: &resourcev1.CELDeviceSelector{Expression: kindSelector(kind)}}},
				}}},
			}}},
		}
		if _, err := c.client.ResourceV1().ResourceClaimTemplates("ci").Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	devices := make([][]resourcev1.Device, sc.nodes)
	for i := range devices {
		devices[i] = jsplanDevices(t, dir, nodeName(i))
		if sc.devices == "plain" {
			devices[i] = plainDevices(devices[i])
		}
	}
	res.attrs = len(devices[0][0].Attributes)
	c.addFakeNodes(ctx, devices)

	// Count bound pods from an informer, as scheduler_perf does.
	var bound atomic.Int64
	var lastBound atomic.Int64 // UnixNano
	inf := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithNamespace("ci"))
	onPod := func(old, new *v1.Pod) {
		if (old == nil || old.Spec.NodeName == "") && new.Spec.NodeName != "" {
			bound.Add(1)
			lastBound.Store(time.Now().UnixNano())
		}
	}
	if _, err := inf.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { onPod(nil, o.(*v1.Pod)) },
		UpdateFunc: func(o, n any) { onPod(o.(*v1.Pod), n.(*v1.Pod)) },
	}); err != nil {
		t.Fatal(err)
	}
	inf.Start(ctx.Done())
	inf.WaitForCacheSync(ctx.Done())
	defer func() { cancel(); inf.Shutdown() }()
	res.setup = time.Since(start)
	res.load1 = loadAvg()

	// scheduler_perf's sampling: every second, once the first pod is bound,
	// the pods bound since the last sample over the time since it; a
	// second without progress is folded into the next sample.
	var samples []float64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		started, skipped := false, 0
		var last int64
		var lastT time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				n := bound.Load()
				switch {
				case n == 0:
					continue
				case !started:
					started, last, lastT = true, n, now
					if n >= int64(sc.pods) {
						return
					}
					continue
				case n == last:
					if n >= int64(sc.pods) {
						return
					}
					skipped++
					continue
				}
				r := float64(n-last) / now.Sub(lastT).Seconds()
				for i := 0; i <= skipped; i++ {
					samples = append(samples, r)
				}
				skipped, last, lastT = 0, n, now
				if n >= int64(sc.pods) {
					return
				}
			}
		}
	}()

	t0 := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				kind := podKinds[i%len(podKinds)]
				p := taskPod(fmt.Sprintf("run-%05d", i), "", "")
				if sc.route == "template" {
					p = taskPod(p.Name, kind+"-any", "")
				} else {
					p = taskPod(p.Name, "", "jsplan.dev/"+kind)
				}
				p.Labels["jsplan.dev/kind"] = kind
				if _, err := c.client.CoreV1().Pods("ci").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := 0; i < sc.pods; i++ {
		work <- i
	}
	close(work)
	wg.Wait()

	timeout := 2*time.Minute + time.Duration(sc.pods)*time.Second/2
	for deadline := time.Now().Add(timeout); bound.Load() < int64(sc.pods); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%+v: %d of %d pods bound after %s", sc, bound.Load(), sc.pods, timeout)
		}
	}
	res.elapsed = time.Unix(0, lastBound.Load()).Sub(t0)
	<-sampled
	if len(samples) > 0 {
		sort.Float64s(samples)
		sum := 0.0
		for _, s := range samples {
			sum += s
		}
		res.average = sum / float64(len(samples))
		res.perc50 = samples[(len(samples)+1)/2-1]
	}

	// Every pod got one board of the kind it asked for.
	claims, err := c.client.ResourceV1().ResourceClaims("ci").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	seen := map[string]bool{}
	for _, cl := range claims.Items {
		if cl.Status.Allocation == nil {
			continue
		}
		for _, r := range cl.Status.Allocation.Devices.Results {
			id := r.Pool + "/" + r.Device
			if seen[id] {
				t.Errorf("%s allocated twice", id)
			}
			seen[id] = true
			for _, k := range boardKinds {
				if strings.Contains(r.Device, "-"+k+"-") {
					got[k]++
				}
			}
		}
	}
	for i, k := range podKinds {
		want := sc.pods / len(podKinds)
		if i < sc.pods%len(podKinds) {
			want++
		}
		if got[k] != want {
			t.Errorf("%+v: %d %s boards allocated, want %d (all: %v)", sc, got[k], k, want, got)
		}
	}
	return res
}

// TestSchedulingThroughput measures the farms of JSPLAN_DRA_SCALE (node
// counts, comma-separated; a tiny farm by default).
func TestSchedulingThroughput(t *testing.T) {
	sizes := []int{5}
	if s := os.Getenv("JSPLAN_DRA_SCALE"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("JSPLAN_DRA_SCALE=%q: want node counts, comma-separated", s)
			}
			sizes = append(sizes, n)
		}
	}
	var results []scaleResult
	for _, n := range sizes {
		for _, route := range []string{"template", "extended"} {
			for _, devs := range []string{"jsplan", "plain"} {
				sc := scaleCase{nodes: n, pods: n * boardsPerNode / 2, route: route, devices: devs}
				t.Run(fmt.Sprintf("%dnodes/%s/%s", n, route, devs), func(t *testing.T) {
					r := runScale(t, sc)
					t.Logf("%+v", r)
					results = append(results, r)
				})
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| nodes x boards | pods | claims | devices (attrs) | setup | pods bound in | pods/s end to end | SchedulingThroughput avg (p50) | vs plain | load1 |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|\n")
	plain := map[string]float64{}
	for _, r := range results {
		if r.devices == "plain" {
			plain[fmt.Sprint(r.nodes, r.route)] = float64(r.pods) / r.elapsed.Seconds()
		}
	}
	for _, r := range results {
		e2e := float64(r.pods) / r.elapsed.Seconds()
		ratio := "-"
		if p := plain[fmt.Sprint(r.nodes, r.route)]; p > 0 && r.devices != "plain" {
			ratio = fmt.Sprintf("%.2f", e2e/p)
		}
		fmt.Fprintf(&b, "| %d x %d | %d | %s | %s (%d) | %.0fs | %.1fs | %.1f | %.1f (%.1f) | %s | %s |\n",
			r.nodes, boardsPerNode, r.pods, r.route, r.devices, r.attrs, r.setup.Seconds(), r.elapsed.Seconds(), e2e, r.average, r.perc50, ratio, r.load1)
	}
	t.Log(b.String())
	fmt.Print(b.String())
}
