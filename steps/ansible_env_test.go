package steps

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/drivers"
)

// envValue is the value the child process sees: the last one, as os/exec
// keeps it.
func envValue(t *testing.T, env []string, key string) (string, bool) {
	t.Helper()
	cmd := exec.Command("true")
	cmd.Env = env
	for _, kv := range cmd.Environ() {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestAnsibleEnv(t *testing.T) {
	ep := drivers.Endpoint{Host: "127.0.0.1", Port: 2222, Options: []string{"ProxyJump=lab-gw", "KexAlgorithms=+diffie-hellman-group1-sha1", "SetEnv=A='b c'"}}

	env := ansibleEnv([]string{"PATH=/bin", "ANSIBLE_NOCOLOR=0"}, ep, "/tmp/x", "/art", nil)
	ssh, _ := envValue(t, env, "ANSIBLE_SSH_ARGS")
	for _, want := range []string{"-o ControlMaster=no", "-o 'ProxyJump=lab-gw'", "-o 'KexAlgorithms=+diffie-hellman-group1-sha1'", `-o 'SetEnv=A='\''b c'\'''`} {
		if !strings.Contains(ssh, want) {
			t.Errorf("ANSIBLE_SSH_ARGS %q lacks %q", ssh, want)
		}
	}
	for k, want := range map[string]string{"ANSIBLE_PIPELINING": "True", "ANSIBLE_NOCOLOR": "1", "PATH": "/bin",
		"JUNIT_OUTPUT_DIR": "/art/ansible-junit", "ANSIBLE_LOCAL_TEMP": "/tmp/x/local"} {
		if v, _ := envValue(t, env, k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}

	// The caller's environment and the step's env decide pipelining.
	env = ansibleEnv([]string{"ANSIBLE_PIPELINING=False"}, ep, "/tmp/x", "", nil)
	if v, _ := envValue(t, env, "ANSIBLE_PIPELINING"); v != "False" {
		t.Errorf("ANSIBLE_PIPELINING from the environment: %q, want False", v)
	}
	if _, ok := envValue(t, env, "JUNIT_OUTPUT_DIR"); ok {
		t.Error("JUNIT_OUTPUT_DIR set without an artifacts dir")
	}
	env = ansibleEnv(nil, ep, "/tmp/x", "", map[string]string{"ANSIBLE_PIPELINING": "False", "ANSIBLE_NOCOLOR": "0"})
	for k, want := range map[string]string{"ANSIBLE_PIPELINING": "False", "ANSIBLE_NOCOLOR": "0"} {
		if v, _ := envValue(t, env, k); v != want {
			t.Errorf("step env %s = %q, want %q", k, v, want)
		}
	}
}
