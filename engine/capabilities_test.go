package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/schema"
)

// overclaim is a driver with a bug: its device lists console, whose
// interface it does not implement.
type overclaim struct{}

func (overclaim) Capabilities() []drivers.Capability {
	return []drivers.Capability{drivers.CapPower, drivers.CapConsole}
}
func (overclaim) Open(context.Context, drivers.Env) error { return nil }
func (overclaim) Close() error                            { return nil }
func (overclaim) On(context.Context) error                { return nil }
func (overclaim) Off(context.Context) error               { return nil }

func init() {
	drivers.Register(drivers.Info{Name: "overclaim", Summary: "test: lists console without implementing it",
		Schema: schema.Object("", schema.Obj{}), New: func() drivers.Device { return &overclaim{} }})
}

// A device that lists a capability it does not implement is rejected when
// the inventory loads, at its driver, before any step could use it; the
// board is not assigned that capability.
func TestDeviceListingAnUnimplementedCapability(t *testing.T) {
	doc := "apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n  - name: b\n    drivers:\n      overclaim: {}\n"
	l := engine.NewLoader(engine.Options{})
	inv := &engine.Inventory{}
	l.LoadBoardsBytes("boards.yaml", []byte(doc), inv)
	ds := l.Diagnostics()
	if len(ds) != 1 || !strings.HasPrefix(ds[0].Error(),
		`boards.yaml:6:18: driver overclaim: the device lists capability "console" but does not implement its interface`) {
		t.Fatalf("diagnostics: %v", ds)
	}
	if b := inv.Lookup("b"); b != nil && b.Has(drivers.CapConsole) {
		t.Error("the board serves console")
	}
}
