package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/engine/shell"
	"github.com/jsplan/jsplan/internal/procguard"
)

// collectAction copies files from the board or the host into the
// artifacts directory.
type collectAction struct {
	Paths    any    `yaml:"paths"`
	From     string `yaml:"from,omitempty"`
	Via      string `yaml:"via,omitempty"`
	To       string `yaml:"to,omitempty"`
	Optional bool   `yaml:"optional,omitempty"`
	Results  any    `yaml:"results,omitempty"`
	paths    []string
	results  *resultsSpec
}

func init() {
	engine.Register(engine.StepType{
		Name:    "collect",
		Config:  collectAction{},
		Summary: "Copy files from the board (over the console or SSH) or from the host into the artifacts.",
		Schema: shortOr(ref("stringList"), object(obj{
			"paths":    described(ref("stringList"), "Files to copy; shell globs are allowed."),
			"from":     obj{"enum": []any{"board", "local"}, "description": "Where the files are (default board)."},
			"via":      obj{"enum": []any{"console", "ssh"}, "description": "How to reach the board (default console: works without a network)."},
			"to":       str("Directory inside the artifacts (default: files)."),
			"optional": described(ref("bool"), "A missing file is not an error."),
			"results":  resultsSchema("Each collected file"),
		}, "paths")),
		DefaultTimeout: 30 * time.Minute,
		// A path is typed on the board's shell (quoted, one character at
		// a time) or sent over ssh: a secret in it could not be masked.
		NoSecrets: []string{"", "paths"},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &collectAction{}
			if n.Kind == yaml.MappingNode {
				if !dc.Decode(n, a) {
					return nil
				}
			} else {
				var v any
				if !dc.Decode(n, &v) {
					return nil
				}
				a.Paths = v
			}
			a.paths = stringList(a.Paths)
			var ok bool
			if a.results, ok = decodeResults(dc, n); !ok {
				return nil
			}
			if a.From == "" {
				a.From = "board"
			}
			if a.Via == "" {
				a.Via = "console"
			}
			if a.To == "" {
				a.To = "files"
			}
			if !filepath.IsLocal(a.To) {
				dc.Errorf(dc.Child(n, "to"), "to", "%q must be a relative path inside the artifacts directory", a.To)
				return nil
			}
			if a.From == "local" {
				for i := range a.paths {
					a.paths[i] = dc.LocalPath(a.paths[i])
				}
			}
			return a
		},
	})
}

// Needs implements engine.Needer.
func (a *collectAction) Needs() []drivers.Capability {
	switch {
	case a.From == "local":
		return nil
	case a.Via == "ssh":
		return []drivers.Capability{drivers.CapNetwork}
	}
	return []drivers.Capability{drivers.CapConsole}
}

func (a *collectAction) Run(ctx context.Context, r *engine.StepRun) error {
	if r.Artifacts() == "" {
		return diag.Infraf("collect needs an artifacts directory (--artifacts)")
	}
	if err := os.MkdirAll(r.Artifacts(), 0o755); err != nil {
		return diag.Infraf("artifacts: %v", err)
	}
	root, err := os.OpenRoot(r.Artifacts())
	if err != nil {
		return diag.Infraf("artifacts: %v", err)
	}
	defer root.Close()
	// Inside the root: a symlink in the artifacts must not lead the
	// directories out of it.
	if err := root.MkdirAll(a.To, 0o755); err != nil {
		return diag.Failf("collect into %s: %v", a.To, err)
	}
	var n int
	var cases []*result.TestCase
	// Each file is parsed as it arrives: the files collected before a
	// failure still report their cases.
	onFile := func(data []byte) {
		if a.results != nil {
			p := a.results.parser()
			_, _ = p.Write(data)
			cases = append(cases, p.Close()...)
		}
	}
	switch {
	case a.From == "local":
		n, err = a.collectLocal(r, root, onFile)
	case a.Via == "ssh":
		n, err = a.collectSSH(ctx, r, root, onFile)
	default:
		n, err = a.collectConsole(ctx, r, root, onFile)
	}
	var testErr error
	if a.results != nil && (n > 0 || !a.Optional) {
		_, testErr = a.results.judge(r, cases)
	}
	if err != nil {
		return err
	}
	r.Logf("collected %d file(s) into %s", n, filepath.Join(r.Artifacts(), a.To))
	return testErr
}

// destName maps a source path to a path inside the artifacts; it refuses
// anything that would leave the directory.
func (a *collectAction) destName(src string) (string, error) {
	rel := strings.TrimLeft(path.Clean("/"+filepath.ToSlash(src)), "/")
	name := filepath.Join(a.To, filepath.FromSlash(rel))
	if !filepath.IsLocal(name) {
		return "", diag.Failf("refusing to write %q outside the artifacts directory", src)
	}
	return name, nil
}

func (a *collectAction) write(root *os.Root, src string, data []byte) error {
	name, err := a.destName(src)
	if err != nil {
		return err
	}
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return diag.Failf("collect %s: %v", src, err)
	}
	// os.Root refuses symlinks and .. that lead out of the directory.
	if err := root.WriteFile(name, data, 0o644); err != nil {
		return diag.Failf("collect %s: %v", src, err)
	}
	return nil
}

func (a *collectAction) collectLocal(r *engine.StepRun, root *os.Root, onFile func([]byte)) (int, error) {
	n := 0
	for _, p := range a.paths {
		matches, _ := filepath.Glob(p)
		if len(matches) == 0 {
			if a.Optional {
				continue
			}
			return n, diag.Failf("collect: no file matches %s", p)
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(m)
			if err != nil {
				return n, diag.Failf("collect %s: %v", m, err)
			}
			if err := a.write(root, m, r.Redactor().Bytes(data)); err != nil {
				return n, err
			}
			onFile(data)
			n++
		}
	}
	return n, nil
}

