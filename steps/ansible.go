package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// ansibleAction runs ansible-playbook against the board over SSH.
type ansibleAction struct {
	Playbook  string            `yaml:"playbook"`
	ExtraVars map[string]any    `yaml:"extra-vars,omitempty"`
	Tags      []string          `yaml:"tags,omitempty"`
	SkipTags  []string          `yaml:"skip-tags,omitempty"`
	Limit     string            `yaml:"limit,omitempty"`
	Group     string            `yaml:"group,omitempty"`
	Verbosity int               `yaml:"verbosity,omitempty"`
	Env       map[string]string `yaml:"env,omitempty"`
}

func init() {
	engine.Register(engine.StepType{
		Name:    "ansible",
		Summary: "Run an ansible playbook against the board over SSH (inventory written from the board's network).",
		Schema: shortOr(obj{"type": "string"}, object(obj{
			"playbook":   str("Path of the playbook, relative to the plan."),
			"extra-vars": obj{"type": "object", "description": "Variables passed with --extra-vars (as JSON)."},
			"tags":       obj{"type": "array", "items": obj{"type": "string"}, "description": "Only run tasks with these tags."},
			"skip-tags":  obj{"type": "array", "items": obj{"type": "string"}},
			"limit":      str("Limit to hosts matching this pattern."),
			"group":      str("Inventory group of the board (default board)."),
			"verbosity":  obj{"type": "integer", "minimum": 0, "maximum": 4, "description": "Number of -v flags."},
			"env":        described(ref("stringMap"), "Extra environment for ansible-playbook."),
		}, "playbook")),
		Needs:          []drivers.Capability{drivers.CapNetwork},
		DefaultTimeout: time.Hour,
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &ansibleAction{}
			if !scalarOr(dc, n, &a.Playbook, a) {
				return nil
			}
			a.Playbook = dc.LocalPath(a.Playbook)
			if a.Group == "" {
				a.Group = "board"
			}
			if dc.Mode() == engine.ModeRun && !dc.Pending(a.Playbook) {
				if _, err := os.Stat(a.Playbook); err != nil {
					node := n
					if c := dc.Child(n, "playbook"); c != nil {
						node = c
					}
					dc.Errorf(node, "playbook", "playbook %s: %s", a.Playbook, cleanErr(err))
					return nil
				}
			}
			return a
		},
	})
}

// inventory is the INI inventory for the board.
func inventory(group, board string, ep drivers.Endpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n%s ansible_host=%s ansible_port=%d", group, board, ep.Host, ep.Port)
	if ep.User != "" {
		fmt.Fprintf(&b, " ansible_user=%s", ep.User)
	}
	if ep.KeyFile != "" {
		fmt.Fprintf(&b, " ansible_ssh_private_key_file=%s", ep.KeyFile)
	}
	b.WriteString("\n")
	return b.String()
}

// ansibleEnv is the environment of ansible-playbook: base (the process's
// environment), then jsplan's settings, then the step's env, which wins.
func ansibleEnv(base []string, ep drivers.Endpoint, tmp, artifacts string, stepEnv map[string]string) []string {
	sshArgs := "-o ControlMaster=no -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"
	// The endpoint's own options (a jump host, an algorithm an old board
	// needs) apply as they do for collect over ssh.
	for _, o := range ep.Options {
		sshArgs += " -o " + shellQuote(o)
	}
	env := append(slices.Clip(base),
		"ANSIBLE_HOST_KEY_CHECKING=False",
		"ANSIBLE_SSH_ARGS="+sshArgs,
		"ANSIBLE_RETRY_FILES_ENABLED=False",
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(tmp, "local"),
		"ANSIBLE_CALLBACKS_ENABLED=junit",
	)
	// Pipelining sends each module on ssh's stdin: one connection per task
	// instead of four or more, and no sftp or scp, which small boards
	// (dropbear) lack. A playbook whose become needs a tty turns it off
	// with env: {ANSIBLE_PIPELINING: "False"}.
	if !hasEnv(base, "ANSIBLE_PIPELINING") {
		env = append(env, "ANSIBLE_PIPELINING=True")
	}
	if artifacts != "" {
		env = append(env, "JUNIT_OUTPUT_DIR="+filepath.Join(artifacts, "ansible-junit"))
	}
	for _, k := range slices.Sorted(maps.Keys(stepEnv)) {
		env = append(env, k+"="+stepEnv[k])
	}
	return env
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

func (a *ansibleAction) Run(ctx context.Context, r *engine.Run) error {
	nw, err := r.Board().Network()
	if err != nil {
		return err
	}
	ep, err := nw.Endpoint(ctx)
	if err != nil {
		return infra(err)
	}
	if ep.Password != "" {
		r.Secret(ep.Password)
	}
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		return diag.Infraf("ansible-playbook is not installed on this host")
	}
	tmp, err := os.MkdirTemp("", "jsplan-ansible-")
	if err != nil {
		return diag.Infraf("%v", err)
	}
	defer os.RemoveAll(tmp)
	inv := filepath.Join(tmp, "inventory.ini")
	if err := os.WriteFile(inv, []byte(inventory(a.Group, r.Board().Spec.Name, ep)), 0o600); err != nil {
		return diag.Infraf("%v", err)
	}
	args := []string{"-i", inv, a.Playbook}
	if len(a.ExtraVars) > 0 {
		vars, _ := json.Marshal(a.ExtraVars)
		vf := filepath.Join(tmp, "extra-vars.json")
		if err := os.WriteFile(vf, vars, 0o600); err != nil {
			return diag.Infraf("%v", err)
		}
		args = append(args, "--extra-vars", "@"+vf)
	}
	if len(a.Tags) > 0 {
		args = append(args, "--tags", strings.Join(a.Tags, ","))
	}
	if len(a.SkipTags) > 0 {
		args = append(args, "--skip-tags", strings.Join(a.SkipTags, ","))
	}
	if a.Limit != "" {
		args = append(args, "--limit", a.Limit)
	}
	if a.Verbosity > 0 {
		args = append(args, "-"+strings.Repeat("v", a.Verbosity))
	}
	cmd := exec.Command("ansible-playbook", args...)
	cmd.Env = ansibleEnv(os.Environ(), ep, tmp, r.Artifacts(), a.Env)
	cmd.Dir = filepath.Dir(a.Playbook)
	out, code, err := runCommand(ctx, r, cmd)
	if r.Artifacts() != "" {
		_ = os.WriteFile(filepath.Join(r.Artifacts(), "ansible-"+filepath.Base(a.Playbook)+".log"), []byte(r.Redact(out)), 0o644)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return diag.Failf("ansible-playbook exited with status %d%s", code, lastLines(r.Redact(out), 4))
	}
	return nil
}
