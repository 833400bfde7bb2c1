package remote

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/internal/sshdtest"
)

// The board's SSH endpoint through the agent: a listener on 127.0.0.1
// here whose connections the agent forwards to the board; the key the
// agent's inventory names reaches ssh -i as a private file.
func TestNetworkThroughAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd")
	}
	srv := sshdtest.Start(t)
	a := startAgent(t, fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    drivers:
      sim:
        password: sim-password
        ssh: {port: %d, user: %s, key-file: %s, options: [StrictHostKeyChecking=no, UserKnownHostsFile=/dev/null]}
`, srv.Port, srv.User, srv.KeyFile), func(o *Options) { o.TTL = 2 * time.Second })
	d := a.open(t, "sim-1", nil)
	ctx := ctxT(t)
	ep, err := d.Endpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Host != "127.0.0.1" || ep.Port == srv.Port || ep.User != srv.User {
		t.Fatalf("endpoint %+v: want a local forward, not the board's own port %d", ep, srv.Port)
	}
	if fi, err := os.Stat(ep.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v", ep.KeyFile, fi, err)
	}
	ssh := func() (string, error) {
		args := []string{"-p", strconv.Itoa(ep.Port), "-i", ep.KeyFile, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
			"-o", "LogLevel=ERROR", "-o", "ControlMaster=no", "-o", "ControlPath=none"}
		for _, o := range ep.Options {
			args = append(args, "-o", o)
		}
		args = append(args, ep.User+"@"+ep.Host, "head -c 300000 /dev/zero | wc -c; echo tunnel-ok")
		out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
		return string(out), err
	}
	for range 2 { // two connections through one forward
		out, err := ssh()
		if err != nil || !strings.Contains(out, "300000") || !strings.Contains(out, "tunnel-ok") {
			t.Fatalf("ssh through the agent: %v\n%s", err, out)
		}
	}
	// the forward lives with the lease: a client that lost it (killed,
	// cut off) forwards nothing, and its token opens no tunnel
	token := d.LeaseToken()
	d.abandon()
	a.log.waitLog(t, "expired")
	if out, err := ssh(); err == nil {
		t.Fatalf("ssh after the lease ended: %s", out)
	}
	d2 := &Device{Address: "unix:" + a.sock, Board: "sim-1"}
	t.Setenv(TokenEnv, token)
	if err := d2.Open(ctx, envFor(t, nil)); err == nil {
		d2.Close()
		t.Fatal("an expired token opened the board")
	}
}
