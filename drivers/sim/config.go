//go:build linux

package sim

import (
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/schema"
)

// Defaults of the configuration.
const (
	DefaultHostname  = "sim"
	DefaultUsername  = "root"
	DefaultPassword  = "jsplan"
	DefaultBootDelay = 20 * time.Millisecond
	DefaultSSHHost   = "127.0.0.1"
	DefaultSSHPort   = 22
)

// SSH is the SSH endpoint of a sim board: an SSH server on the loopback
// interface that stands in for the board's network.
type SSH struct {
	Host    string   `yaml:"host"`
	Port    int      `yaml:"port"`
	User    string   `yaml:"user"`
	KeyFile string   `yaml:"key-file"`
	Options []string `yaml:"options"`
}

// Faults are failures the simulated board can be told to show.
type Faults struct {
	// BootHang stops the boot log before the login prompt.
	BootHang bool `yaml:"boot-hang"`
	// KernelPanic makes the boot end in a kernel panic.
	KernelPanic bool `yaml:"kernel-panic"`
	// LoginRefused makes every login fail.
	LoginRefused bool `yaml:"login-refused"`
	// PowerFail makes Power On fail with a *drivers.Error.
	PowerFail bool `yaml:"power-fail"`
	// ConsoleDropAfter (a Go duration) closes the console this long after
	// power on, as a USB serial adapter that dies.
	ConsoleDropAfter cfg.Duration `yaml:"console-drop-after"`
}

// schema is the JSON Schema (draft 2020-12) of the configuration.
func configSchema() map[string]any {
	str := schema.String
	boolean := func(desc string) map[string]any { return schema.Described(schema.Obj{"type": "boolean"}, desc) }
	return map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"title":                "sim driver configuration",
		"description":          "A virtual board that runs inside jsplan: boot log, login prompt and a real shell on a pty console, a disk file as storage.",
		"type":                 "object",
		"additionalProperties": false,
		"properties": map[string]any{
			"hostname":   str(`Host name shown in the boot log and login prompt (default "sim").`),
			"username":   str(`User name the login prompt accepts (default "root").`),
			"password":   str(`Password the login prompt accepts (default "jsplan"); masked in all output.`),
			"prompt":     str(`Shell prompt (PS1) after login (default "<username>@<hostname>:~# ").`),
			"boot-delay": schema.Duration(`Pause between boot log lines, a Go duration such as "20ms" (default "20ms"; "0s" for none).`, 0),
			"ssh": map[string]any{
				"type":                 "object",
				"description":          "SSH endpoint that stands in for the board's network; without it the board has no network capability.",
				"additionalProperties": false,
				"properties": map[string]any{
					"host":     str(`Loopback address of the SSH server (default "127.0.0.1"); other addresses are rejected.`),
					"port":     map[string]any{"type": "integer", "minimum": 1, "maximum": 65535, "description": "TCP port of the SSH server (default 22)."},
					"user":     str("SSH user (default: the login username)."),
					"key-file": str("Private key file for SSH, relative to the inventory file's directory."),
					"options": map[string]any{
						"type":        "array",
						"items":       map[string]any{"type": "string"},
						"description": "Extra ssh -o options, e.g. StrictHostKeyChecking=no.",
					},
				},
			},
			"share": map[string]any{
				"type":        "array",
				"items":       map[string]any{"type": "string"},
				"description": "Host directories bound read-write at the same path in the board's file system, whose / is otherwise the board's own; a relative path is relative to the inventory, and a missing directory is created. The board also reaches it as /mnt/BASENAME. Boards that share one see the same files: a simulated bus.",
			},
			"faults": map[string]any{
				"type":                 "object",
				"description":          "Failures the simulated board shows, to test how plans and the engine handle them.",
				"additionalProperties": false,
				"properties": map[string]any{
					"boot-hang":          boolean("The boot log stops before the login prompt."),
					"kernel-panic":       boolean("The boot ends in 'Kernel panic - not syncing: VFS: Unable to mount root fs'."),
					"login-refused":      boolean("Every login attempt fails with 'Login incorrect'."),
					"power-fail":         boolean("Power on fails with an infrastructure error."),
					"console-drop-after": schema.Duration(`Go duration after power on at which the console stream is closed by the board, as a dying USB serial adapter; reopening it then fails.`, 0),
				},
			},
		},
	}
}

// setDefaults fills in unset configuration values.
func (d *Device) setDefaults() {
	if d.Hostname == "" {
		d.Hostname = DefaultHostname
	}
	if d.Username == "" {
		d.Username = DefaultUsername
	}
	if d.Password == "" {
		d.Password = DefaultPassword
	}
	if d.Prompt == "" {
		d.Prompt = d.Username + "@" + d.Hostname + ":~# "
	}
	if d.SSH != nil {
		if d.SSH.Host == "" {
			d.SSH.Host = DefaultSSHHost
		}
		if d.SSH.Port == 0 {
			d.SSH.Port = DefaultSSHPort
		}
		if d.SSH.User == "" {
			d.SSH.User = d.Username
		}
	}
}

// Validate checks the configuration: durations, names and the SSH host. It
// does not touch the board's state.
func (d *Device) Validate() error {
	d.setDefaults()
	var errs *drivers.FieldError
	errs = errs.Also(checkName("hostname", d.Hostname), checkName("username", d.Username))
	if strings.ContainsAny(d.Password, "\r\n") {
		// Never print the password itself.
		errs = errs.Also(drivers.ErrField("password", "must not contain line breaks"))
	}
	for i, p := range d.Share {
		if c := filepath.Clean(p); p == "" || strings.ContainsRune(p, filepath.ListSeparator) || c == "/" || c == "." {
			errs = errs.Also(drivers.ErrField("", "%q must be a directory other than / and . and without %q", p, filepath.ListSeparator).ViaFieldIndex("share", i))
		}
	}
	if s := d.SSH; s != nil {
		var se *drivers.FieldError
		ip := net.ParseIP(s.Host)
		if ip == nil || !ip.IsLoopback() {
			se = se.Also(drivers.ErrField("host", "%q is not a loopback address (a sim board is only reachable on this machine, e.g. 127.0.0.1)", s.Host))
		}
		if s.Port < 1 || s.Port > 65535 {
			se = se.Also(drivers.ErrField("port", "%d is out of range 1-65535", s.Port))
		}
		errs = errs.Also(se.Also(checkName("user", s.User)).ViaField("ssh"))
	}
	return errs.Err()
}

// checkName rejects names that cannot be typed at a login prompt.
func checkName(field, v string) *drivers.FieldError {
	if v == "" || len(v) > 64 {
		return drivers.ErrField(field, "must be 1 to 64 characters long")
	}
	for _, r := range v {
		if r <= ' ' || r >= 0x7f {
			return drivers.ErrField(field, "%q must be printable ASCII without spaces", v)
		}
	}
	return nil
}
