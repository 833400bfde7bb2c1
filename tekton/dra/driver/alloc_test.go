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
	"k8s.io/dynamic-resource-allocation/structured"
)

// The inventory of the allocation tests: two nodes, each with its own boards.
const (
	invNodeA = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: orin-nx-1
    labels: {soc: orin-nx, lab: bench-a, board-rev: b02}
    drivers:
      sim: {password: x}
  - name: rpi4-1
    labels: {soc: bcm2711, lab: bench-a}
    drivers:
      sim: {password: x}
`
	invNodeB = `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: orin-agx-1
    labels: {soc: orin-agx, lab: bench-b}
    drivers:
      sim: {password: x}
  - name: rpi4-2
    labels: {soc: bcm2711, lab: bench-b}
    drivers:
      sim: {password: x}
`
)

func twoNodes(t *testing.T, unhealthy map[string]Health, taint bool) *farm {
	t.Helper()
	dir := t.TempDir()
	f := newFarm(t, 0, 0, nil)
	for _, n := range []struct{ node, inv string }{{"node-a", invNodeA}, {"node-b", invNodeB}} {
		p := filepath.Join(dir, n.node+".yaml")
		if err := os.WriteFile(p, []byte(n.inv), 0o644); err != nil {
			t.Fatal(err)
		}
		inv, err := LoadInventory(p)
		if err != nil {
			t.Fatal(err)
		}
		devs, _ := Devices(inv, unhealthy, taint)
		f.nodes = append(f.nodes, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.node}})
		f.slices = append(f.slices, nodeSlice(n.node, devs))
	}
	return f
}

func allocatedBoard(c *resourceapi.ResourceClaim) string {
	if c.Status.Allocation == nil || len(c.Status.Allocation.Devices.Results) != 1 {
		return ""
	}
	r := c.Status.Allocation.Devices.Results[0]
	return r.Pool + "/" + r.Device
}

// TestAllocateBySelector: claims with CEL selectors over the published
// attributes (labels, name, capabilities, drivers) land on the node whose
// board matches, whichever node the scheduler tries first.
func TestAllocateBySelector(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		expr, want string
	}{
		{`device.attributes["jsplan.dev"].soc == "orin-nx"`, "node-a/orin-nx-1"},
		{`device.attributes["jsplan.dev"].soc == "orin-agx"`, "node-b/orin-agx-1"},
		// Only some boards have the label: optional chaining (or has()).
		{`device.attributes["jsplan.dev"].?board_rev.orValue("") == "b02"`, "node-a/orin-nx-1"},
		{`"board_rev" in device.attributes["jsplan.dev"] && device.attributes["jsplan.dev"].board_rev == "b02"`, "node-a/orin-nx-1"},
		{`device.attributes["jsplan.dev"].name == "rpi4-2"`, "node-b/rpi4-2"},
		{`device.attributes["jsplan.dev"].soc == "bcm2711" && device.attributes["jsplan.dev"].lab == "bench-b"`, "node-b/rpi4-2"},
		{`device.attributes["jsplan.dev"].soc == "orin-agx" && device.attributes["jsplan.dev"].cap_console && device.attributes["jsplan.dev"].driver_sim`, "node-b/orin-agx-1"},
	} {
		for start := 0; start < 2; start++ {
			f := twoNodes(t, nil, true)
			c := boardClaim("c", tc.expr)
			node := f.allocate(ctx, t, c, start)
			if got := allocatedBoard(c); got != tc.want || node+"/"+c.Status.Allocation.Devices.Results[0].Device != tc.want {
				t.Errorf("%s (first node %d): allocated %q on %q, want %s", tc.expr, start, got, node, tc.want)
			}
		}
	}
	// A label some boards lack, read without a guard, is a CEL runtime
	// error on the nodes with such a board: the scheduler cannot use them
	// for the claim at all. The README says to guard such selectors.
	f0 := twoNodes(t, nil, true)
	a, err := structured.NewAllocator(ctx, f0.features, structured.AllocatedState{AllocatedDevices: f0.allocated}, f0.classes, f0.slices, f0.cel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate(ctx, f0.nodes[1], []*resourceapi.ResourceClaim{boardClaim("bare", `device.attributes["jsplan.dev"].board_rev == "b02"`)}); err == nil || !strings.Contains(err.Error(), "no such key: board_rev") {
		t.Errorf("an unguarded missing attribute: want a CEL runtime error, got %v", err)
	}
	// A selector nothing matches: no node.
	f := twoNodes(t, nil, true)
	if node := f.allocate(ctx, t, boardClaim("none", `device.attributes["jsplan.dev"].soc == "imx8"`), 0); node != "" {
		t.Errorf("a claim for an absent kind was allocated on %s", node)
	}
}

// TestAllocatorIsTheSchedulers: the feature set of a default-gated 1.37
// scheduler is beyond the stable allocator, so NewAllocator (as in every
// test here) gives the incubating one, as in that scheduler.
func TestAllocatorIsTheSchedulers(t *testing.T) {
	ctx := context.Background()
	f := twoNodes(t, nil, true)
	structured.EnableAllocators("stable")
	defer structured.EnableAllocators("incubating")
	if _, err := structured.NewAllocator(ctx, f.features, structured.AllocatedState{AllocatedDevices: f.allocated}, f.classes, f.slices, f.cel); err == nil {
		t.Errorf("the stable allocator accepts the default features %+v: the scheduler would use it", f.features)
	}
	structured.EnableAllocators("incubating")
	if _, err := structured.NewAllocator(ctx, f.features, structured.AllocatedState{AllocatedDevices: f.allocated}, f.classes, f.slices, f.cel); err != nil {
		t.Errorf("the incubating allocator: %v", err)
	}
}

// TestAllocateExhausted: once the only matching board is allocated, the
// next claim for it stays unallocated until the first is released.
func TestAllocateExhausted(t *testing.T) {
	ctx := context.Background()
	f := twoNodes(t, nil, true)
	expr := `device.attributes["jsplan.dev"].soc == "orin-nx"`
	first := boardClaim("first", expr)
	if f.allocate(ctx, t, first, 1) != "node-a" {
		t.Fatal("first claim not allocated on node-a")
	}
	second := boardClaim("second", expr)
	if node := f.allocate(ctx, t, second, 0); node != "" {
		t.Fatalf("second claim got %s while the only orin-nx board is allocated", allocatedBoard(second))
	}
	f.release(first)
	if f.allocate(ctx, t, second, 0) != "node-a" || allocatedBoard(second) != "node-a/orin-nx-1" {
		t.Fatalf("after the release, the second claim got %q", allocatedBoard(second))
	}
}

// TestAllocateNeverUnhealthy: a board that failed its check is never
// chosen, whether the driver taints it (NoSchedule) or leaves it out.
func TestAllocateNeverUnhealthy(t *testing.T) {
	ctx := context.Background()
	sick := map[string]Health{"rpi4-1": {Reason: "cannot open: serial: no such device"}}
	for _, taint := range []bool{true, false} {
		f := twoNodes(t, sick, taint)
		if taint {
			devs := f.slices[0].Spec.Devices
			if len(devs) != 2 || len(devs[1].Taints) != 1 || devs[1].Taints[0].Effect != resourceapi.DeviceTaintEffectNoSchedule {
				t.Fatalf("taint mode: rpi4-1 not tainted: %+v", devs)
			}
		} else if len(f.slices[0].Spec.Devices) != 1 {
			t.Fatalf("remove mode: node-a publishes %d devices, want 1", len(f.slices[0].Spec.Devices))
		}
		for i := 0; i < 3; i++ {
			c := boardClaim(fmt.Sprint("rpi-", i), `device.attributes["jsplan.dev"].soc == "bcm2711"`)
			node := f.allocate(ctx, t, c, 0)
			switch {
			case i == 0 && allocatedBoard(c) != "node-b/rpi4-2":
				t.Errorf("taint=%v: first bcm2711 claim got %q, want the healthy node-b/rpi4-2", taint, allocatedBoard(c))
			case i > 0 && node != "":
				t.Errorf("taint=%v: claim %d got %q: only the unhealthy board was left", taint, i, allocatedBoard(c))
			}
		}
	}
}

// TestAllocateNeverShared: N claims for M boards; the allocated state is
// fed back between rounds as the scheduler does, and no board is given
// twice. Then every claim is released and allocated again.
func TestAllocateNeverShared(t *testing.T) {
	ctx := context.Background()
	const nodes, perNode = 6, 5
	kinds := []string{"orin-nx", "orin-agx", "bcm2711"}
	f := newFarm(t, nodes, perNode, kinds)
	perKind := map[string]int{}
	for i := 0; i < nodes*perNode; i++ {
		perKind[kinds[i%len(kinds)]]++
	}
	for round := 0; round < 2; round++ {
		owner := map[string]string{}
		got := map[string]int{}
		var claims []*resourceapi.ResourceClaim
		for i := 0; i < 3*nodes*perNode; i++ {
			kind := kinds[i%len(kinds)]
			c := boardClaim(fmt.Sprintf("c%d", i), fmt.Sprintf(`device.attributes["jsplan.dev"].soc == %q`, kind))
			claims = append(claims, c)
			if f.allocate(ctx, t, c, i) == "" {
				continue
			}
			b := allocatedBoard(c)
			if prev, dup := owner[b]; dup {
				t.Fatalf("round %d: board %s given to %s and %s", round, b, prev, c.Name)
			}
			owner[b] = c.Name
			got[kind]++
		}
		for _, k := range kinds {
			if got[k] != perKind[k] {
				t.Errorf("round %d: %d %s claims allocated, want every %s board (%d)", round, got[k], k, k, perKind[k])
			}
		}
		for _, c := range claims {
			f.release(c)
		}
	}
}
