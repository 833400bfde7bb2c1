package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/utils/ptr"
)

// A farm is a simulated cluster: nodes, each with an inventory of sim
// boards, the ResourceSlices the driver publishes for them, and what the
// scheduler would have allocated so far.
type farm struct {
	nodes     []*v1.Node
	slices    []*resourceapi.ResourceSlice
	allocated sets.Set[structured.DeviceID]
	// shared and consumed are what claims hold of devices that several
	// claims may hold (shared resources), as the scheduler tracks them.
	shared   sets.Set[structured.SharedDeviceID]
	consumed structured.ConsumedCapacityCollection
	classes  classLister
	cel      *cel.Cache
	features structured.Features
	tried    int // nodes tried by allocate, in all
}

// schedulerFeatures is the allocator feature set of a kube-scheduler 1.37
// with its default feature gates: what its DRA plugin passes to
// structured.NewAllocator (dynamicresources.AllocatorFeatures over
// feature.NewSchedulerFeaturesFromGates), read from Kubernetes' own
// default gates. With it NewAllocator picks the "incubating" allocator, as
// such a scheduler does (TestMain allows no other).
func schedulerFeatures() structured.Features {
	on := utilfeature.DefaultFeatureGate.Enabled
	return structured.Features{
		AdminAccess:             on(features.DRAAdminAccess),
		PrioritizedList:         on(features.DRAPrioritizedList),
		PartitionableDevices:    on(features.DRAPartitionableDevices),
		DeviceTaints:            on(features.DRADeviceTaints),
		DeviceBindingAndStatus:  on(features.DRADeviceBindingConditions) && on(features.DRAResourceClaimDeviceStatus),
		ConsumableCapacity:      on(features.DRAConsumableCapacity),
		FractionalCapacityRange: on(features.DRAFractionalCapacityRange),
		ListTypeAttributes:      on(features.DRAListTypeAttributes),
		OptionalNodeOperations:  on(features.DRAOptionalNodeOperations),
		DerivedAttributes:       on(features.DRADerivedAttributes),
		CompatibilityGroups:     on(features.DRADeviceCompatibilityGroups),
	}
}

// schedulerCELFeatures is the CEL environment of that scheduler.
func schedulerCELFeatures() cel.Features {
	on := utilfeature.DefaultFeatureGate.Enabled
	return cel.Features{
		EnableConsumableCapacity: on(features.DRAConsumableCapacity),
		EnableListTypeAttributes: on(features.DRAListTypeAttributes),
	}
}

// farmInventory writes one node's inventory: perNode sim boards, the kind
// of board i being kinds[(first+i) % len(kinds)].
func farmInventory(t testing.TB, dir, node string, first, perNode int, kinds []string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n")
	for i := 0; i < perNode; i++ {
		kind := kinds[(first+i)%len(kinds)]
		fmt.Fprintf(&b, "  - name: %s-%s-%d\n    labels: {soc: %s, lab: %s}\n    drivers:\n      sim: {password: x}\n", node, kind, i, kind, node)
	}
	p := filepath.Join(dir, node+".yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newFarm loads every node's inventory with the driver's own code and makes
// the slices the driver would publish.
func newFarm(t testing.TB, nodes, perNode int, kinds []string) *farm {
	t.Helper()
	dir := t.TempDir()
	f := &farm{allocated: sets.New[structured.DeviceID](), classes: classLister{boardClass()},
		cel: cel.NewCache(100, schedulerCELFeatures()), features: schedulerFeatures()}
	for n := 0; n < nodes; n++ {
		name := fmt.Sprintf("node-%03d", n)
		inv, err := LoadInventory(farmInventory(t, dir, name, n*perNode, perNode, kinds))
		if err != nil {
			t.Fatal(err)
		}
		devs, warn := Devices(inv, nil, true)
		if len(warn) > 0 {
			t.Fatal(warn)
		}
		f.nodes = append(f.nodes, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
		f.slices = append(f.slices, nodeSlice(name, devs))
	}
	return f
}

func nodeSlice(node string, devs []resourceapi.Device) *resourceapi.ResourceSlice {
	return &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-jsplan.dev"},
		Spec: resourceapi.ResourceSliceSpec{
			Driver:   DefaultDriverName,
			Pool:     resourceapi.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1},
			NodeName: ptr.To(node),
			Devices:  devs,
		},
	}
}

// boardClass is the DeviceClass of deploy/deviceclass.yaml: every jsplan
// board, and no shared resource.
func boardClass() *resourceapi.DeviceClass {
	return &resourceapi.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: "jsplan.dev"},
		Spec: resourceapi.DeviceClassSpec{Selectors: []resourceapi.DeviceSelector{
			{CEL: &resourceapi.CELDeviceSelector{Expression: `device.driver == "jsplan.dev" && !has(device.attributes["jsplan.dev"].resource)`}},
		}},
	}
}

