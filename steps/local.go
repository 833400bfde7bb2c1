package steps

import (
	"bufio"
	"context"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/internal/procguard"
	"github.com/jsplan/jsplan/internal/results"
)

// localAction runs a command on the host. Values reach it through
// environment variables: references are never pasted into the command.
type localAction struct {
	Command      any               `yaml:"command"`
	Env          map[string]string `yaml:"env,omitempty"`
	Dir          string            `yaml:"dir,omitempty"`
	ExpectOutput string            `yaml:"expect-output,omitempty"`
	Results      any               `yaml:"results,omitempty"`
	results      *resultsSpec
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
			"results":       resultsSchema("The command's output (standard output and error)"),
		}, "command")),
		Verbatim: []string{"", "command"},
		// A host command that hangs must not hold the board for the
		// plan's whole timeout (or forever without one).
		DefaultTimeout: 30 * time.Minute,
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
			var ok bool
			if a.results, ok = decodeResults(dc, n); !ok {
				return nil
			}
			a.Dir = dc.LocalPath(a.Dir)
			a.planDir = dc.LocalPath(".")
			return a
		},
	})
}

func (a *localAction) Run(ctx context.Context, r *engine.StepRun) error {
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
	for _, k := range slices.Sorted(maps.Keys(a.Env)) {
		env = append(env, k+"="+a.Env[k])
	}
	cmd.Env = env
	var parser results.Parser
	if a.results != nil {
		parser = a.results.parser()
	}
	out, code, err := runCommandTo(ctx, r, cmd, parser)
	var verdict *results.Verdict
	var testErr error
	if parser != nil {
		verdict, testErr = a.results.judge(r, parser.Close())
	}
	if err != nil {
		return err
	}
	// A test runner's non-zero status that reports failing cases is judged
	// by the cases.
	if code != 0 && !(verdict != nil && verdict.Fail+verdict.Error > 0) {
		return diag.Failf("%s exited with status %d%s", a.argv[0], code, lastLines(r.Redactor().String(out), 3))
	}
	if a.expect.Re != nil && !a.expect.Re.MatchString(out) {
		return diag.Failf("output does not match %q%s", a.expect.Source, lastLines(r.Redactor().String(out), 3))
	}
	return testErr
}

// waitDelay is how long runCommand waits, once the command has exited and
// its process group is killed, for its output pipe to close: a process that
// left the group may hold it open.
const waitDelay = 2 * time.Second

// runCommand runs cmd in its own process group, streams its output lines to
// the run log, and kills the whole group when ctx ends. It returns the
// combined output (bounded) and the exit status. The step ends when the
// command exits: a background process it left holding the output does not
// keep the step waiting (it is killed with the group). If jsplan dies,
// procguard kills the group.
// maxLocalLine is the longest output line logged whole; longer ones are
// logged in pieces of this size.
const maxLocalLine = 64 << 10

func runCommand(ctx context.Context, r *engine.StepRun, cmd *exec.Cmd) (string, int, error) {
	return runCommandTo(ctx, r, cmd, nil)
}

// runCommandTo is runCommand that also writes each output line to stream
// (nil: nowhere) as the command prints it.
func runCommandTo(ctx context.Context, r *engine.StepRun, cmd *exec.Cmd, stream io.Writer) (string, int, error) {
	cmd.SysProcAttr = procguard.SysProcAttr(false)
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", -1, diag.Infraf("cannot start %s: %v", cmd.Path, err)
	}
	// An *os.File: the command writes to the pipe itself, and Wait returns
	// when it exits, not when every holder of the pipe has closed it.
	cmd.Stdout, cmd.Stderr = pw, pw
	tag := procguard.Tag(cmd)
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return "", -1, diag.Infraf("cannot start %s: %v", cmd.Path, err)
	}
	pid := cmd.Process.Pid
	_ = procguard.Watch(pid)
	defer procguard.Forget(pid)
	var out strings.Builder
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		// A line longer than the buffer is logged in pieces of its size:
		// nothing a command prints stops the reading.
		br := bufio.NewReaderSize(pr, maxLocalLine)
		lines := newLineLog(r, "| ")
		defer lines.Close()
		for {
			raw, err := br.ReadSlice('\n')
			if len(raw) == 0 && err != nil {
				break
			}
			line := strings.TrimSuffix(string(raw), "\n")
			lines.Line(line)
			if stream != nil {
				_, _ = io.WriteString(stream, line+"\n")
			}
			// The output's last MiB: the step's output shows its end.
			out.WriteString(line)
			out.WriteByte('\n')
			if out.Len() > 2<<20 {
				tail := out.String()[out.Len()-1<<20:]
				out.Reset()
				out.WriteString(tail)
			}
			if err != nil && err != bufio.ErrBufferFull {
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var cancelled bool
	select {
	case err = <-done:
	case <-ctx.Done():
		cancelled = true
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-done
		}
	}
	// Children left in the group would outlive the step; end them. Then
	// read what is left of the output, waiting a little for a process
	// outside the group that still holds the pipe.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	procguard.KillTagged(tag) // and those that left it (set -m, setsid)
	t := time.NewTimer(waitDelay)
	select {
	case <-readDone:
	case <-t.C:
		pr.Close()
		<-readDone
	}
	t.Stop()
	pr.Close()
	r.Output(out.String())
	if cancelled {
		return out.String(), -1, context.Cause(ctx)
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode(), nil
		}
		return out.String(), -1, diag.Infraf("%s: %v", cmd.Path, err)
	}
	return out.String(), 0, nil
}
