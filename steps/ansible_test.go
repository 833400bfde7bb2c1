package steps

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/drivers"
)

// Outputs of ansible-core 2.14 (default callback, no color) for failed runs;
// the failure summary names the task, the host and the task's message.
func TestAnsibleFailures(t *testing.T) {
	recap := "\nPLAY RECAP *********************************************************************\n" +
		"b1                         : ok=0    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0   \n"
	tests := []struct {
		name string
		out  string
		want []string
	}{
		{"fail module",
			"\nPLAY [all] ****\n\nTASK [check the board] ****\n" +
				`fatal: [sim-1]: FAILED! => {"changed": false, "msg": "board check failed: fan stuck at 0 rpm"}` + "\n" + recap,
			[]string{`task "check the board" failed on sim-1: board check failed: fan stuck at 0 rpm`}},
		{"command status and stderr",
			"TASK [run a command] ****\n" +
				`fatal: [b1]: FAILED! => {"changed": true, "cmd": "exit 3", "msg": "non-zero return code", "rc": 3, "stderr": "warming up\ndisk /dev/sdz not found", "stdout": "to-out"}` + "\n" + recap,
			[]string{`task "run a command" failed on b1: non-zero return code (status 3): disk /dev/sdz not found`}},
		{"loop item",
			"TASK [loop over things] ****\nchanged: [b1] => (item=a)\n" +
				`failed: [b1] (item=b) => {"ansible_loop_var": "item", "changed": true, "cmd": "test b != b", "item": "b", "msg": "non-zero return code", "rc": 1, "stderr": ""}` + "\n" + recap,
			[]string{`task "loop over things" failed on b1 (item b): non-zero return code (status 1)`}},
		{"unreachable",
			"TASK [run a command] ****\n[WARNING]: Unhandled error in Python interpreter discovery for host b1: Failed\nto connect\n" +
				`fatal: [b1]: UNREACHABLE! => {"changed": false, "msg": "Data could not be sent to remote host \"127.0.0.1\". Make sure this host can be reached over ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n", "unreachable": true}` + "\n" + recap,
			[]string{`b1 is unreachable (task "run a command"): Data could not be sent to remote host "127.0.0.1". Make sure this host can be reached over ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused`}},
		{"verbose result over several lines",
			"TASK [run a command] ****\nfatal: [b1]: FAILED! => {\n    \"changed\": true,\n    \"invocation\": {\n        \"module_args\": {}\n    },\n" +
				"    \"msg\": \"non-zero return code\",\n    \"rc\": 3,\n    \"stderr\": \"disk /dev/sdz not found\"\n}\n" + recap,
			[]string{`task "run a command" failed on b1: non-zero return code (status 3): disk /dev/sdz not found`}},
		{"ansible error",
			"ERROR! couldn't resolve module/action 'ansible.builtin.nosuchmodule'. This often indicates a misspelling.\n\nThe error appears to be in '/tmp/f3.yml': line 4, column 7\n",
			[]string{"couldn't resolve module/action 'ansible.builtin.nosuchmodule'. This often indicates a misspelling."}},
		{"result that is not JSON",
			"TASK [t] ****\nfatal: [b1]: FAILED! => some   text\n",
			[]string{`task "t" failed on b1: some text`}},
		{"no failure lines", "PLAY RECAP ****\nb1 : ok=1\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ansibleFailures(tt.out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ansibleFailures =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}

	// Many failing hosts: three are enough for a summary line.
	var many strings.Builder
	many.WriteString("TASK [t] ****\n")
	for _, h := range []string{"a", "b", "c", "d", "e"} {
		many.WriteString("fatal: [" + h + `]: FAILED! => {"msg": "no"}` + "\n")
	}
	if got := ansibleFailures(many.String()); len(got) != 3 {
		t.Errorf("%d failures reported, want 3: %q", len(got), got)
	}
	// A huge message is cut.
	long := "TASK [t] ****\nfatal: [b1]: FAILED! => {\"msg\": \"" + strings.Repeat("é", 1000) + "\"}\n"
	if got := ansibleFailures(long); len(got) != 1 || len([]rune(got[0])) > 450 || !strings.HasSuffix(got[0], "...") {
		t.Errorf("long message not cut: %d runes", len([]rune(got[0])))
	}
}

// The inventory survives names and paths that the INI format breaks on.
func TestAnsibleInventory(t *testing.T) {
	ep := drivers.Endpoint{Host: "127.0.0.1", Port: 2222, User: "ci user", KeyFile: "/keys/my key=1"}
	var inv map[string]map[string]map[string]map[string]any
	if err := json.Unmarshal(inventory("duts", "board #1", ep), &inv); err != nil {
		t.Fatalf("inventory is not JSON/YAML: %v", err)
	}
	host := inv["duts"]["hosts"]["board #1"]
	want := map[string]any{"ansible_host": "127.0.0.1", "ansible_port": float64(2222), "ansible_user": "ci user",
		"ansible_ssh_private_key_file": "/keys/my key=1"}
	if !reflect.DeepEqual(host, want) {
		t.Errorf("host vars = %v, want %v", host, want)
	}
}

// ssh options are quoted for ansible's shell-like split.
func TestAnsibleSSHArgs(t *testing.T) {
	got := ansibleSSHArgs(drivers.Endpoint{KeyFile: "k", Options: []string{"ProxyCommand=nc %h %p", "ServerAliveInterval=5"}})
	want := `-o 'ControlMaster=no' -o 'UserKnownHostsFile=/dev/null' -o 'StrictHostKeyChecking=no' -o 'IdentitiesOnly=yes' ` +
		`-o 'ProxyCommand=nc %h %p' -o 'ServerAliveInterval=5'`
	if got != want {
		t.Errorf("ansibleSSHArgs =\n%s\nwant\n%s", got, want)
	}
}
