// Package relay is a lab's own power driver, compiled into a custom jsplan
// (see ../README.md): one channel of a relay card whose channels are the
// characters of a control file, '1' closed (the board powered) and '0'
// open, the way a sysfs GPIO or a USB relay card's character device is
// driven. It registers as "relay" and serves power, with the power state.
//
//	drivers:
//	  relay: {channel: 3}                   # the card file in the board's state directory
//	  relay: {file: /run/relay0, channel: 3}
//
// Several boards may share a card, each on its own channel: a switch
// reads, changes and writes the file under an exclusive lock (flock), so
// two runs never lose each other's channels.
package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/schema"
)

// Name is the driver's registry name: its key under a board's drivers:.
const Name = "relay"

// Channels is the number of channels of the card.
const Channels = 8

// DefaultSettle is how long a switch waits for the contacts to settle.
const DefaultSettle = 20 * time.Millisecond

func init() {
	drivers.Register(drivers.Info{
		Name:    Name,
		Summary: "Power through one channel of the lab's relay card, driven through its control file.",
		Schema: schema.Object("One channel of a relay card.", schema.Obj{
			"file": schema.NonEmpty("The card's control file; relative to the inventory's directory. Default: card in the board's state directory."),
			"channel": schema.Obj{"type": "integer", "minimum": 1, "maximum": Channels,
				"description": fmt.Sprintf("The channel the board's supply is wired to, 1 to %d.", Channels)},
			"settle": schema.Duration("Pause after a switch while the contacts settle.", DefaultSettle),
		}, "channel"),
		New: func() drivers.Device { return &Device{} },
	})
}

// Device is a configured relay channel. Its exported fields are the
// configuration, decoded strictly from the inventory.
type Device struct {
	File    string        `yaml:"file"`
	Channel int           `yaml:"channel"`
	Settle  time.Duration `yaml:"settle"`

	path string
	env  drivers.Env
}

var (
	_ drivers.Power       = (*Device)(nil)
	_ drivers.PowerStater = (*Device)(nil)
	_ drivers.Defaulter   = (*Device)(nil)
	_ drivers.Validator   = (*Device)(nil)
)

// SetDefaults fills in the settle time (the schema declares the same
// default).
func (d *Device) SetDefaults() {
	if d.Settle == 0 {
		d.Settle = DefaultSettle
	}
}

// Validate checks what the schema cannot: nothing touches the card.
func (d *Device) Validate() error {
	if d.Settle > time.Second {
		return drivers.ErrField("settle", "%s is too long for a relay", d.Settle).WithDetail("at most 1s").Err()
	}
	return nil
}

// Capabilities: a relay channel switches power, whatever its configuration.
func (d *Device) Capabilities() []drivers.Capability {
	return []drivers.Capability{drivers.CapPower}
}

// Open resolves the card's file; the card itself is touched on the first
// switch (a card left as it was keeps its state).
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	d.env = env
	switch {
	case d.File == "":
		d.path = filepath.Join(env.StateDir, "card")
	case filepath.IsAbs(d.File):
		d.path = d.File
	default:
		d.path = filepath.Join(env.BaseDir, d.File)
	}
	return nil
}

// Close has nothing to release: the channel keeps its state, as a relay does.
func (d *Device) Close() error { return nil }

// On closes the channel.
func (d *Device) On(ctx context.Context) error { return d.set(ctx, '1') }

// Off opens the channel.
func (d *Device) Off(ctx context.Context) error { return d.set(ctx, '0') }

// PowerState reads the channel.
func (d *Device) PowerState(ctx context.Context) (bool, error) {
	var on bool
	err := d.card(false, func(state []byte) {
		on = state[d.Channel-1] == '1'
	})
	if err != nil {
		return false, drivers.Errorf(Name, "power state", "%v", err)
	}
	return on, nil
}

func (d *Device) set(ctx context.Context, v byte) error {
	err := d.card(true, func(state []byte) {
		state[d.Channel-1] = v
	})
	if err != nil {
		return drivers.Errorf(Name, "switch", "%v", err)
	}
	word := map[byte]string{'0': "off", '1': "on"}[v]
	d.env.Logf("relay: channel %d %s (%s)", d.Channel, word, d.path)
	select {
	case <-time.After(d.Settle):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// card runs fn on the card's channels under a lock, exclusive to write
// them back afterwards, shared to only read them. A missing or short file
// reads as every channel open.
func (d *Device) card(write bool, fn func(state []byte)) error {
	if d.path == "" {
		return fmt.Errorf("the device is not open")
	}
	flag, lock := os.O_RDONLY, syscall.LOCK_SH
	if write {
		flag, lock = os.O_RDWR|os.O_CREATE, syscall.LOCK_EX
	}
	f, err := os.OpenFile(d.path, flag, 0o644)
	if os.IsNotExist(err) && !write {
		fn(bytes.Repeat([]byte{'0'}, Channels))
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), lock); err != nil {
		return fmt.Errorf("lock %s: %w", d.path, err)
	}
	state := make([]byte, Channels)
	n, err := io.ReadFull(f, state)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	for i := n; i < Channels; i++ {
		state[i] = '0'
	}
	if i := bytes.IndexFunc(state, func(r rune) bool { return r != '0' && r != '1' }); i >= 0 {
		return fmt.Errorf("%s: channel %d reads %q, want 0 or 1", d.path, i+1, state[i])
	}
	fn(state)
	if !write {
		return nil
	}
	if _, err := f.WriteAt(append(state, '\n'), 0); err != nil {
		return err
	}
	return f.Sync()
}
