package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/structured"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	"k8s.io/utils/ptr"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/lock"
)

// The bench of the several-boards tests: two CAN buses, an ECU on can1
// only, peers on both, and a network segment with room for two runs.
const invWired = `apiVersion: jsplan.dev/v1
kind: Boards
resources:
  - {name: can0, kind: canbus, capacity: 4}
  - {name: can1, kind: canbus, capacity: 4}
  - {name: lab-net, kind: ethernet, capacity: 2}
boards:
  - name: ecu-1
    labels: {soc: orin-nx}
    resources: [can1, lab-net]
    drivers:
      sim: {password: x}
  - name: peer-0
    labels: {soc: can-node}
    resources: [can0]
    drivers:
      sim: {password: x}
  - name: peer-1
    labels: {soc: can-node}
    resources: [can1]
    drivers:
      sim: {password: x}
`

func loadWired(t *testing.T, inventory string) *engine.Inventory {
	t.Helper()
	p := filepath.Join(t.TempDir(), "boards.yaml")
	if err := os.WriteFile(p, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := LoadInventory(p)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func device(devs []resourceapi.Device, name string) *resourceapi.Device {
	for i := range devs {
		if devs[i].Name == name {
			return &devs[i]
		}
	}
	return nil
}

func stringAttr(d *resourceapi.Device, name string) string {
	if a, ok := d.Attributes[resourceapi.QualifiedName(name)]; ok && a.StringValue != nil {
		return *a.StringValue
	}
	return ""
}

// TestResourceDevices: a shared resource is one device that several claims
// may hold (allowMultipleAllocations) with its capacity as consumable
// shares; a board wired to it carries the resource's name under its kind,
// as the resource's device does, so matchAttribute can join them.
func TestResourceDevices(t *testing.T) {
	devs, warn := Devices(loadWired(t, invWired), nil, true)
	if len(warn) != 0 {
		t.Fatal(warn)
	}
	if len(devs) != 6 {
		t.Fatalf("devices %d, want 3 boards + 3 resources", len(devs))
	}
	can1 := device(devs, "resource-can1")
	if can1 == nil {
		t.Fatalf("no device resource-can1 in %v", devs)
	}
	if can1.AllowMultipleAllocations == nil || !*can1.AllowMultipleAllocations {
		t.Error("resource device not allowMultipleAllocations")
	}
	share := can1.Capacity[ShareCapacity]
	if share.Value.Value() != 4 || share.RequestPolicy == nil || share.RequestPolicy.Default.Value() != 1 ||
		share.RequestPolicy.ValidRange.Max.Value() != 4 {
		t.Errorf("capacity %+v, want 4 shares, 1 by default", share)
	}
	if stringAttr(can1, "name") != "can1" || stringAttr(can1, "resource") != "canbus" || stringAttr(can1, "canbus") != "can1" {
		t.Errorf("resource attributes %+v", can1.Attributes)
	}
	ecu := device(devs, "ecu-1")
	if stringAttr(ecu, "canbus") != "can1" || stringAttr(ecu, "ethernet") != "lab-net" {
		t.Errorf("ecu-1 attributes %+v: want canbus=can1 ethernet=lab-net", ecu.Attributes)
	}
	if _, ok := ecu.Attributes["resource"]; ok || ecu.AllowMultipleAllocations != nil {
		t.Error("a board looks like a resource")
	}

	// A label that collides with a resource kind loses, with a warning.
	_, warn = Devices(loadWired(t, strings.Replace(invWired, "labels: {soc: orin-nx}", "labels: {soc: orin-nx, canbus: other}", 1)), nil, true)
	if len(warn) != 1 || !strings.Contains(warn[0], `label "canbus"`) {
		t.Errorf("warnings %q, want one for the label canbus", warn)
	}
}

// wiredFarm is one node with the wired bench, the generic board class and
// the resource class of deploy/deviceclass.yaml.
func wiredFarm(t *testing.T) *farm {
	t.Helper()
	devs, _ := Devices(loadWired(t, invWired), nil, true)
	f := newFarm(t, 0, 0, nil)
	f.classes = classLister{boardClass(), resourceClass()}
	f.nodes = []*v1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}}
	f.slices = []*resourceapi.ResourceSlice{nodeSlice("node-a", devs)}
	return f
}

