package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Node a has an ECU and two CAN nodes on two buses (the ECU on can1);
// node b an ECU on a bus with no peer.
const (
	invWiredA = `apiVersion: jsplan.dev/v1
kind: Boards
resources:
  - {name: can0, kind: canbus, capacity: 4}
  - {name: can1, kind: canbus, capacity: 4}
boards:
  - name: ecu-1
    labels: {soc: orin-nx}
    resources: [can1]
    drivers:
      sim: {password: x}
  - name: peer-0
    labels: {kind: can-node}
    resources: [can0]
    drivers:
      sim: {password: x}
  - name: peer-1
    labels: {kind: can-node}
    resources: [can1]
    drivers:
      sim: {password: x}
`
	invWiredB = `apiVersion: jsplan.dev/v1
kind: Boards
resources:
  - {name: can5, kind: canbus}
boards:
  - name: ecu-2
    labels: {soc: orin-nx}
    resources: [can5]
    drivers:
      sim: {password: x}
`
)

func claimDevices(ctx context.Context, t *testing.T, c *cluster, pod string) map[string]string {
	t.Helper()
	p, err := c.client.CoreV1().Pods("ci").Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Status.ResourceClaimStatuses) != 1 || p.Status.ResourceClaimStatuses[0].ResourceClaimName == nil {
		t.Fatalf("pod %s has no generated claim: %+v", pod, p.Status.ResourceClaimStatuses)
	}
	cl, err := c.client.ResourceV1().ResourceClaims("ci").Get(ctx, *p.Status.ResourceClaimStatuses[0].ResourceClaimName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	if cl.Status.Allocation != nil {
		for _, r := range cl.Status.Allocation.Devices.Results {
			out[r.Request] = r.Pool + "/" + r.Device
		}
	}
	return out
}

// TestSchedulerWiresBoardsAndSharesBuses: the scheduler, with the claim of
// deploy/resourceclaimtemplate.yaml (dut, peer, a share of their bus, all
// matching on the canbus attribute), binds the pod to the node where an
// ECU and a CAN node share a bus and gives it exactly those; a bus of
// capacity 4 takes four pods at once and the fifth waits until one ends.
func TestSchedulerWiresBoardsAndSharesBuses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := startCluster(t, ctx)
	c.applyManifests(ctx)
	c.addNode(ctx, "node-a", invWiredA)
	c.addNode(ctx, "node-b", invWiredB)
	bound := func(p *v1.Pod) bool { return p.Spec.NodeName != "" }

	if _, err := c.client.CoreV1().Pods("ci").Create(ctx, taskPod("pair", "ecu-and-peer", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := c.waitPod(ctx, "pair", bound, "bound"); p.Spec.NodeName != "node-a" {
		t.Fatalf("pair bound to %s, want node-a (node-b's ECU has no peer on its bus)", p.Spec.NodeName)
	}
	got := claimDevices(ctx, t, c, "pair")
	if got["dut"] != "node-a/ecu-1" || got["peer"] != "node-a/peer-1" || got["bus"] != "node-a/resource-can1" {
		t.Fatalf("pair got %v, want ecu-1 with peer-1 on can1 (peer-0 is on can0)", got)
	}

	// Shares of can0: a template asking for one share each.
	tmpl := &resourcev1.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "can0-share", Namespace: "ci"},
		Spec: resourcev1.ResourceClaimTemplateSpec{Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{
			Requests: []resourcev1.DeviceRequest{{Name: "bus", Exactly: &resourcev1.ExactDeviceRequest{
				DeviceClassName: "resource.jsplan.dev", AllocationMode: resourcev1.DeviceAllocationModeExactCount, Count: 1,
				Selectors: []resourcev1.DeviceSelector{{CEL: &resourcev1.CELDeviceSelector{Expression: `device.attributes["jsplan.dev"].name == "can0"`}}},
				Capacity: &resourcev1.CapacityRequirements{Requests: map[resourcev1.QualifiedName]resource.Quantity{
					"share": resource.MustParse("1")}},
			}}},
		}}},
	}
	if _, err := c.client.ResourceV1().ResourceClaimTemplates("ci").Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := c.client.CoreV1().Pods("ci").Create(ctx, taskPod(fmt.Sprintf("bus-%d", i), "can0-share", ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 4; i++ {
		c.waitPod(ctx, fmt.Sprintf("bus-%d", i), bound, "bound (a share of can0)")
	}
	c.waitPod(ctx, "bus-5", unschedulable, "unschedulable (can0 has 4 shares, all taken)")
	time.Sleep(2 * time.Second)
	if p := c.waitPod(ctx, "bus-5", func(*v1.Pod) bool { return true }, ""); p.Spec.NodeName != "" {
		t.Fatalf("bus-5 bound to %s while four pods hold can0's four shares", p.Spec.NodeName)
	}
	if err := c.client.CoreV1().Pods("ci").Delete(ctx, "bus-2", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if p := c.waitPod(ctx, "bus-5", bound, "bound after bus-2 ended"); p.Spec.NodeName != "node-a" {
		t.Fatalf("bus-5 bound to %s, want node-a", p.Spec.NodeName)
	}
	if got := claimDevices(ctx, t, c, "bus-5"); got["bus"] != "node-a/resource-can0" {
		t.Fatalf("bus-5 got %v", got)
	}
}
