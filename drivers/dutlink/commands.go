package dutlink

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jsplan/jsplan/drivers"
)

// Power runs `power <action>` (on, off, force-on, force-off, rescue) and
// waits up to timeout for the firmware's confirmation.
func (c *Client) Power(ctx context.Context, action string, timeout time.Duration) error {
	replies := map[string]string{
		"on": "Device powered on", "off": "Device powered off",
		"force-on": "Device forced on", "force-off": "Device forced off",
		"rescue": "Device powered on to rescue",
	}
	want, ok := replies[action]
	if !ok {
		return drivers.Errorf(Name, "power", "unknown power action %q", action)
	}
	_, err := c.Command(ctx, "power "+action, "power "+action, want, timeout)
	return err
}

// Storage switches the storage device: "host", "dut" or "off".
func (c *Client) Storage(ctx context.Context, to string) error {
	replies := map[string]string{
		"host": "storage connected to host",
		"dut":  "storage connected to device under test",
		"off":  "storage disconnected",
	}
	want, ok := replies[to]
	if !ok {
		return drivers.Errorf(Name, "storage", "unknown storage target %q", to)
	}
	_, err := c.Command(ctx, "storage "+to, "storage "+to, want, 0)
	return err
}

// SetPin drives a control line: pin is r (reset), a, b, c or d; state is
// l (low), h (high) or z (floating). The firmware holds a high pin
// floating while the board is off and applies it at power on.
func (c *Client) SetPin(ctx context.Context, pin, state byte) error {
	pins := map[byte]string{'r': "/RESET", 'a': "CTL_A", 'b': "CTL_B", 'c': "CTL_C", 'd': "CTL_D"}
	states := map[byte]string{'l': "LOW", 'h': "HIGH", 'z': "HIGH IMPEDANCE"}
	if pins[pin] == "" || states[state] == "" {
		return drivers.Errorf(Name, "set", "bad pin %q or state %q (pins r, a-d; states l, h, z)", pin, state)
	}
	cmd := fmt.Sprintf("set %c %c", pin, state)
	_, err := c.Command(ctx, "set", cmd, "Set "+pins[pin]+" to "+states[state], 0)
	return err
}

// GetConfig returns the firmware's stored configuration.
func (c *Client) GetConfig(ctx context.Context) (map[string]string, error) {
	reply, err := c.Command(ctx, "get-config", "get-config", "name: ", 0)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(reply, "\r\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			k, ok = strings.CutSuffix(line, ":")
		}
		if ok {
			out[k] = v
		}
	}
	return out, nil
}

// GetConfigKey returns one stored configuration value.
func (c *Client) GetConfigKey(ctx context.Context, key string) (string, error) {
	if _, ok := firmwareKeys[key]; !ok {
		return "", drivers.Errorf(Name, "get-config", "unknown key %q", key)
	}
	return c.Command(ctx, "get-config", "get-config "+key, "", 0)
}

// SetConfig stores a configuration value in the firmware's flash; an
// empty value clears it.
func (c *Client) SetConfig(ctx context.Context, key, value string) error {
	if err := checkFirmwareValue(key, value); err != nil {
		return drivers.Errorf(Name, "set-config", "%s: %w", key, err)
	}
	cmd := "set-config " + key
	if value != "" {
		cmd += " " + value
	}
	_, err := c.Command(ctx, "set-config", cmd, "Set "+key+" to "+value, 0)
	return err
}

// Version returns the firmware's version line, e.g. "0.08 git-ref: 1a2b3c".
func (c *Client) Version(ctx context.Context) (string, error) {
	return c.Command(ctx, "version", "version", "", 0)
}
