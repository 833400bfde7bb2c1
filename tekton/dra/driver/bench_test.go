package driver

import (
	"context"
	"fmt"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
)

// BenchmarkFarm is the scale figure: a simulated farm of nodes x boards of
// 5 kinds, published by the driver's own code, and 2000 queued claims, each
// for one board of a kind by a CEL label selector, allocated one at a time
// by the allocator a default-gated 1.37 scheduler uses (the incubating one:
// one structured.NewAllocator per claim, which indexes the slices by node
// once, then Allocate per node tried, as the scheduler's DRA plugin does in
// PreFilter and Filter). When every board of a claim's kind is taken, the
// oldest run ends (its claim is released) and the claim is tried again, so
// all 2000 are allocated. The nodes are tried from a rotating start until
// one fits (first fit; the scheduler filters more nodes than that and then
// scores them, so this is the allocator's share of its work).
//
//	go test -run '^$' -bench Farm -benchtime 1x ./driver
func BenchmarkFarm(b *testing.B) {
	kinds := []string{"orin-nx", "orin-agx", "bcm2711", "imx8mp", "virtual"}
	for _, size := range []struct{ nodes, perNode int }{
		{25, 8}, {50, 8}, {100, 8}, {200, 8}, {500, 8}, {100, 4}, {100, 16},
	} {
		b.Run(fmt.Sprintf("nodes=%d/boards=%d", size.nodes, size.perNode), func(b *testing.B) {
			const claims = 2000
			f := newFarm(b, size.nodes, size.perNode, kinds)
			ctx := context.Background()
			var total time.Duration
			var attempts int
			f.tried = 0
			for i := 0; i < b.N; i++ {
				var running []*resourceapi.ResourceClaim
				start := time.Now()
				for c := 0; c < claims; c++ {
					kind := kinds[c%len(kinds)]
					claim := boardClaim(fmt.Sprint("c", c), fmt.Sprintf(`device.attributes["jsplan.dev"].?soc.orValue("") == %q`, kind))
					for {
						attempts++
						if f.allocate(ctx, b, claim, c) != "" {
							running = append(running, claim)
							break
						}
						// No free board of this kind: the oldest run of
						// that kind ends.
						released := false
						for j, r := range running {
							if r.Status.Allocation != nil && boardKind(f, r) == kind {
								f.release(r)
								running = append(running[:j], running[j+1:]...)
								released = true
								break
							}
						}
						if !released {
							b.Fatalf("no board of kind %s in the farm", kind)
						}
					}
				}
				total += time.Since(start)
				for _, r := range running {
					f.release(r)
				}
			}
			b.ReportMetric(float64(claims*b.N)/total.Seconds(), "allocs/s")
			b.ReportMetric(float64(attempts)/float64(claims*b.N), "tries/claim")
			b.ReportMetric(float64(f.tried)/float64(claims*b.N), "nodes/claim")
			b.ReportMetric(float64(total.Microseconds())/float64(claims*b.N), "µs/alloc")
		})
	}
}

// boardKind is the soc label of the board a claim was given.
func boardKind(f *farm, c *resourceapi.ResourceClaim) string {
	r := c.Status.Allocation.Devices.Results[0]
	for _, s := range f.slices {
		if s.Spec.Pool.Name != r.Pool {
			continue
		}
		for _, d := range s.Spec.Devices {
			if d.Name == r.Device {
				return *d.Attributes["soc"].StringValue
			}
		}
	}
	return ""
}
