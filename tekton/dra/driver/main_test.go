package driver

import (
	"os"
	"testing"

	"k8s.io/dynamic-resource-allocation/structured"
)

// TestMain lets structured.NewAllocator pick only the "incubating"
// allocator, the one a kube-scheduler 1.37 with default feature gates uses
// (schedulerFeatures): a test whose features would select another fails
// instead of silently testing the stable one.
func TestMain(m *testing.M) {
	structured.EnableAllocators("incubating")
	os.Exit(m.Run())
}
