package drivers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/schema"
)

// gpio is a complete power driver: a board's supply switched by a GPIO
// line through its sysfs value file (/sys/class/gpio/gpioN/value), '1' on
// and '0' off, or the reverse when the line is active-low.
//
// Its exported fields are its configuration, decoded strictly from the
// board's entry in an inventory:
//
//	drivers:
//	  gpio: {value: /sys/class/gpio/gpio17/value, active-low: true}
type gpio struct {
	Value     string `yaml:"value"`
	ActiveLow bool   `yaml:"active-low"`

	path string
	env  drivers.Env
}

func init() {
	drivers.Register(drivers.Info{
		Name:    "gpio",
		Summary: "Power through a GPIO line's sysfs value file.",
		Schema: schema.Object("A GPIO line switching the board's supply.", schema.Obj{
			"value":      schema.NonEmpty("The line's value file; relative to the inventory's directory."),
			"active-low": schema.WithDefault(schema.Obj{"type": "boolean", "description": "0 switches the supply on."}, false),
		}, "value"),
		New: func() drivers.Device { return &gpio{} },
	})
}

// The interfaces it implements, checked by the compiler.
var (
	_ drivers.Power       = (*gpio)(nil)
	_ drivers.PowerStater = (*gpio)(nil)
)

// Capabilities is the one statement of what the configured device serves.
func (g *gpio) Capabilities() []drivers.Capability {
	return []drivers.Capability{drivers.CapPower}
}

// Open resolves the configuration against the board's environment; it
// does not switch anything.
func (g *gpio) Open(ctx context.Context, env drivers.Env) error {
	g.env, g.path = env, g.Value
	if !filepath.IsAbs(g.path) {
		g.path = filepath.Join(env.BaseDir, g.path)
	}
	return nil
}

func (g *gpio) Close() error { return nil }

func (g *gpio) On(ctx context.Context) error  { return g.set(!g.ActiveLow) }
func (g *gpio) Off(ctx context.Context) error { return g.set(g.ActiveLow) }

func (g *gpio) set(high bool) error {
	v := map[bool]string{false: "0\n", true: "1\n"}[high]
	if err := os.WriteFile(g.path, []byte(v), 0o644); err != nil {
		// A driver's errors are infrastructure errors (exit status 3).
		return drivers.Errorf("gpio", "switch", "%v", err)
	}
	g.env.Logf("gpio: %s <- %s", g.Value, strings.TrimSpace(v))
	return nil
}

func (g *gpio) PowerState(ctx context.Context) (bool, error) {
	b, err := os.ReadFile(g.path)
	if err != nil {
		return false, drivers.Errorf("gpio", "power state", "%v", err)
	}
	return (strings.TrimSpace(string(b)) == "1") != g.ActiveLow, nil
}

// A driver registered by an imported package is part of the inventory
// format: the loader validates a board's configuration of it against its
// schema (with a typo reported at its line and column), decodes it and
// assigns it the capabilities it serves; a run opens the device and
// switches it.
func Example_driver() {
	dir, _ := os.MkdirTemp("", "gpio")
	defer os.RemoveAll(dir)

	typo := "apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n" +
		"  - name: bench-1\n    drivers:\n      gpio: {valu: gpio17}\n"
	l := engine.NewLoader(engine.Options{})
	l.LoadBoardsBytes("boards.yaml", []byte(typo), &engine.Inventory{})
	for _, d := range l.Diagnostics() {
		fmt.Println(d.Error())
	}

	good := "apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n" +
		"  - name: bench-1\n    drivers:\n      gpio: {value: gpio17, active-low: true}\n"
	inv := &engine.Inventory{}
	l = engine.NewLoader(engine.Options{})
	l.LoadBoardsBytes(filepath.Join(dir, "boards.yaml"), []byte(good), inv)
	b := inv.Lookup("bench-1")
	fmt.Println("bench-1 serves:", b.Capabilities(), "errors:", len(l.Diagnostics()))

	ctx := context.Background()
	board, err := engine.OpenBoard(ctx, b, drivers.Env{Board: "bench-1", StateDir: dir,
		Log: func(format string, args ...any) { fmt.Printf(format+"\n", args...) }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer board.Close()
	p, _ := board.Power()
	if err := p.On(ctx); err != nil {
		fmt.Println(err)
	}
	on, _ := p.(drivers.PowerStater).PowerState(ctx)
	value, _ := os.ReadFile(filepath.Join(dir, "gpio17"))
	fmt.Printf("powered: %v, value file: %q\n", on, value)
	// Output:
	// boards.yaml:6:7: missing required key "value" (at boards[0].drivers.gpio)
	// boards.yaml:6:14: unknown key "valu" (at boards[0].drivers.gpio.valu); did you mean "value"?
	// bench-1 serves: [power] errors: 0
	// gpio: gpio17 <- 0
	// powered: true, value file: "0\n"
}
