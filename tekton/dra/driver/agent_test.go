package driver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
)

// startAccess starts the driver as n.start does, with the given access.
func (n *node) startAccess(ctx context.Context, access Access) *Driver {
	n.t.Helper()
	d, err := Start(ctx, Config{NodeName: n.name, Inventory: n.inv, StateDir: n.state, CDIDir: n.cdi,
		LockDir: n.locks, Host: Host{Root: n.root}, PollInterval: 50 * time.Millisecond, KubeClient: n.client, Access: access},
		kubeletplugin.RegistrarDirectoryPath(n.reg), kubeletplugin.PluginDataDirectoryPath(n.plugins))
	if err != nil {
		n.t.Fatal(err)
	}
	return d
}

const agentPlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: through-the-agent
board: {name: sim-1}
steps:
  - power: on
  - wait-for-login: {username: root, password: demo-password}
  - run: {command: 'echo through-the-$((1+1))-agent', expect-output: through-the-2-agent}
finally:
  - power: off
`

// runThroughLease runs agentPlan as the pod would, on the claim's run
// inventory, with the container's /run/jsplan at the claim's lease
// directory on this host.
func runThroughLease(t *testing.T, jsplan string, d *Driver, uid string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(d.claimDir(typesUID(uid)), "boards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inv := strings.ReplaceAll(string(raw), ContainerLeaseDir+"/", d.leaseDir(typesUID(uid))+"/")
	if err := os.WriteFile(filepath.Join(dir, "boards.yaml"), []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(agentPlan), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(jsplan, "apply", "plan.yaml", "--boards", "boards.yaml", "--artifacts", "out")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "JSPLAN_LOCK_DIR="+filepath.Join(dir, "locks"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAgentAccess: with --access=agent a claim's pod gets no device node
// and no lock directory, only its lease directory (the claim's agent
// socket and a token per board) and an inventory whose board is a remote
// board on that socket; a plan runs through it as the pod would, the
// agent holding the board's node lock; a driver restart serves the claim
// again under a new token; unprepare ends the lease and frees the board.
func TestAgentAccess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	jsplan := buildJsplan(t)
	d := n.startAccess(ctx, AccessAgent)

	c := allocatedClaim("run", n.name, "sim-1", false, nil)
	devs, err := prepareOne(t, d, c)
	if err != nil {
		t.Fatal(err)
	}
	spec := injectCDI(t, n.cdi, devs[0].CDIDeviceIDs)
	if len(spec.Linux.Devices) != 0 {
		t.Errorf("an agent-access container got device nodes: %+v", spec.Linux.Devices)
	}
	var mounts []string
	for _, m := range spec.Mounts {
		mounts = append(mounts, m.Source+"->"+m.Destination)
	}
	if want := d.leaseDir(c.UID) + "->" + ContainerLeaseDir; !slices.Contains(mounts, want) || len(mounts) != 2 {
		t.Errorf("mounts %v, want the inventory and %s", mounts, want)
	}
	for _, e := range spec.Process.Env {
		if strings.HasPrefix(e, "JSPLAN_LOCK_DIR=") {
			t.Errorf("an agent-access container got %s", e)
		}
	}
	runInv, err := LoadInventory(filepath.Join(d.claimDir(c.UID), "boards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b := runInv.Lookup("sim-1")
	if b == nil || !slices.Equal(b.DriverNames(), []string{"remote"}) || b.Serve["power"] != "remote" || b.Serve["console"] != "remote" {
		t.Fatalf("run inventory board: %+v", b)
	}
	if h := n.boardHolder("sim-1"); !strings.Contains(h, "ResourceClaim ci/run") {
		t.Errorf("sim-1 held by %q on the node, want the claim's lease", h)
	}
	tok1, _ := os.ReadFile(filepath.Join(d.leaseDir(c.UID), tokenFile("sim-1")))
	// No pod user known: any user in the container may connect (the
	// token admits the calls) and read the token.
	for f, want := range map[string]os.FileMode{agentSocket: 0o666, tokenFile("sim-1"): 0o444, "": 0o755} {
		fi, err := os.Stat(filepath.Join(d.leaseDir(c.UID), f))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("lease directory %q: %v %v, want mode %v", f, fi.Mode(), err, want)
		}
	}

	if out, err := runThroughLease(t, jsplan, d, string(c.UID)); err != nil {
		t.Fatalf("plan through the claim's agent: %v\n%s", err, out)
	}

	// A driver restart ends its agents; the new driver serves the claim
	// again, under a new token.
	d.Stop()
	d = n.startAccess(ctx, AccessAgent)
	defer d.Stop()
	waitFor(t, func() bool {
		tok2, _ := os.ReadFile(filepath.Join(d.leaseDir(c.UID), tokenFile("sim-1")))
		return len(tok2) > 0 && string(tok2) != string(tok1)
	})
	if out, err := runThroughLease(t, jsplan, d, string(c.UID)); err != nil {
		t.Fatalf("plan through the restarted driver's agent: %v\n%s", err, out)
	}

	if err := unprepareOne(t, d, c.UID); err != nil {
		t.Fatal(err)
	}
	if h := n.boardHolder("sim-1"); h != "" {
		t.Errorf("sim-1 still held by %q after unprepare", h)
	}
	if _, err := os.Stat(d.leaseDir(c.UID)); !os.IsNotExist(err) {
		t.Errorf("lease directory left: %v", err)
	}
}

func typesUID(s string) types.UID { return types.UID(s) }

// TestLeaseFileModes: the socket is writable by whoever may read the pods'
// files (connecting needs write permission).
func TestLeaseFileModes(t *testing.T) {
	u, g := int64(1000), int64(2000)
	for _, tc := range []struct {
		o          podOwner
		file, sock os.FileMode
	}{
		{podOwner{}, 0o444, 0o666},
		{podOwner{uid: &u}, 0o400, 0o600},
		{podOwner{gid: &g}, 0o440, 0o660},
		{podOwner{uid: &u, gid: &g}, 0o440, 0o660},
	} {
		if f, s := tc.o.fileMode(), tc.o.socketMode(); f != tc.file || s != tc.sock {
			t.Errorf("%+v: file %v socket %v, want %v %v", tc.o, f, s, tc.file, tc.sock)
		}
	}
}
