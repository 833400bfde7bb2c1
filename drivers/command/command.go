// Package command is a power driver that runs configured host commands:
// a smart plug's CLI, a USB hub's port switch (uhubctl, ykushcmd), a relay
// board script, ipmitool. It registers as "command" and provides power; it
// also resets, cycles and reports the power state when those commands are
// configured.
//
// Each command is either a list of arguments, run directly, or a string,
// run with `sh -c`. It runs in the inventory's directory (or `dir`), with
// JSPLAN_BOARD set to the board's name, in its own process group, and is
// killed with its whole group when `timeout` (default 30 s) passes.
//
//	drivers:
//	  command:
//	    on:  [uhubctl, -l, "1-1", -p, "2", -a, "on"]
//	    off: [uhubctl, -l, "1-1", -p, "2", -a, "off"]
//	    status: "uhubctl -l 1-1 -p 2 | grep -q power && echo on || echo off"
//	    timeout: 10s
package command

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/internal/runcmd"
	"github.com/jsplan/jsplan/schema"
)

// Name is the driver's registry name.
const Name = "command"

func init() {
	drivers.Register(drivers.Info{
		Name:    Name,
		Summary: "Power through host commands (smart plug, USB hub port, relay script), with optional reset, cycle and status commands.",
		Schema:  configSchema(),
		New:     func() drivers.Device { return &Device{} },
	})
}

func configSchema() map[string]any {
	return schema.Object("Power a board by running host commands.", map[string]any{
		"on":      runcmd.Schema("Command that switches the board's power on."),
		"off":     runcmd.Schema("Command that switches the board's power off."),
		"cycle":   runcmd.Schema("Optional native power-cycle command. Without it a cycle is off, the step's delay, on."),
		"reset":   runcmd.Schema("Optional command that resets the board without removing power. Without it a reset is a power cycle with a 2 s pause."),
		"status":  runcmd.Schema("Optional command that prints the power state; the last word of its output decides: on, 1, true, yes, or off, 0, false, no."),
		"timeout": schema.Duration("Time each command may take; after it the command's process group is killed.", runcmd.DefaultTimeout),
		"dir":     schema.NonEmpty("Working directory of the commands; relative to the inventory file's directory. Default: that directory."),
		"env": map[string]any{
			"type":                 "object",
			"description":          "Extra environment variables for the commands.",
			"additionalProperties": map[string]any{"type": "string"},
			"propertyNames":        map[string]any{"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
		},
	}, "on", "off")
}

// Device is a configured command power switch.
type Device struct {
	OnCmd     runcmd.Command    `yaml:"on"`
	OffCmd    runcmd.Command    `yaml:"off"`
	CycleCmd  runcmd.Command    `yaml:"cycle"`
	ResetCmd  runcmd.Command    `yaml:"reset"`
	StatusCmd runcmd.Command    `yaml:"status"`
	Timeout   cfg.Duration      `yaml:"timeout"`
	Dir       string            `yaml:"dir"`
	Env       map[string]string `yaml:"env"`

	env drivers.Env
}

var (
	_ drivers.Power       = (*Device)(nil)
	_ drivers.Cycler      = (*Device)(nil)
	_ drivers.Resetter    = (*Device)(nil)
	_ drivers.PowerStater = (*Device)(nil)
	_ drivers.Validator   = (*Device)(nil)
)

// ResetPause is the pause between off and on when Reset has no command.
const ResetPause = 2 * time.Second

// Validate checks the configuration without running anything.
func (d *Device) Validate() error {
	var errs *drivers.FieldError
	for _, c := range []struct {
		key string
		cmd runcmd.Command
		req bool
	}{{"on", d.OnCmd, true}, {"off", d.OffCmd, true}, {"cycle", d.CycleCmd, false}, {"reset", d.ResetCmd, false}, {"status", d.StatusCmd, false}} {
		if c.cmd.IsZero() {
			if c.req {
				errs = errs.Also(drivers.ErrField(c.key, "a command is required"))
			}
			continue
		}
		errs = errs.Also(c.cmd.Validate().ViaField(c.key))
	}
	if d.Timeout != 0 && d.Timeout.D() < time.Millisecond {
		errs = errs.Also(drivers.ErrField("timeout", "%s is too short", d.Timeout).WithDetail("at least 1ms"))
	}
	for _, k := range slices.Sorted(maps.Keys(d.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			errs = errs.Also(drivers.ErrField(k, "bad variable name %q", k).
				WithDetail("a name has no \"=\" and is not empty").ViaField("env"))
		}
	}
	return errs.Err()
}

// Capabilities: the device serves power, whatever its configuration.
func (d *Device) Capabilities() []drivers.Capability {
	return []drivers.Capability{drivers.CapPower}
}

// Open remembers the board's environment; it runs nothing.
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	d.env = env
	return nil
}

