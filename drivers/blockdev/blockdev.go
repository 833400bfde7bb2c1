// Package blockdev is a storage driver for a boot medium the host reaches
// as a block device: a USB SD-card reader, an SD mux (sd-mux-ctrl, SDWire,
// usbsdmux) or a USB disk that a relay moves between host and board. It
// registers as "blockdev" and provides storage.
//
// AttachHost runs the optional host-command (the mux switch), then polls
// until `path` exists and opens, and returns it. AttachBoard flushes the
// host's write caches (sync) and runs the optional board-command. Name the
// medium by a stable /dev/disk/by-id path, never /dev/sdX, which changes
// between plug-ins.
//
//	drivers:
//	  blockdev:
//	    path: /dev/disk/by-id/usb-LinuxAut_sdmux_HS-SD_MMC_000000001234-0:0
//	    host-command: [usbsdmux, /dev/sg1, host]
//	    board-command: [usbsdmux, /dev/sg1, dut]
//
// Safety checks against writing a mounted or system disk belong to the
// flash step, not to this driver.
package blockdev

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/internal/devpath"
	"github.com/jsplan/jsplan/drivers/internal/runcmd"
	"github.com/jsplan/jsplan/schema"
)

// Name is the driver's registry name.
const Name = "blockdev"

// DefaultWait is how long AttachHost waits for the path by default.
const DefaultWait = 30 * time.Second

func init() {
	drivers.Register(drivers.Info{
		Name:    Name,
		Summary: "Boot medium reached by the host as a block device (SD reader, SD mux, USB disk), with optional mux switch commands.",
		Schema:  configSchema(),
		New:     func() drivers.Device { return &Device{} },
		Discover: func(ctx context.Context) ([]drivers.Found, error) {
			return discover("/dev/disk/by-id", "/sys/class/block")
		},
	})
}

func configSchema() map[string]any {
	return schema.Object("Boot medium reached by the host as a block device.", map[string]any{
		"path": map[string]any{
			"type":        "string",
			"pattern":     "^/",
			"description": "Absolute path of the medium as the host sees it; use a stable /dev/disk/by-id/... link.",
		},
		"host-command":  runcmd.Schema("Optional command that connects the medium to the host (e.g. an SD mux switch)."),
		"board-command": runcmd.Schema("Optional command that connects the medium to the board."),
		"wait":          schema.Duration("How long to wait for the path to appear and open after host-command.", DefaultWait),
		"timeout":       schema.Duration("Time each command may take before its process group is killed.", runcmd.DefaultTimeout),
	}, "path")
}

// Device is a configured block-device medium.
type Device struct {
	Path         string         `yaml:"path"`
	HostCommand  runcmd.Command `yaml:"host-command"`
	BoardCommand runcmd.Command `yaml:"board-command"`
	Wait         cfg.Duration   `yaml:"wait"`
	Timeout      cfg.Duration   `yaml:"timeout"`

	env drivers.Env
}

var (
	_ drivers.Storage   = (*Device)(nil)
	_ drivers.Validator = (*Device)(nil)
)

// Validate checks the configuration without touching the device.
func (d *Device) Validate() error {
	var errs *drivers.FieldError
	switch {
	case d.Path == "":
		errs = errs.Also(drivers.ErrMissingField("path").WithDetail("e.g. /dev/disk/by-id/usb-<id>"))
	case !filepath.IsAbs(d.Path):
		errs = errs.Also(drivers.ErrField("path", "%q must be absolute (e.g. /dev/disk/by-id/usb-<id>)", d.Path))
	case filepath.Clean(d.Path) != d.Path:
		errs = errs.Also(drivers.ErrField("path", "%q is not clean; write %q", d.Path, filepath.Clean(d.Path)))
	}
	for _, c := range []struct {
		key string
		cmd runcmd.Command
	}{{"host-command", d.HostCommand}, {"board-command", d.BoardCommand}} {
		if !c.cmd.IsZero() {
			errs = errs.Also(c.cmd.Validate().ViaField(c.key))
		}
	}
	if d.Wait != 0 && d.Wait.D() < time.Millisecond {
		errs = errs.Also(drivers.ErrField("wait", "%s is too short", d.Wait))
	}
	return errs.Err()
}

