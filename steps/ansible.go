package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/shell"
	"github.com/jsplan/jsplan/internal/artifact"
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
		Config:  ansibleAction{},
		Summary: "Run an ansible playbook against the board over SSH (inventory written from the board's network).",
		Schema: shortOr(obj{"type": "string"}, object(obj{
			"playbook":   str("Path of the playbook, relative to the plan."),
			"extra-vars": obj{"type": "object", "description": "Variables passed with --extra-vars; their strings are never templated by ansible (tagged !unsafe): they reach the playbook as written."},
			"tags":       obj{"type": "array", "items": obj{"type": "string"}, "description": "Only run tasks with these tags."},
			"skip-tags":  obj{"type": "array", "items": obj{"type": "string"}},
			"limit":      str("Limit to hosts matching this pattern."),
			"group":      str("Inventory group of the board (default board)."),
			"verbosity":  obj{"type": "integer", "minimum": 0, "maximum": 4, "description": "Number of -v flags."},
			"env":        described(ref("stringMap"), "Extra environment for ansible-playbook."),
		}, "playbook")),
		Needs:          []drivers.Capability{drivers.CapNetwork},
		DefaultTimeout: time.Hour,
		HostCode:       []string{"", "playbook"},
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &ansibleAction{}
			if !scalarOr(dc, n, &a.Playbook, a) {
				return nil
			}
			a.Playbook = dc.LocalPath(a.Playbook)
			if a.Group == "" {
				a.Group = "board"
			}
			if !dc.CheckFile(n, "playbook", a.Playbook) {
				return nil
			}
			return a
		},
	})
}

// inventory is the board's inventory in ansible's YAML format (written as
// JSON, which is YAML): unlike INI, it takes any character in names,
// paths and user names.
func inventory(group, board string, ep drivers.Endpoint) []byte {
	host := map[string]any{"ansible_host": ep.Host, "ansible_port": ep.Port}
	if ep.User != "" {
		host["ansible_user"] = ep.User
	}
	if ep.KeyFile != "" {
		host["ansible_ssh_private_key_file"] = ep.KeyFile
	}
	inv := map[string]any{group: map[string]any{"hosts": map[string]any{board: host}}}
	b, _ := json.MarshalIndent(inv, "", "  ")
	return append(b, '\n')
}

// ansibleSSHArgs are the ssh options ansible uses for the board: no host
// key store, no connection sharing (no master process outlives the step),
// only the board's key, and the endpoint's own options. Ansible splits the
// value like a shell, so each option is quoted.
func ansibleSSHArgs(ep drivers.Endpoint) string {
	opts := []string{"ControlMaster=no", "UserKnownHostsFile=/dev/null", "StrictHostKeyChecking=no"}
	if ep.KeyFile != "" {
		opts = append(opts, "IdentitiesOnly=yes")
	}
	opts = append(opts, ep.Options...)
	var b strings.Builder
	for i, o := range opts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("-o " + shell.Quote(o))
	}
	return b.String()
}

func (a *ansibleAction) Run(ctx context.Context, r *engine.StepRun) error {
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
	inv := filepath.Join(tmp, "inventory.yml")
	if err := os.WriteFile(inv, inventory(a.Group, r.Board().Spec.Name, ep), 0o600); err != nil {
		return diag.Infraf("%v", err)
	}
	args := []string{"-i", inv, a.Playbook}
	if len(a.ExtraVars) > 0 {
		vars, err := unsafeVars(a.ExtraVars)
		if err != nil {
			return diag.Infraf("extra-vars: %v", err)
		}
		vf := filepath.Join(tmp, "extra-vars.yml")
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
	env := append(os.Environ(),
		"ANSIBLE_HOST_KEY_CHECKING=False",
		"ANSIBLE_SSH_ARGS="+ansibleSSHArgs(ep),
		// Modules go to the board's python over stdin: one SSH connection
		// per task instead of about four (mkdir, put, run, clean up).
		// env: {ANSIBLE_PIPELINING: "False"} turns it off.
		"ANSIBLE_PIPELINING=True",
		"ANSIBLE_RETRY_FILES_ENABLED=False",
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(tmp, "local"),
		"ANSIBLE_CALLBACKS_ENABLED=junit",
	)
	// The junit callback writes task results (module output, messages)
	// as they are: it writes into the temporary directory, and the reports
	// reach the artifacts with secrets masked.
	junitTmp := filepath.Join(tmp, "junit")
	env = append(env, "JUNIT_OUTPUT_DIR="+junitTmp)
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	cmd.Dir = filepath.Dir(a.Playbook)
	out, code, err := runCommand(ctx, r, cmd)
	if r.Artifacts() != "" {
		_ = artifact.WriteFile(r.Artifacts(), "ansible-"+filepath.Base(a.Playbook)+".log", []byte(r.Redactor().String(out)))
		if err := copyRedacted(r, junitTmp, r.Artifacts(), "ansible-junit"); err != nil {
			r.Logf("ansible junit reports: %v", err)
		}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		out = r.Redactor().String(out)
		// Status 4: a host was unreachable. The board's network could not
		// be reached, as for collect over ssh: an infrastructure error
		// (exit 3), not a test failure.
		fail := diag.Failf
		hint := ""
		if code == 4 {
			fail = diag.Infraf
			hint = unreachableHint(ep)
		}
		if f := ansibleFailures(out); len(f) > 0 {
			return fail("ansible-playbook exited with status %d: %s%s", code, strings.Join(f, "; "), hint)
		}
		return fail("ansible-playbook exited with status %d%s%s", code, lastLines(out, 4), hint)
	}
	return nil
}

// unsafeVars writes extra vars as a YAML vars file in which every string is
// tagged !unsafe: ansible then never templates a plan's value with Jinja on
// the host ("{{ lookup('pipe', ...) }}" in a value stays text), and the
// value reaches the playbook as it is.
func unsafeVars(vars map[string]any) ([]byte, error) {
	n, err := unsafeNode(vars)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(n)
}

func unsafeNode(v any) (*yaml.Node, error) {
	switch x := v.(type) {
	case map[string]any:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			vn, err := unsafeNode(x[k])
			if err != nil {
				return nil, err
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k, Style: yaml.DoubleQuotedStyle}, vn)
		}
		return m, nil
	case []any:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for _, e := range x {
			en, err := unsafeNode(e)
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, en)
		}
		return s, nil
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!unsafe", Value: x, Style: yaml.DoubleQuotedStyle}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	// numbers, booleans, timestamps: as YAML writes them; anything that
	// comes out a string is unsafe too
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!str" || n.Tag == "") {
		n.Tag, n.Style = "!unsafe", yaml.DoubleQuotedStyle
	}
	return n, nil
}

