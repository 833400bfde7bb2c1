package qemu

import "github.com/jsplan/jsplan/schema"

// configSchema is the JSON Schema (draft 2020-12) of Config.
func configSchema() map[string]any {
	str := schema.NonEmpty
	return map[string]any{
		"type":                 "object",
		"title":                "qemu driver",
		"description":          "A virtual x86_64 board: QEMU booting a raw disk file. Power starts and stops QEMU, the console is its first serial port, storage is the disk file, network forwards SSH from 127.0.0.1.",
		"additionalProperties": false,
		"properties": map[string]any{
			"disk": str("Raw disk image the board boots from; what a flash step writes. Relative to the inventory file. Default: disk.img in the board's state directory."),
			"machine": map[string]any{
				"type": "string", "pattern": `^[A-Za-z0-9][A-Za-z0-9._=,-]*$`, "default": DefaultMachine,
				"description": "QEMU machine type (-machine).",
			},
			"cpu": map[string]any{
				"type": "string", "pattern": `^[A-Za-z0-9][A-Za-z0-9._=,+-]*$`, "default": DefaultCPU,
				"description": "QEMU CPU model (-cpu).",
			},
			"memory": map[string]any{
				"type": "integer", "minimum": 16, "maximum": 1 << 20, "default": DefaultMemory,
				"description": "Guest RAM in MiB.",
			},
			"accel": map[string]any{
				"enum": []any{"auto", "kvm", "tcg"}, "default": DefaultAccel,
				"description": "Accelerator: auto uses KVM when a probe guest runs under it and TCG (software emulation) otherwise; kvm fails at power-on when KVM cannot run a guest.",
			},
			"extra-args": map[string]any{
				"type": "array", "items": map[string]any{"type": "string", "minLength": 1},
				"description": "Extra arguments appended to the QEMU command line.",
			},
			"network": map[string]any{
				"type":                 "object",
				"additionalProperties": false,
				"required":             []any{"ssh-port"},
				"description":          "SSH access to the guest through QEMU user networking: a port on 127.0.0.1 is forwarded to the guest's port 22. The guest reaches nothing else.",
				"properties": map[string]any{
					"ssh-port": map[string]any{
						"type": "integer", "minimum": 1, "maximum": 65535,
						"description": "Port on 127.0.0.1 forwarded to the guest's SSH server.",
					},
					"user": map[string]any{
						"type": "string", "pattern": `^[A-Za-z_][A-Za-z0-9._-]*$`, "default": defaultSSHUser,
						"description": "SSH user.",
					},
					"key-file": str("SSH private key for the user, relative to the inventory file."),
				},
			},
			"qemu-binary": map[string]any{
				"type": "string", "minLength": 1, "default": DefaultBinary,
				"description": "The QEMU system emulator to run (a name on PATH or a path).",
			},
			"powerdown-timeout": schema.WithDefault(map[string]any{
				// "0" (no unit) also means zero here.
				"type": "string", "pattern": "^0$|" + schema.DurationPattern,
				"description": "How long powering off waits for the guest to shut down after the ACPI power button before QEMU is stopped; 0 skips the power button.",
			}, DefaultPowerdownTimeout),
		},
	}
}