// resourceClass is deploy/deviceclass.yaml's class of shared resources.
func resourceClass() *resourceapi.DeviceClass {
	return &resourceapi.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: "resource.jsplan.dev"},
		Spec: resourceapi.DeviceClassSpec{Selectors: []resourceapi.DeviceSelector{
			{CEL: &resourceapi.CELDeviceSelector{Expression: `device.driver == "jsplan.dev" && has(device.attributes["jsplan.dev"].resource)`}},
		}},
	}
}

// wiredClaim asks for a dut (orin-nx), a peer (can-node) and a share of
// their bus, all three matching on the canbus attribute: two boards wired
// together and the bus between them.
func wiredClaim(name string) *resourceapi.ResourceClaim {
	sel := func(expr string) []resourceapi.DeviceSelector {
		return []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: expr}}}
	}
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ci", UID: types.UID("uid-" + name)},
		Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{
				{Name: "dut", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "jsplan.dev", AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: 1,
					Selectors: sel(`device.attributes["jsplan.dev"].?soc.orValue("") == "orin-nx"`)}},
				{Name: "peer", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "jsplan.dev", AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: 1,
					Selectors: sel(`device.attributes["jsplan.dev"].?soc.orValue("") == "can-node"`)}},
				{Name: "bus", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "resource.jsplan.dev", AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: 1,
					Selectors: sel(`device.attributes["jsplan.dev"].resource == "canbus"`)}},
			},
			Constraints: []resourceapi.DeviceConstraint{{Requests: []string{"dut", "peer", "bus"}, MatchAttribute: ptr.To(resourceapi.FullyQualifiedName("jsplan.dev/canbus"))}},
		}},
	}
}

func allocatedDevices(c *resourceapi.ResourceClaim) map[string]string {
	out := map[string]string{}
	if c.Status.Allocation != nil {
		for _, r := range c.Status.Allocation.Devices.Results {
			out[r.Request] = r.Device
		}
	}
	return out
}

// TestAllocateWiredTogether: Kubernetes' allocator gives a two-role claim
// the peer on the dut's bus (peer-1 on can1, never peer-0 on can0) and a
// share of that bus; the generic board class never hands out a resource.
func TestAllocateWiredTogether(t *testing.T) {
	ctx := context.Background()
	f := wiredFarm(t)
	claim := wiredClaim("pair")
	if f.allocate(ctx, t, claim, 0) != "node-a" {
		t.Fatal("the two-board claim was not allocated")
	}
	got := allocatedDevices(claim)
	if got["dut"] != "ecu-1" || got["peer"] != "peer-1" || got["bus"] != "resource-can1" {
		t.Fatalf("allocated %v, want dut=ecu-1 peer=peer-1 bus=resource-can1", got)
	}
	// Only one orin-nx: a second pair waits for the first.
	if f.allocate(ctx, t, wiredClaim("pair-2"), 0) != "" {
		t.Fatal("a second pair got the only dut")
	}
	// "Any board" never gets a resource: 3 boards, then nothing.
	f.release(claim)
	for i := 0; i < 4; i++ {
		c := boardClaim("any-"+string(rune('a'+i)), "")
		node := f.allocate(ctx, t, c, 0)
		if i < 3 && (node == "" || strings.HasPrefix(allocatedBoard(c), "node-a/resource-")) {
			t.Fatalf("claim %d got %q", i, allocatedBoard(c))
		}
		if i == 3 && node != "" {
			t.Fatalf("a fourth any-board claim got %q (a resource?)", allocatedBoard(c))
		}
	}
}

