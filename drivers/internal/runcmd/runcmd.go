// Package runcmd runs the external commands that drivers are configured
// with (power switches, SD muxes): an argv list or a `sh -c` string, in its
// own process group, with a timeout that kills the whole group, and errors
// that carry the exit status and the tail of stderr.
package runcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/internal/procguard"
	"github.com/jsplan/jsplan/internal/yamlerr"
)

// Command is a configured command. In YAML it is either a list of strings,
// run directly without a shell, or a single string, run with `sh -c`.
type Command struct {
	Argv  []string
	Shell string
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *Command) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" || strings.TrimSpace(n.Value) == "" {
			return yamlerr.At(n, "a command is a non-empty string (run with sh -c) or a list of arguments")
		}
		*c = Command{Shell: n.Value}
		return nil
	case yaml.SequenceNode:
		var argv []string
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return yamlerr.At(item, "command arguments must be strings")
			}
			argv = append(argv, item.Value)
		}
		if len(argv) == 0 || argv[0] == "" {
			return yamlerr.At(n, "a command list needs at least the program name")
		}
		*c = Command{Argv: argv}
		return nil
	}
	return yamlerr.At(n, "a command is a string (run with sh -c) or a list of arguments")
}

// IsZero reports whether no command is configured.
func (c Command) IsZero() bool { return len(c.Argv) == 0 && c.Shell == "" }

// Name is a short name for messages: the program's base name, or "sh -c".
// It never includes arguments, which may hold passwords.
func (c Command) Name() string {
	if len(c.Argv) > 0 {
		return filepath.Base(c.Argv[0])
	}
	return "sh -c"
}

// Validate checks the command is usable. The error's path is relative to
// the command's key ("[0]" for an empty program name).
func (c Command) Validate() *drivers.FieldError {
	if c.IsZero() {
		return drivers.ErrField("", "empty command")
	}
	if len(c.Argv) > 0 && c.Argv[0] == "" {
		return drivers.ErrField("[0]", "empty program name")
	}
	return nil
}

// Options control one run.
type Options struct {
	// Dir is the working directory (default: the current one).
	Dir string
	// Env holds extra KEY=VALUE entries added to the process environment.
	Env []string
	// Timeout bounds the run; the process group is killed when it passes.
	// Zero means 30 s.
	Timeout time.Duration
}

// DefaultTimeout is the timeout when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Result is what a finished command left.
type Result struct {
	// Stdout holds up to the first 64 KiB of standard output.
	Stdout string
	// StderrTail holds the last 2 KiB of standard error.
	StderrTail string
	// ExitCode is the exit status, or -1 when killed or not started.
	ExitCode int
}

const (
	stdoutMax = 64 << 10
	stderrMax = 2 << 10
)

// Run runs c and waits for it. It returns an error when the command cannot
// start, exits non-zero, times out or ctx ends; in the last two cases the
// command's whole process group is killed first.
func Run(ctx context.Context, c Command, opts Options) (Result, error) {
	res := Result{ExitCode: -1}
	if err := c.Validate(); err != nil {
		return res, err.Err()
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var cmd *exec.Cmd
	if len(c.Argv) > 0 {
		cmd = exec.CommandContext(rctx, c.Argv[0], c.Argv[1:]...)
	} else {
		cmd = exec.CommandContext(rctx, "/bin/sh", "-c", c.Shell)
	}
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Stdin = nil
	stdout := &headBuffer{max: stdoutMax}
	stderr := &tailBuffer{max: stderrMax}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = procguard.SysProcAttr(false)
	cmd.Cancel = func() error {
		// Kill the whole group: shells and the programs they started.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// If a process that left the group still holds our pipes open, stop
	// waiting for it shortly after the kill.
	cmd.WaitDelay = 2 * time.Second

	tag := procguard.Tag(cmd)
	err := cmd.Start()
	if err == nil {
		_ = procguard.Watch(cmd.Process.Pid)
		err = cmd.Wait()
		// Nothing of the group outlives the command, nor what left it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		procguard.KillTagged(tag)
		procguard.Forget(cmd.Process.Pid)
	}
	res.Stdout = stdout.String()
	res.StderrTail = stderr.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err == nil || (errors.Is(err, exec.ErrWaitDelay) && res.ExitCode == 0) {
		// A zero exit that left a background process holding the output
		// pipes is still a success.
		return res, nil
	}
	name := fmt.Sprintf("%q", c.Name())
	if cmd.Process == nil {
		return res, fmt.Errorf("cannot start %s: %w", name, err)
	}
	switch {
	case errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		return res, fmt.Errorf("%s did not finish within %s; its process group was killed%s", name, timeout, stderrSuffix(res.StderrTail))
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s interrupted (%v); its process group was killed", name, ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return res, fmt.Errorf("%s was killed by signal %v%s", name, ws.Signal(), stderrSuffix(res.StderrTail))
		}
		return res, fmt.Errorf("%s exited with status %d%s", name, res.ExitCode, stderrSuffix(res.StderrTail))
	}
	return res, fmt.Errorf("%s: %w%s", name, err, stderrSuffix(res.StderrTail))
}

func stderrSuffix(tail string) string {
	tail = strings.TrimSpace(tail)
	if tail == "" {
		return " (no stderr output)"
	}
	return "; stderr: " + tail
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	b   []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		h.b = append(h.b, p[:room]...)
	}
	return len(p), nil
}

func (h *headBuffer) String() string { return string(h.b) }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	b   []byte
	max int
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if t.cut {
		s := string(t.b)
		// Start at a line boundary when there is one.
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
		return "..." + s
	}
	return string(t.b)
}

// Schema is the JSON Schema of a command: an argv list run directly, or a
// string run with `sh -c`.
func Schema(description string) map[string]any {
	return map[string]any{
		"description": description + " Either a list of arguments run directly (no shell), or a string run with `sh -c`.",
		"oneOf": []any{
			map[string]any{"type": "string", "minLength": 1},
			map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "string"}},
		},
	}
}
