package drivers

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Capability names one thing a board can do.
type Capability string

// The capabilities a board can be composed of.
const (
	CapPower   Capability = "power"
	CapConsole Capability = "console"
	CapStorage Capability = "storage"
	CapNetwork Capability = "network"
)

// AllCapabilities lists every capability, in a fixed order.
var AllCapabilities = []Capability{CapPower, CapConsole, CapStorage, CapNetwork}

// Power switches a board's supply.
type Power interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
}

// Cycler is an optional Power extension with a native power cycle.
// Fallback: Off, a pause (the step's "delay", 2 s by default), then On.
type Cycler interface {
	Cycle(ctx context.Context, delay time.Duration) error
}

// Resetter is an optional extension that resets the board without removing
// power (a reset line, QMP system_reset). Fallback: a power cycle.
type Resetter interface {
	Reset(ctx context.Context) error
}

// PowerStater is an optional extension that reports whether the board is
// powered. Drivers that cannot tell do not implement it.
type PowerStater interface {
	PowerState(ctx context.Context) (on bool, err error)
}

// Console gives the byte stream of the board's console (a UART, a pty, a
// QEMU serial port). The engine opens it once per run and keeps a single
// reader on it. Implementations should keep the stream open across power
// cycles, as a real UART adapter does; if it ends, the engine reopens it.
type Console interface {
	OpenConsole(ctx context.Context) (io.ReadWriteCloser, error)
}

// Storage is the board's boot medium as the host sees it (an SD card behind a
// mux, a USB disk, a virtual disk file).
type Storage interface {
	// AttachHost makes the medium writable by the host and returns the path
	// of the target: a regular file or a block device.
	AttachHost(ctx context.Context) (target string, err error)
	// AttachBoard gives the medium back to the board.
	AttachBoard(ctx context.Context) error
}

// Network tells how the host reaches the board over the network, for steps
// that use SSH (ansible, collect over SSH).
type Network interface {
	Endpoint(ctx context.Context) (Endpoint, error)
}

// Endpoint is an SSH endpoint of a board.
type Endpoint struct {
	Host    string `json:"host"`
	Port    int    `json:"port"`
	User    string `json:"user,omitempty"`
	KeyFile string `json:"key_file,omitempty"`
	// Password is a secret: the engine masks it wherever it is printed.
	Password string `json:"-"`
	// Options are extra ssh -o options, e.g. StrictHostKeyChecking=no.
	Options []string `json:"options,omitempty"`
}

// Env is what a device gets when it is opened for a board.
type Env struct {
	// Board is the name of the board in the inventory.
	Board string
	// StateDir is a directory private to this board that survives runs
	// (virtual disks, simulator state). It exists when Open is called.
	StateDir string
	// BaseDir is the directory of the inventory file, for relative paths.
	BaseDir string
	// Log receives driver messages for the run log (never the console log).
	Log func(format string, args ...any)
	// Secret registers a value that must be masked in every output.
	Secret func(value string)
}

// Logf logs through e.Log when it is set.
func (e Env) Logf(format string, args ...any) {
	if e.Log != nil {
		e.Log(format, args...)
	}
}

// Device is one configured driver instance on a board. The engine creates it
// with Info.New, decodes the board's configuration into it strictly, calls
// SetDefaults and Validate (when implemented) and Capabilities, then Open
// before use and Close after the run, also when the run failed.
type Device interface {
	// Capabilities lists the capabilities this device serves with its
	// configuration, the one statement of them: a virtual board serves
	// network only when an SSH endpoint is configured, a remote board what
	// its agent's board serves. The device implements the interface of each
	// (CheckCapabilities). It is called before Open, without touching
	// hardware, also on a device with the default configuration
	// (`jsplan boards drivers` lists those).
	Capabilities() []Capability
	Open(ctx context.Context, env Env) error
	Close() error
}

// Defaulter is implemented by devices that fill in defaults after their
// configuration is decoded (before Validate). The defaults are the Go
// constants the driver's schema also declares (schema.WithDefault,
// schema.Duration), so they live in one place; a test checks they agree.
type Defaulter interface {
	SetDefaults()
}

// Validator is implemented by devices that check their configuration beyond
// the schema. It runs without touching hardware, in `jsplan validate`.
// Return a *FieldError (FieldError.Err) so each error points at its key;
// any other error is reported at the driver's block.
type Validator interface {
	Validate() error
}

// Info describes a driver for the registry.
type Info struct {
	// Name is the key used in a Boards inventory (`drivers: {sim: {...}}`).
	Name string
	// Summary is one line for `jsplan boards drivers` and the schema.
	Summary string
	// Schema is the JSON Schema (draft 2020-12) of the driver's
	// configuration object.
	Schema map[string]any
	// New returns a new, unconfigured device: a pointer to a struct the
	// configuration is decoded into.
	New func() Device
	// Discover, when set, lists devices of this driver attached to this host
	// (for `jsplan boards discover`). It must not change any device's state.
	Discover func(ctx context.Context) ([]Found, error)
}

// Found is a device seen by a driver's Discover.
type Found struct {
	// Driver is the driver name the Config is for.
	Driver string `json:"driver"`
	// ID is a stable identifier (a USB serial number, a /dev/serial/by-id name).
	ID string `json:"id"`
	// Description is a short human description.
	Description string `json:"description"`
	// Config is a configuration that opens this device, for an inventory snippet.
	Config map[string]any `json:"config"`
}

var (
	mu       sync.RWMutex
	registry = map[string]Info{}
)

// Register makes a driver available by name. It panics if the name is empty
// or taken, or New is nil, since that is a programming error.
func Register(info Info) {
	mu.Lock()
	defer mu.Unlock()
	if info.Name == "" || info.New == nil {
		panic("drivers: Register needs a Name and New")
	}
	if _, dup := registry[info.Name]; dup {
		panic("drivers: Register called twice for driver " + info.Name)
	}
	registry[info.Name] = info
}

// Lookup returns the driver registered under name.
func Lookup(name string) (Info, bool) {
	mu.RLock()
	defer mu.RUnlock()
	info, ok := registry[name]
	return info, ok
}

// Names lists the registered drivers, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckCapabilities reports the first capability dev lists (Capabilities)
// whose interface it does not implement: a driver's programming error the
// engine reports when it loads an inventory, before anything runs.
func CheckCapabilities(dev Device) error {
	for _, c := range dev.Capabilities() {
		ok := false
		switch c {
		case CapPower:
			_, ok = dev.(Power)
		case CapConsole:
			_, ok = dev.(Console)
		case CapStorage:
			_, ok = dev.(Storage)
		case CapNetwork:
			_, ok = dev.(Network)
		}
		if !ok {
			return fmt.Errorf("the device lists capability %q but does not implement its interface", c)
		}
	}
	return nil
}

// HasCapability reports whether dev lists capability c (Capabilities).
func HasCapability(dev Device, c Capability) bool {
	for _, have := range dev.Capabilities() {
		if have == c {
			return true
		}
	}
	return false
}

// Error is an infrastructure error raised by a driver: the hardware or its
// host failed, not the software under test. The engine maps it to exit
// status 3.
type Error struct {
	Driver string
	Op     string
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %v", e.Driver, e.Op, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error for driver and operation op.
func Errorf(driver, op, format string, args ...any) error {
	return &Error{Driver: driver, Op: op, Err: fmt.Errorf(format, args...)}
}