// shareClaim asks for n shares of lab-net.
func shareClaim(name string, n int64) *resourceapi.ResourceClaim {
	req := &resourceapi.ExactDeviceRequest{DeviceClassName: "resource.jsplan.dev", AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: 1,
		Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: `device.attributes["jsplan.dev"].name == "lab-net"`}}}}
	if n > 0 {
		req.Capacity = &resourceapi.CapacityRequirements{Requests: map[resourceapi.QualifiedName]apiresource.Quantity{
			ShareCapacity: *apiresource.NewQuantity(n, apiresource.DecimalSI)}}
	}
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ci", UID: types.UID("uid-" + name)},
		Spec:       resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{{Name: "net", Exactly: req}}}},
	}
}

// TestAllocateShareCapacity: a resource of capacity 2 admits claims while
// their shares fit (1 by default, or as asked) and the next waits until
// one is released.
func TestAllocateShareCapacity(t *testing.T) {
	ctx := context.Background()
	f := wiredFarm(t)
	a, b := shareClaim("a", 0), shareClaim("b", 0)
	if f.allocate(ctx, t, a, 0) == "" || f.allocate(ctx, t, b, 0) == "" {
		t.Fatal("two single shares of a capacity-2 resource not both allocated")
	}
	if q := a.Status.Allocation.Devices.Results[0].ConsumedCapacity[ShareCapacity]; q.Value() != 1 {
		t.Errorf("consumed %v, want the default share of 1", q)
	}
	c := shareClaim("c", 0)
	if f.allocate(ctx, t, c, 0) != "" {
		t.Fatal("a third share of a capacity-2 resource was allocated")
	}
	f.release(a)
	if f.allocate(ctx, t, c, 0) == "" {
		t.Fatal("after a release the waiting share was not allocated")
	}
	f.release(b)
	f.release(c)
	if big := shareClaim("big", 3); f.allocate(ctx, t, big, 0) != "" {
		t.Fatal("3 shares of a capacity-2 resource were allocated")
	}
	if two := shareClaim("two", 2); f.allocate(ctx, t, two, 0) == "" {
		t.Fatal("2 shares of a free capacity-2 resource were not allocated")
	}
}