// boardGlob quotes a board path for the shell, leaving glob characters
// active.
func boardGlob(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune("*?[]", c) {
			b.WriteRune(c)
			continue
		}
		b.WriteString(shell.Quote(string(c)))
	}
	return b.String()
}

func (a *collectAction) list(ctx context.Context, r *engine.StepRun, p string) ([]string, error) {
	sh, err := r.Shell()
	if err != nil {
		return nil, err
	}
	res, err := sh.Run(ctx, fmt.Sprintf(`for f in %s; do [ -f "$f" ] && echo "$f"; done; true`, boardGlob(p)), 1<<20)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, l := range strings.Split(strings.TrimSpace(string(res.Output)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			files = append(files, l)
		}
	}
	return files, nil
}

func (a *collectAction) collectConsole(ctx context.Context, r *engine.StepRun, root *os.Root, onFile func([]byte)) (int, error) {
	n := 0
	for _, p := range a.paths {
		files, err := a.list(ctx, r, p)
		if err != nil {
			return n, err
		}
		if len(files) == 0 {
			if a.Optional {
				continue
			}
			return n, diag.Failf("collect: no file on the board matches %s", p)
		}
		for _, f := range files {
			q := shell.Quote(f)
			res, err := transfer(ctx, r, f, fmt.Sprintf("sha256sum < %s && base64 < %s", q, q))
			if err != nil {
				return n, err
			}
			if res.Code != 0 {
				return n, diag.Failf("collect %s: the board could not read it (status %d): %s", f, res.Code, strings.TrimSpace(string(res.Output)))
			}
			sumLine, b64, _ := bytes.Cut(res.Output, []byte("\n"))
			want := strings.Fields(string(sumLine))
			data, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(b64), nil)))
			if err != nil {
				return n, diag.Infraf("collect %s: corrupted transfer over the console: %v", f, err)
			}
			got := sha256.Sum256(data)
			if len(want) == 0 || !strings.EqualFold(want[0], hex.EncodeToString(got[:])) {
				return n, diag.Infraf("collect %s: checksum mismatch after the transfer over the console", f)
			}
			if err := a.write(root, f, r.Redactor().Bytes(data)); err != nil {
				return n, err
			}
			onFile(data)
			n++
		}
	}
	return n, nil
}

// transfer runs script, which prints file f in base64, out of console.log:
// the base64 decodes to whatever secret the file holds, which masking
// cannot see. The log gets a one-line note instead.
func transfer(ctx context.Context, r *engine.StepRun, f, script string) (res *shell.Result, err error) {
	resume := r.SuppressConsoleLog()
	defer func() {
		size := 0
		if res != nil {
			size = len(res.Output)
		}
		resume(fmt.Sprintf("collect %s: transferred over the console (%d bytes, not logged)", f, size))
	}()
	sh, err := r.Shell()
	if err != nil {
		return nil, err
	}
	return sh.Run(ctx, script, maxOutput)
}

// sshArgs returns ssh options for an endpoint: no prompts, no host key
// store, no connection sharing (nothing outlives the step).
func sshArgs(ep drivers.Endpoint) []string {
	args := []string{"-p", strconv.Itoa(ep.Port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ControlMaster=no", "-o", "ConnectTimeout=20"}
	if ep.KeyFile != "" {
		args = append(args, "-i", ep.KeyFile, "-o", "IdentitiesOnly=yes")
	}
	for _, o := range ep.Options {
		args = append(args, "-o", o)
	}
	return args
}

func (a *collectAction) collectSSH(ctx context.Context, r *engine.StepRun, root *os.Root, onFile func([]byte)) (int, error) {
	nw, err := r.Board().Network()
	if err != nil {
		return 0, err
	}
	ep, err := nw.Endpoint(ctx)
	if err != nil {
		return 0, infra(err)
	}
	dest := ep.Host
	if ep.User != "" {
		dest = ep.User + "@" + ep.Host
	}
	n := 0
	for _, p := range a.paths {
		out, err := sshRun(ctx, ep, dest, fmt.Sprintf(`for f in %s; do [ -f "$f" ] && echo "$f"; done; true`, boardGlob(p)))
		if err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			return n, diag.Infraf("collect over ssh: %s", r.Redactor().String(err.Error()))
		}
		// One name a line: names may contain spaces.
		var files []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSuffix(l, "\r"); l != "" {
				files = append(files, l)
			}
		}
		if len(files) == 0 && !a.Optional {
			return n, diag.Failf("collect: no file on the board matches %s", p)
		}
		for _, f := range files {
			data, err := sshRun(ctx, ep, dest, "cat "+shell.Quote(f))
			if err != nil {
				if ctx.Err() != nil {
					return n, err
				}
				return n, diag.Failf("collect %s over ssh: %s", f, r.Redactor().String(err.Error()))
			}
			if err := a.write(root, f, r.Redactor().Bytes(data)); err != nil {
				return n, err
			}
			onFile(data)
			n++
		}
	}
	return n, nil
}

// sshRun runs a shell command on the board over ssh and returns its
// standard output. A failure carries ssh's or the command's error output.
func sshRun(ctx context.Context, ep drivers.Endpoint, dest, command string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ssh", append(sshArgs(ep), dest, command)...)
	cmd.SysProcAttr = procguard.SysProcAttr(false)
	defer procguard.KillTagged(procguard.Tag(cmd))
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if msg := strings.Join(strings.Fields(stderr.String()), " "); msg != "" {
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 255 {
				return nil, fmt.Errorf("%s", msg)
			}
			return nil, fmt.Errorf("%v: %s", err, msg)
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}
