package steps

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// localAction runs a command on the host. Values reach it through
// environment variables: references are never pasted into the command.
type localAction struct {
	Command      any               `yaml:"command"`
	Env          map[string]string `yaml:"env,omitempty"`
	Dir          string            `yaml:"dir,omitempty"`
	ExpectOutput string            `yaml:"expect-output,omitempty"`
	argv         []string
	expect       engine.Pattern
	planDir      string
}

func init() {
	engine.Register(engine.StepType{
		Name:    "local",
		Config:  localAction{},
		Summary: "Run a command on the host: a shell script (sh -c) or an argv list; plan values reach it through env.",
		Schema: shortOr(obj{"type": "string"}, object(obj{
			"command": described(ref("stringList"),
				"A script for sh -c, or an argv list run without a shell. References are not expanded here: pass values through env."),
			"env":           described(ref("stringMap"), "Environment variables for the command; values may use references."),
			"dir":           str("Working directory (default: the plan's directory)."),
			"expect-output": str("A regex the output must match."),
		}, "command")),
		Verbatim: []string{"", "command"},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &localAction{}
			var script string
			if n.Kind == yaml.ScalarNode {
				script = n.Value
			} else if !dc.Decode(n, a) {
				return nil
			}
			cmdNode := n
			if n.Kind == yaml.MappingNode {
				cmdNode = dc.Child(n, "command")
				switch c := a.Command.(type) {
				case string:
					script = c
				default:
					a.argv = stringList(c)
				}
			}
			for _, s := range append([]string{script}, a.argv...) {
				if strings.Contains(s, "${{") {
					dc.Errorf(cmdNode, "command", "references are not expanded in local commands").
						WithDetail("pass the value through env, e.g. env: {IMAGE: ${{ params.image }}}, and use \"$IMAGE\" in the command")
					return nil
				}
			}
			if script != "" {
				a.argv = []string{"/bin/sh", "-c", script}
			}
			if len(a.argv) == 0 {
				dc.Errorf(n, "command", "empty command")
				return nil
			}
			if c := dc.Child(n, "expect-output"); c != nil {
				var ok bool
				if a.expect, ok = dc.Regexp(c, "expect-output"); !ok {
					return nil
				}
				a.expect = multiline(a.expect)
			}
			a.Dir = dc.LocalPath(a.Dir)
			a.planDir = dc.LocalPath(".")
			return a
		},
	})
}

func (a *localAction) Run(ctx context.Context, r *engine.Run) error {
	cmd := exec.Command(a.argv[0], a.argv[1:]...)
	cmd.Dir = a.Dir
	if cmd.Dir == "" {
		cmd.Dir = a.planDir
	}
	env := os.Environ()
	env = append(env, "JSPLAN_ARTIFACTS="+r.Artifacts(), "JSPLAN_PLAN_DIR="+r.Plan().Dir)
	if b := r.Board(); b != nil {
		env = append(env, "JSPLAN_BOARD="+b.Spec.Name)
	}
	keys := make([]string, 0, len(a.Env))
	for k := range a.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+a.Env[k])
	}
	cmd.Env = env
	out, code, err := runCommand(ctx, r, cmd)
	if err != nil {
		return err
	}
	if code != 0 {
		return diag.Failf("%s exited with status %d%s", a.argv[0], code, lastLines(r.Redact(out), 3))
	}
	if a.expect.Re != nil && !a.expect.Re.MatchString(out) {
		return diag.Failf("output does not match %q%s", a.expect.Source, lastLines(r.Redact(out), 3))
	}
	return nil
}

// runCommand runs cmd in its own process group, streams its output lines to
// the run log, and kills the whole group when ctx ends. It returns the
// combined output (bounded) and the exit status.
func runCommand(ctx context.Context, r *engine.Run, cmd *exec.Cmd) (string, int, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return "", -1, diag.Infraf("cannot start %s: %v", cmd.Path, err)
	}
	var out strings.Builder
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.Logf(ctx, "| %s", line)
			if out.Len() < 1<<20 {
				out.WriteString(line)
				out.WriteByte('\n')
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		wg.Wait()
		r.Output(ctx, out.String())
		return out.String(), -1, context.Cause(ctx)
	}
	wg.Wait()
	r.Output(ctx, out.String())
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode(), nil
		}
		return out.String(), -1, diag.Infraf("%s: %v", cmd.Path, err)
	}
	// Children left in the group would outlive the step; end them.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return out.String(), 0, nil
}
