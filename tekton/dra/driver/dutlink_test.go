package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/jsplan/jsplan/drivers/dutlink/dutlinktest"
)

// nobody is the user an unprivileged pod runs as here.
const nobody = 65534

// dutlinkBoard starts the DUTLink simulator with a board behind it that
// boots the image on the harness's storage mux and offers a login (root,
// demo-password), and mirrors its control port into the node's host root
// as the driver sees the node's /dev. It returns the board's inventory
// entry and the simulator.
func dutlinkBoard(t *testing.T, n *node) (string, *dutlinktest.Sim) {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "by-id", "usb-DUTLink_Storage_sim-0:0")
	if err := os.MkdirAll(filepath.Dir(disk), 0o755); err != nil {
		t.Fatal(err)
	}
	medium := filepath.Join(dir, "medium.img")
	board, err := dutlinktest.NewBoard(dutlinktest.BoardOptions{Medium: medium,
		Linux: &dutlinktest.Linux{Dir: filepath.Join(dir, "dut"), Password: "demo-password", BootDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := dutlinktest.New(dutlinktest.Options{DUT: board, DiskPath: disk, MediumPath: medium,
		MediumSize: 4 << 20, DiskDelay: 50 * time.Millisecond})
	if err != nil {
		board.Close()
		t.Fatal(err)
	}
	board.Follow(sim)
	t.Cleanup(func() {
		sim.Close()
		board.Close()
	})
	// The harness's port is a pty: on a node it would be its USB-ACM
	// device. The driver checks the node's /dev (its host root) for it.
	mirror := filepath.Join(n.root, sim.Path())
	if err := os.MkdirAll(filepath.Dir(mirror), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sim.Path(), mirror); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`  - name: dl-1
    labels: {harness: dutlink}
    vars: {image-id-file: etc/image-id}
    drivers:
      dutlink: {port: %s, disk: %s, disk-wait: 10s}
`, sim.Path(), disk), sim
}

// podTree is what the pod runs from: the sample plan and its library
// (plans/examples/dutlink-smoke.yaml, plans/lib), an image to flash, the
// claim's run inventory as the driver wrote it, all readable by nobody,
// and a directory of nobody's own for the artifacts and locks.
func podTree(t *testing.T, d *Driver, uid string, imageID string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dl-pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"boards.yaml": filepath.Join(d.claimDir(typesUID(uid)), "boards.yaml"),
		"plans/examples/dutlink-smoke.yaml": "../../../plans/examples/dutlink-smoke.yaml"}
	lib, _ := filepath.Glob("../../../plans/lib/*.yaml")
	if len(lib) == 0 {
		t.Fatal("no plans/lib")
	}
	for _, p := range lib {
		files["plans/lib/"+filepath.Base(p)] = p
	}
	for to, from := range files {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(to)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := append(bytes.Repeat([]byte{0x5a}, 1<<20), []byte("\nJSPLAN_IMAGE_ID="+imageID+"\n")...)
	if err := os.WriteFile(filepath.Join(dir, "image.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runAsPod runs jsplan as an agent-access pod does: as nobody, with no
// device node and no privilege, in a mount namespace of its own where
// /run/jsplan is the claim's lease directory (as the CDI spec mounts it),
// so the claim's run inventory is used as the driver wrote it.
func runAsPod(t *testing.T, ctx context.Context, jsplan, leaseDir, dir string, args ...string) (string, error) {
	t.Helper()
	script := `set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/jsplan
mount --bind "$1" /run/jsplan
shift
exec setpriv --reuid ` + fmt.Sprint(nobody) + ` --regid ` + fmt.Sprint(nobody) + ` --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs "$@"`
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script, "sh", leaseDir, jsplan}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + filepath.Join(dir, "work"),
		"JSPLAN_LOCK_DIR=" + filepath.Join(dir, "work", "locks"), "JSPLAN_PARAM_PASSWORD=demo-password"}
	// A mount namespace of its own (Go makes its mounts private).
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestDUTLinkSampleThroughAgent: a board behind the DUTLink simulator
// (its real protocol on a pty, a storage mux whose disk appears only while
// switched to the host) in the node's inventory with the dutlink driver is
// published healthy; a claim prepared with --access=agent gives its pod no
// device node, only the agent's socket and the board's token; the DUTLink
// sample plan (plans/examples/dutlink-smoke.yaml: flash through the storage
// mux, boot, log in, smoke test, collect logs) runs through them as an
// unprivileged process and passes; a run leaves the board on, then
// unprepare ends the lease, the agent powers the harness off and the
// board's node lock is free.
func TestDUTLinkSampleThroughAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the DUTLink sample plan on the simulator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	// The pod's user reaches nothing of the node's but its mounts.
	if err := os.Chmod(filepath.Dir(n.inv), 0o700); err != nil {
		t.Fatal(err)
	}
	entry, sim := dutlinkBoard(t, n)
	n.writeInventory(nodeInventory(entry))
	jsplan := buildJsplan(t)
	d := n.startAccess(ctx, AccessAgent)
	defer d.Stop()

	s := n.slice(ctx, func(s *resourceapi.ResourceSlice) bool {
		return slices.ContainsFunc(s.Spec.Devices, func(dev resourceapi.Device) bool { return dev.Name == DeviceName("dl-1") })
	})
	for _, dev := range s.Spec.Devices {
		if dev.Name == DeviceName("dl-1") && len(dev.Taints) > 0 {
			t.Errorf("dl-1 published with taints %+v", dev.Taints)
		}
	}

	c := allocatedClaim("dl", n.name, "dl-1", false, nil)
	devs, err := prepareOne(t, d, c)
	if err != nil {
		t.Fatal(err)
	}
	spec := injectCDI(t, n.cdi, devs[0].CDIDeviceIDs)
	if len(spec.Linux.Devices) != 0 {
		t.Errorf("an agent-access container got device nodes: %+v", spec.Linux.Devices)
	}
	runInv, err := LoadInventory(filepath.Join(d.claimDir(c.UID), "boards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if b := runInv.Lookup("dl-1"); b == nil || !slices.Equal(b.DriverNames(), []string{"remote"}) {
		t.Fatalf("run inventory board: %+v", b)
	}
	if h := n.boardHolder("dl-1"); !strings.Contains(h, "ResourceClaim ci/dl") {
		t.Errorf("dl-1 held by %q on the node, want the claim's lease", h)
	}

	dir := podTree(t, d, string(c.UID), "dl-smoke-7")
	runCtx, stop := context.WithTimeout(ctx, 3*time.Minute)
	defer stop()
	out, err := runAsPod(t, runCtx, jsplan, d.leaseDir(c.UID), dir, "apply", "plans/examples/dutlink-smoke.yaml",
		"--boards", "boards.yaml", "--artifacts", "work/out",
		"--set", "image="+filepath.Join(dir, "image.img"), "--set", "image-id=dl-smoke-7")
	if err != nil {
		t.Fatalf("the DUTLink sample through the claim's agent: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "work", "out", "report.json"))
	if err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	var rep struct {
		Status, Plan, Board string
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != "passed" || rep.Plan != "dutlink-smoke" || rep.Board != "dl-1" {
		t.Errorf("report %+v\n%s", rep, out)
	}
	// It ran as nobody: its artifacts are nobody's.
	if fi, err := os.Stat(filepath.Join(dir, "work", "out")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != nobody {
		t.Errorf("artifacts: %v, want them owned by uid %d", err, nobody)
	}
	// The board's kernel log, collected over the console, names the image
	// it booted: the one flashed through the storage mux.
	if klog, err := os.ReadFile(filepath.Join(dir, "work", "out", "logs", "tmp", "jsplan-dmesg.log")); err != nil || !strings.Contains(string(klog), "booting image dl-smoke-7") {
		t.Errorf("collected kernel log %q (%v), want the flashed image booted", klog, err)
	}
	if strings.Contains(out, "demo-password") || bytes.Contains(raw, []byte("demo-password")) {
		t.Error("the password leaked into the output or the report")
	}
	if st := sim.State(); st.Storage != "dut" {
		t.Errorf("after the run the storage is %q, want the board's (dut)", st.Storage)
	}

	// A run that leaves the board on, as a pod that dies would.
	if err := os.WriteFile(filepath.Join(dir, "on.yaml"), []byte("apiVersion: jsplan.dev/v1\nkind: Plan\nname: left-on\nsteps:\n  - power: on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runAsPod(t, runCtx, jsplan, d.leaseDir(c.UID), dir, "apply", "on.yaml", "--boards", "boards.yaml", "--artifacts", "work/out-on"); err != nil {
		t.Fatalf("power on through the claim's agent: %v\n%s", err, out)
	}
	if !sim.State().Power {
		t.Fatal("the harness is off after a run that powered it on")
	}

	if err := unprepareOne(t, d, c.UID); err != nil {
		t.Fatal(err)
	}
	if st := sim.State(); st.Power || st.On {
		t.Errorf("the harness is powered after unprepare: %+v", st)
	}
	if h := n.boardHolder("dl-1"); h != "" {
		t.Errorf("dl-1 still held by %q after unprepare", h)
	}
}