type classLister []*resourceapi.DeviceClass

func (l classLister) List() ([]*resourceapi.DeviceClass, error) { return l, nil }
func (l classLister) Get(name string) (*resourceapi.DeviceClass, error) {
	for _, c := range l {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("device class %s not found", name)
}

// boardClaim asks for one board of the jsplan.dev class matching a CEL
// expression, as deploy/resourceclaimtemplate.yaml does.
func boardClaim(name, expr string) *resourceapi.ResourceClaim {
	req := &resourceapi.ExactDeviceRequest{DeviceClassName: "jsplan.dev", AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: 1}
	if expr != "" {
		req.Selectors = []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: expr}}}
	}
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ci", UID: types.UID("uid-" + name)},
		Spec:       resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{{Name: "board", Exactly: req}}}},
	}
}

// allocate does what the scheduler does for one pod's claim: it tries the
// nodes (from start, wrapping) and takes the first that can satisfy the
// claim. The allocation is recorded in the farm's allocated state, as the
// scheduler's assume cache does. It returns the node, or "" when none fits.
func (f *farm) allocate(ctx context.Context, t testing.TB, claim *resourceapi.ResourceClaim, start int) string {
	t.Helper()
	if f.shared == nil {
		f.shared, f.consumed = sets.New[structured.SharedDeviceID](), structured.NewConsumedCapacityCollection()
	}
	a, err := structured.NewAllocator(ctx, f.features, structured.AllocatedState{AllocatedDevices: f.allocated,
		AllocatedSharedDeviceIDs: f.shared, AggregatedCapacity: f.consumed}, f.classes, f.slices, f.cel)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.nodes {
		node := f.nodes[(start+i)%len(f.nodes)]
		f.tried++
		res, err := a.Allocate(ctx, node, []*resourceapi.ResourceClaim{claim})
		if err != nil {
			t.Fatalf("allocate %s on %s: %v", claim.Name, node.Name, err)
		}
		if len(res) == 0 {
			continue
		}
		claim.Status.Allocation = &res[0]
		for _, r := range res[0].Devices.Results {
			id := structured.MakeDeviceID(r.Driver, r.Pool, r.Device)
			if r.ShareID != nil {
				f.shared.Insert(structured.MakeSharedDeviceID(id, r.ShareID))
				f.consumed.Insert(structured.NewDeviceConsumedCapacity(id, r.ConsumedCapacity))
				continue
			}
			f.allocated.Insert(id)
		}
		return node.Name
	}
	return ""
}

// release frees what a claim was given (its pod finished).
func (f *farm) release(claim *resourceapi.ResourceClaim) {
	if claim.Status.Allocation == nil {
		return
	}
	for _, r := range claim.Status.Allocation.Devices.Results {
		id := structured.MakeDeviceID(r.Driver, r.Pool, r.Device)
		if r.ShareID != nil {
			f.shared.Delete(structured.MakeSharedDeviceID(id, r.ShareID))
			f.consumed.Remove(structured.NewDeviceConsumedCapacity(id, r.ConsumedCapacity))
			continue
		}
		f.allocated.Delete(id)
	}
	claim.Status.Allocation = nil
}