// ansibleResultRE matches the default callback's line for a failed or
// unreachable host: fatal: [host]: FAILED! => {...}, or failed: [host]
// (item=x) => {...} inside a loop.
var ansibleResultRE = regexp.MustCompile(`^(?:fatal|failed): \[([^\]]+)\](?: \(item=(.*?)\))?(?:: (FAILED|UNREACHABLE)!)? => (.*)$`)

// ansibleFailures explains a failed run from ansible's output: which task
// failed on which host and the task's message, or ansible's ERROR! line.
// At most three entries.
func ansibleFailures(out string) []string {
	var res []string
	lines := strings.Split(out, "\n")
	task := ""
	for i := 0; i < len(lines) && len(res) < 3; i++ {
		l := strings.TrimRight(lines[i], " \r")
		if t, ok := strings.CutPrefix(l, "TASK ["); ok {
			if j := strings.LastIndex(t, "]"); j >= 0 {
				task = t[:j]
			}
			continue
		}
		if e, ok := strings.CutPrefix(l, "ERROR! "); ok {
			res = append(res, e)
			continue
		}
		m := ansibleResultRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		host, item, kind, payload := m[1], m[2], m[3], m[4]
		// With verbose results the JSON spans lines up to a lone "}".
		if payload == "{" {
			var b strings.Builder
			b.WriteString(payload)
			for i+1 < len(lines) {
				i++
				b.WriteString("\n" + lines[i])
				if strings.TrimRight(lines[i], " \r") == "}" {
					break
				}
			}
			payload = b.String()
		}
		msg := ansibleMessage(payload)
		where := fmt.Sprintf("task %q failed on %s", task, host)
		if item != "" {
			where += " (item " + item + ")"
		}
		if kind == "UNREACHABLE" {
			where = fmt.Sprintf("%s is unreachable (task %q)", host, task)
		}
		res = append(res, where+": "+msg)
	}
	return res
}

// ansibleMessage is the useful part of a task result: its msg, and for a
// failed command its status and last line of stderr.
func ansibleMessage(payload string) string {
	var v map[string]any
	if err := json.Unmarshal([]byte(payload), &v); err != nil {
		v = map[string]any{"msg": payload}
	}
	msg, _ := v["msg"].(string)
	if msg == "" && v["msg"] != nil {
		b, _ := json.Marshal(v["msg"])
		msg = string(b)
	}
	if rc, ok := v["rc"].(float64); ok && rc != 0 {
		msg = strings.TrimSuffix(fmt.Sprintf("%s (status %d)", msg, int(rc)), " ")
		if se, _ := v["stderr"].(string); strings.TrimSpace(se) != "" {
			se = strings.TrimSpace(se)
			se = se[strings.LastIndex(se, "\n")+1:]
			msg += ": " + se
		}
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if msg == "" {
		msg = "no message"
	}
	if r := []rune(msg); len(r) > 400 {
		msg = string(r[:400]) + "..."
	}
	return msg
}

// copyRedacted copies the files of directory src into dst with secrets
// masked, into the directory dst of the artifacts art. A missing src is not
// an error (ansible wrote no report).
func copyRedacted(r *engine.StepRun, src, art, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	root, err := artifact.OpenRoot(art)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := artifact.WriteFileIn(root, filepath.Join(dst, e.Name()), []byte(r.Redactor().String(string(data)))); err != nil {
			return err
		}
	}
	return nil
}

// Title implements engine.Titler.
func (a *ansibleAction) Title() string { return filepath.Base(a.Playbook) }

// unreachableHint says what to look at when the board did not answer SSH:
// most often an image without an SSH server, or without the key.
func unreachableHint(ep drivers.Endpoint) string {
	key := "the inventory's key-file"
	if ep.KeyFile != "" {
		key = ep.KeyFile
	}
	return fmt.Sprintf("\nhint: nothing answered SSH as %s on %s:%d. Does the board's image run an SSH server that accepts %s? "+
		"(plans/images/build-image.sh OUT --ssh, or --python for ansible, with IMAGE_AUTHORIZED_KEYS=%s.pub; "+
		"the console log shows whether dropbear or sshd started)", ep.User, ep.Host, ep.Port, key, strings.TrimSuffix(key, ".pub"))
}