// TestPrepareRolesAndShares: a claim with two boards and a share of their
// bus gives the container one variable per role (no JSPLAN_BOARD: which
// would it be?), and an inventory with both boards, wired to the bus, which
// holds the claim's share; a second claim on the same bus prepares too.
func TestPrepareRolesAndShares(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	n.writeInventory(invWired)
	d := n.start(ctx)
	defer d.Stop()
	s := n.slice(ctx, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 6 })

	f := wiredFarm(t)
	f.slices = []*resourceapi.ResourceSlice{s}
	f.nodes[0].Name = n.name
	claim := wiredClaim("pair")
	if f.allocate(ctx, t, claim, 0) != n.name {
		t.Fatal("not allocated")
	}
	if _, err := n.client.ResourceV1().ResourceClaims("ci").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dra := drapb.NewDRAPluginClient(dial(t, filepath.Join(n.plugins, "dra.sock")))
	resp, err := dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ci", Name: "pair", Uid: string(claim.UID)}}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Claims[string(claim.UID)]
	if r == nil || r.Error != "" || len(r.Devices) != 3 {
		t.Fatalf("NodePrepareResources: %+v", resp)
	}
	var ids []string
	for _, dev := range r.Devices {
		ids = append(ids, dev.CdiDeviceIds...)
	}
	env := injectCDI(t, n.cdi, ids).Process.Env
	for _, e := range []string{"JSPLAN_BOARD_DUT=ecu-1", "JSPLAN_BOARD_PEER=peer-1", "JSPLAN_RESOURCE_BUS=can1", "JSPLAN_BOARDS=" + ContainerInventory} {
		if !slices.Contains(env, e) {
			t.Errorf("env lacks %s: %v", e, env)
		}
	}
	for _, e := range env {
		if strings.HasPrefix(e, "JSPLAN_BOARD=") {
			t.Errorf("a two-board claim sets %s", e)
		}
	}

	// The run's inventory: both boards, the bus they share with the
	// claim's one share, and jsplan's own loader accepts it.
	runInv := filepath.Join(n.state, "claims", string(claim.UID), "boards.yaml")
	inv, err := LoadInventory(runInv)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Boards) != 2 || len(inv.Resources) != 1 || inv.Resources[0].Name != "can1" || inv.Resources[0].Capacity != 1 {
		raw, _ := os.ReadFile(runInv)
		t.Fatalf("run inventory:\n%s", raw)
	}
	for _, b := range inv.Boards {
		if !slices.Equal(b.Resources, []string{"can1"}) {
			t.Errorf("board %s wired to %v in the run's inventory, want [can1] (lab-net is not the claim's)", b.Name, b.Resources)
		}
	}
	var doc map[string]any
	raw, _ := os.ReadFile(runInv)
	if err := yaml.Unmarshal(raw, &doc); err != nil || doc["resources"] == nil {
		t.Fatalf("run inventory has no resources: %v\n%s", err, raw)
	}

	// On the node, the claim holds both boards and one slot of the bus,
	// as a run by hand would see them.
	if h := n.boardHolder("ecu-1"); !strings.Contains(h, "ResourceClaim ci/pair") {
		t.Errorf("ecu-1 held by %q", h)
	}
	if hs := lock.ResourceHolders(n.locks, "can1", 4); len(hs) != 1 || !strings.Contains(hs[0].Plan, "ResourceClaim ci/pair") {
		t.Errorf("can1's slots held by %+v, want one by the claim", hs)
	}

	// Another claim's share of the same bus: a resource is never "busy".
	f.release(claim)
	f.allocated.Insert(structured.MakeDeviceID(DefaultDriverName, n.name, "ecu-1"))
	other := shareClaim("net-user", 1)
	other.Spec.Devices.Requests[0].Exactly.Selectors[0].CEL.Expression = `device.attributes["jsplan.dev"].name == "can1"`
	if f.allocate(ctx, t, other, 0) != n.name {
		t.Fatal("share of can1 not allocated")
	}
	if _, err := n.client.ResourceV1().ResourceClaims("ci").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err = dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ci", Name: "net-user", Uid: string(other.UID)}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Claims[string(other.UID)]; r == nil || r.Error != "" || len(r.Devices) != 1 {
		t.Fatalf("second share: %+v", resp)
	}
	if hs := lock.ResourceHolders(n.locks, "can1", 4); len(hs) != 2 {
		t.Errorf("can1's slots held by %+v, want two claims", hs)
	}

	// Runs by hand hold the bus's two other slots: a third claim's share
	// is refused (the scheduler's count did not know of them) and takes
	// nothing.
	var manual []*lock.Set
	for range 2 {
		set, _, err := lock.AcquireAll(ctx, n.locks, [][]lock.Want{{{Name: "can1", Capacity: 4}}}, lock.Holder{Plan: "by-hand.yaml"}, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		manual = append(manual, set)
	}
	third := shareClaim("third", 1)
	third.Spec.Devices.Requests[0].Exactly.Selectors[0].CEL.Expression = `device.attributes["jsplan.dev"].name == "can1"`
	if f.allocate(ctx, t, third, 0) != n.name {
		t.Fatal("third share not allocated")
	}
	if _, err := n.client.ResourceV1().ResourceClaims("ci").Create(ctx, third, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err = dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ci", Name: "third", Uid: string(third.UID)}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Claims[string(third.UID)]; r == nil || !strings.Contains(r.Error, "resource can1 is busy on the node") {
		t.Fatalf("third share with the bus full on the node: %+v", r)
	}
	for _, m := range manual {
		_ = m.Release()
	}
}