// Close does nothing: the commands leave no state behind.
func (d *Device) Close() error { return nil }

// On runs the on command.
func (d *Device) On(ctx context.Context) error { return d.run(ctx, "on", d.OnCmd) }

// Off runs the off command.
func (d *Device) Off(ctx context.Context) error { return d.run(ctx, "off", d.OffCmd) }

// Cycle runs the cycle command, or without one: off, a pause of delay, on.
func (d *Device) Cycle(ctx context.Context, delay time.Duration) error {
	if !d.CycleCmd.IsZero() {
		return d.run(ctx, "cycle", d.CycleCmd)
	}
	return d.offPauseOn(ctx, "cycle", delay)
}

// Reset runs the reset command, or without one power-cycles the board with
// a pause of ResetPause (the engine's own fallback for boards that cannot
// reset).
func (d *Device) Reset(ctx context.Context) error {
	if !d.ResetCmd.IsZero() {
		return d.run(ctx, "reset", d.ResetCmd)
	}
	return d.offPauseOn(ctx, "reset", ResetPause)
}

// PowerState runs the status command and reads the last word it prints.
// Without a status command it returns an error wrapping
// errors.ErrUnsupported.
func (d *Device) PowerState(ctx context.Context) (bool, error) {
	if d.StatusCmd.IsZero() {
		return false, &drivers.Error{Driver: Name, Op: "status", Err: fmt.Errorf("no status command configured: %w", errors.ErrUnsupported)}
	}
	res, err := d.exec(ctx, d.StatusCmd)
	if err != nil {
		return false, drivers.Errorf(Name, "status", "%w", err)
	}
	on, err := parseState(res.Stdout)
	if err != nil {
		return false, drivers.Errorf(Name, "status", "%w", err)
	}
	return on, nil
}

// parseState reads the power state from the last word of out.
func parseState(out string) (bool, error) {
	words := strings.Fields(out)
	if len(words) == 0 {
		return false, errors.New("status command printed nothing; it must print on or off")
	}
	switch w := strings.ToLower(strings.Trim(words[len(words)-1], ".!\"'")); w {
	case "on", "1", "true", "yes":
		return true, nil
	case "off", "0", "false", "no":
		return false, nil
	}
	s := strings.TrimSpace(out)
	if len(s) > 200 {
		s = "..." + s[len(s)-200:]
	}
	return false, fmt.Errorf("cannot read a power state from the status output %q: its last word must be on or off", s)
}

func (d *Device) offPauseOn(ctx context.Context, op string, pause time.Duration) error {
	if err := d.run(ctx, op+": off", d.OffCmd); err != nil {
		return err
	}
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return drivers.Errorf(Name, op, "interrupted while the board was off: %w", ctx.Err())
	case <-t.C:
	}
	return d.run(ctx, op+": on", d.OnCmd)
}

func (d *Device) run(ctx context.Context, op string, c runcmd.Command) error {
	if c.IsZero() {
		return drivers.Errorf(Name, op, "no command configured")
	}
	res, err := d.exec(ctx, c)
	if err != nil {
		return drivers.Errorf(Name, op, "%w", err)
	}
	if out := strings.TrimSpace(res.Stdout); out != "" {
		d.env.Logf("command: %s: %s", op, lastLine(out))
	}
	return nil
}

func (d *Device) exec(ctx context.Context, c runcmd.Command) (runcmd.Result, error) {
	dir := d.Dir
	if dir == "" {
		dir = d.env.BaseDir
	} else if !filepath.IsAbs(dir) && d.env.BaseDir != "" {
		dir = filepath.Join(d.env.BaseDir, dir)
	}
	env := []string{"JSPLAN_BOARD=" + d.env.Board}
	for _, k := range slices.Sorted(maps.Keys(d.Env)) {
		env = append(env, k+"="+d.Env[k])
	}
	return runcmd.Run(ctx, c, runcmd.Options{Dir: dir, Env: env, Timeout: d.Timeout.Or(runcmd.DefaultTimeout)})
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// SetDefaults fills in the defaults the schema declares.
func (d *Device) SetDefaults() {
	if d.Timeout == 0 {
		d.Timeout = cfg.Duration(runcmd.DefaultTimeout)
	}
}