// Capabilities: the device serves storage, whatever its configuration.
func (d *Device) Capabilities() []drivers.Capability {
	return []drivers.Capability{drivers.CapStorage}
}

// Open remembers the board's environment; it touches nothing.
func (d *Device) Open(ctx context.Context, env drivers.Env) error {
	d.env = env
	return nil
}

// Close does nothing.
func (d *Device) Close() error { return nil }

// AttachHost switches the medium to the host and returns its path once it
// exists and opens.
func (d *Device) AttachHost(ctx context.Context) (string, error) {
	if err := d.run(ctx, "attach-host", d.HostCommand); err != nil {
		return "", err
	}
	wait := d.Wait.Or(DefaultWait)
	start := time.Now()
	if err := devpath.WaitOpenable(ctx, d.Path, wait); err != nil {
		return "", drivers.Errorf(Name, "attach-host", "%w", err)
	}
	d.env.Logf("blockdev: %s ready after %s", d.Path, time.Since(start).Round(time.Millisecond))
	return d.Path, nil
}

// AttachBoard flushes the host's caches and switches the medium to the
// board.
func (d *Device) AttachBoard(ctx context.Context) error {
	syscall.Sync()
	return d.run(ctx, "attach-board", d.BoardCommand)
}

func (d *Device) run(ctx context.Context, op string, c runcmd.Command) error {
	if c.IsZero() {
		return nil
	}
	res, err := runcmd.Run(ctx, c, runcmd.Options{
		Dir:     d.env.BaseDir,
		Env:     []string{"JSPLAN_BOARD=" + d.env.Board},
		Timeout: d.Timeout.Or(runcmd.DefaultTimeout),
	})
	if err != nil {
		return drivers.Errorf(Name, op, "%w", err)
	}
	if out := strings.TrimSpace(res.Stdout); out != "" {
		d.env.Logf("blockdev: %s: %s", op, out)
	}
	return nil
}

var partSuffix = regexp.MustCompile(`-part[0-9]+$`)

// discover lists whole USB disks in byID (usually /dev/disk/by-id), with
// their sizes read from sysBlock (usually /sys/class/block).
func discover(byID, sysBlock string) ([]drivers.Found, error) {
	entries, err := devpath.List(byID)
	if err != nil {
		return nil, drivers.Errorf(Name, "discover", "%w", err)
	}
	var found []drivers.Found
	for _, e := range entries {
		if !strings.HasPrefix(e.Name, "usb-") || partSuffix.MatchString(e.Name) || e.Target == "" {
			continue
		}
		desc := "USB disk " + filepath.Base(e.Target)
		if size := sizeOf(sysBlock, filepath.Base(e.Target)); size > 0 {
			desc += ", " + humanSize(size)
		}
		found = append(found, drivers.Found{
			Driver:      Name,
			ID:          e.Name,
			Description: desc,
			Config:      map[string]any{"path": e.Path},
		})
	}
	return found, nil
}

// sizeOf reads a block device's size in bytes from sysfs (0 if unknown).
func sizeOf(sysBlock, dev string) int64 {
	b, err := os.ReadFile(filepath.Join(sysBlock, dev, "size"))
	if err != nil {
		return 0
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return sectors * 512
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// SetDefaults fills in the defaults the schema declares.
func (d *Device) SetDefaults() {
	if d.Wait == 0 {
		d.Wait = cfg.Duration(DefaultWait)
	}
	if d.Timeout == 0 {
		d.Timeout = cfg.Duration(runcmd.DefaultTimeout)
	}
}
