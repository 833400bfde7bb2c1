package driver

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/utils/ptr"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/lock"
)

// allocatedClaim is a claim the scheduler allocated board device on the
// node, reserved for pod when pod is not nil.
func allocatedClaim(name, node, device string, admin bool, pod *v1.Pod) *resourceapi.ResourceClaim {
	c := boardClaim(name, "")
	r := resourceapi.DeviceRequestAllocationResult{Request: "board", Driver: DefaultDriverName, Pool: node, Device: device}
	if admin {
		r.AdminAccess = ptr.To(true)
	}
	c.Status.Allocation = &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{Results: []resourceapi.DeviceRequestAllocationResult{r}}}
	if pod != nil {
		c.Status.ReservedFor = []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: pod.Name, UID: pod.UID}}
	}
	return c
}

func prepareOne(t *testing.T, d *Driver, c *resourceapi.ResourceClaim) ([]kubeletplugin.Device, error) {
	t.Helper()
	res, err := d.PrepareResourceClaims(context.Background(), []*resourceapi.ResourceClaim{c})
	if err != nil {
		t.Fatal(err)
	}
	return res[c.UID].Devices, res[c.UID].Err
}

func unprepareOne(t *testing.T, d *Driver, uid types.UID) error {
	t.Helper()
	res, err := d.UnprepareResourceClaims(context.Background(), []kubeletplugin.NamespacedObject{{UID: uid}})
	if err != nil {
		t.Fatal(err)
	}
	return res[uid]
}

func (n *node) specFile(uid types.UID) string {
	return filepath.Join(n.cdi, "jsplan.dev-board_"+string(uid)+".yaml")
}

func (n *node) setBootID(id string) string {
	n.t.Helper()
	p := filepath.Join(filepath.Dir(n.inv), "boot_id")
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// startBoot starts the driver with the boot ID file of the fake node.
func (n *node) startBoot(ctx context.Context, bootIDFile string, opts ...kubeletplugin.Option) *Driver {
	n.t.Helper()
	d, err := Start(ctx, Config{NodeName: n.name, Inventory: n.inv, StateDir: n.state, CDIDir: n.cdi, BootIDFile: bootIDFile,
		LockDir: n.locks, Host: Host{Root: n.root}, PollInterval: 50 * time.Millisecond, KubeClient: n.client},
		append([]kubeletplugin.Option{kubeletplugin.RegistrarDirectoryPath(n.reg), kubeletplugin.PluginDataDirectoryPath(n.plugins)}, opts...)...)
	if err != nil {
		n.t.Fatal(err)
	}
	return d
}

// boardHolder says who holds the board's lock in the node's lock directory
// ("" when it is free), as `jsplan boards list` finds out: by trying it.
func (n *node) boardHolder(board string) string {
	n.t.Helper()
	l, h, err := lock.TryAcquire(n.locks, board, lock.Holder{Plan: "test"})
	if err != nil {
		n.t.Fatal(err)
	}
	if l != nil {
		_ = l.Release()
		return ""
	}
	if h == nil {
		return "unknown"
	}
	return h.Plan
}

// TestPrepareSurvivesLostSpecsAndReboots: a cached prepare whose CDI spec
// was removed writes it again; state.json is replaced whole and records the
// boot; at start, claims whose spec is gone or that belong to an earlier
// boot are dropped (locks, files), CDI specs of this driver that belong to
// no claim are removed and other vendors' are left alone; unprepare of an
// unknown claim is no error.
func TestPrepareSurvivesLostSpecsAndReboots(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	boot := n.setBootID("boot-1")
	d := n.startBoot(ctx, boot)
	a := allocatedClaim("a", n.name, "orin-nx-1", false, nil)
	b := allocatedClaim("b", n.name, "sim-1", false, nil)
	devA, err := prepareOne(t, d, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prepareOne(t, d, b); err != nil {
		t.Fatal(err)
	}
	st, err := readState(d.claimDir(a.UID))
	if err != nil || st.BootID != "boot-1" {
		t.Fatalf("state: %+v, %v", st, err)
	}
	if left, _ := filepath.Glob(filepath.Join(d.claimDir(a.UID), ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The spec disappears (the CDI directory was cleaned): the kubelet's
	// next prepare must not hand out a CDI ID the runtime cannot resolve.
	if err := os.Remove(n.specFile(a.UID)); err != nil {
		t.Fatal(err)
	}
	again, err := prepareOne(t, d, a)
	if err != nil || !slices.Equal(again[0].CDIDeviceIDs, devA[0].CDIDeviceIDs) {
		t.Fatalf("prepare after the spec was lost: %v %+v", err, again)
	}
	if _, err := os.Stat(n.specFile(a.UID)); err != nil {
		t.Fatalf("the CDI spec was not written again: %v", err)
	}
	injectCDI(t, n.cdi, again[0].CDIDeviceIDs)
	if h := n.boardHolder("orin-nx-1"); !strings.Contains(h, "ResourceClaim ci/a") {
		t.Errorf("after re-preparing, the board's lock is held by %q", h)
	}

	// The driver stops; b's spec goes, an orphaned spec of this driver and
	// another vendor's spec appear.
	d.Stop()
	if err := os.Remove(n.specFile(b.UID)); err != nil {
		t.Fatal(err)
	}
	spec, _ := os.ReadFile(n.specFile(a.UID))
	orphan := n.specFile("orphan-uid")
	foreign := filepath.Join(n.cdi, "vendor.example-gpu_x.yaml")
	for _, f := range []string{orphan, foreign} {
		if err := os.WriteFile(f, spec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d = n.startBoot(ctx, boot)
	if got := d.PreparedClaims(); !slices.Equal(got, []string{string(a.UID)}) {
		t.Errorf("after a restart with b's spec gone: prepared %v, want only a", got)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the orphaned spec is still there: %v", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("another vendor's spec was removed: %v", err)
	}
	if h := n.boardHolder("sim-1"); h != "" {
		t.Errorf("the stale claim's board is still held by %q", h)
	}
	if h := n.boardHolder("orin-nx-1"); !strings.Contains(h, "ResourceClaim ci/a") {
		t.Errorf("after a restart, a's board lock is held by %q, want the driver for ci/a", h)
	}
	if got := d.LockedClaims(); !slices.Equal(got, []string{string(a.UID)}) {
		t.Errorf("locked claims %v", got)
	}

	// The node reboots: the CDI spec (on a persistent disk here) outlived
	// the pods, and the claim is stale.
	d.Stop()
	boot = n.setBootID("boot-2")
	d = n.startBoot(ctx, boot)
	defer d.Stop()
	if got := d.PreparedClaims(); len(got) != 0 {
		t.Errorf("after a reboot: prepared %v", got)
	}
	if specs, _ := filepath.Glob(filepath.Join(n.cdi, "jsplan.dev-*")); len(specs) != 0 {
		t.Errorf("after a reboot: specs %v", specs)
	}
	if h := n.boardHolder("orin-nx-1"); h != "" {
		t.Errorf("after a reboot, the board is held by %q", h)
	}
	// The kubelet unprepares the claims it knew: unknown now, no error.
	if err := unprepareOne(t, d, a.UID); err != nil {
		t.Errorf("unprepare of a dropped claim: %v", err)
	}
	// And prepares again a claim whose pod restarts.
	if _, err := prepareOne(t, d, a); err != nil {
		t.Errorf("prepare after a reboot: %v", err)
	}
	// A prepare interrupted before its state was written (a crash) leaves
	// files that the next prepare replaces.
	if err := os.MkdirAll(filepath.Join(d.claimDir(b.UID), "locks"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := prepareOne(t, d, b); err != nil {
		t.Errorf("prepare over an interrupted one: %v", err)
	}
}

// TestDriverHoldsTheBoardLock: the driver takes the node's lock of a
// prepared board for its claim (a run on the node by hand sees the board
// busy, named after the claim); a board busy on the node is not prepared;
// the container gets a lock directory of its own, not the node's; a
// restarted driver takes the lock again and unprepare lets it go.
func TestDriverHoldsTheBoardLock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	boot := n.setBootID("boot-1")
	d := n.startBoot(ctx, boot)

	// Someone runs a plan on orin-nx-1 by hand.
	manual, _, err := lock.TryAcquire(n.locks, "orin-nx-1", lock.Holder{Plan: "manual.yaml", PID: os.Getpid()})
	if err != nil || manual == nil {
		t.Fatal(err)
	}
	c := allocatedClaim("run", n.name, "orin-nx-1", false, nil)
	if _, err := prepareOne(t, d, c); err == nil || !strings.Contains(err.Error(), `board orin-nx-1 is busy on the node: held by plan "manual.yaml"`) {
		t.Fatalf("prepare of a board busy on the node: %v", err)
	}
	if len(d.PreparedClaims()) != 0 {
		t.Fatalf("a refused prepare left %v", d.PreparedClaims())
	}
	_ = manual.Release()
	devs, err := prepareOne(t, d, c)
	if err != nil {
		t.Fatal(err)
	}
	if h := n.boardHolder("orin-nx-1"); h != "ResourceClaim ci/run (uid uid-run)" {
		t.Errorf("holder %q", h)
	}
	spec := injectCDI(t, n.cdi, devs[0].CDIDeviceIDs)
	var lockMount string
	for _, m := range spec.Mounts {
		if m.Destination == ContainerLockDir {
			lockMount = m.Source
		}
	}
	if lockMount != filepath.Join(d.claimDir(c.UID), "locks") {
		t.Fatalf("the container's lock directory is %q, want the claim's own", lockMount)
	}
	if fi, err := os.Stat(lockMount); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("the claim's lock directory: %v %v (no pod user known: want a shared 1777 directory)", fi.Mode(), err)
	}
	// jsplan's lock code accepts it: the run in the container locks there.
	l, h, err := lock.TryAcquire(lockMount, "orin-nx-1", lock.Holder{Plan: "in the pod"})
	if err != nil || l == nil || h != nil {
		t.Fatalf("locking in the claim's directory: %v %v", err, h)
	}
	_ = l.Release()

	// `jsplan boards list` on the node sees the board busy with the claim.
	bin := buildJsplan(t)
	out, err := exec.Command(bin, "boards", "list", "--output", "json", "--boards", n.inv, "--lock-dir", n.locks).Output()
	if err != nil {
		t.Fatalf("jsplan boards list: %v", err)
	}
	var rows []struct {
		Name   string       `json:"name"`
		Locked bool         `json:"locked"`
		Holder *lock.Holder `json:"holder"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		busy := r.Name == "orin-nx-1"
		if r.Locked != busy || busy && (r.Holder == nil || r.Holder.Plan != "ResourceClaim ci/run (uid uid-run)") {
			t.Errorf("jsplan boards list: %+v (holder %+v)", r, r.Holder)
		}
	}

	// A driver restart: the lock is taken again.
	d.Stop()
	if h := n.boardHolder("orin-nx-1"); h != "" {
		t.Fatalf("a stopped driver still holds the lock: %q", h)
	}
	d = n.startBoot(ctx, boot)
	defer d.Stop()
	if h := n.boardHolder("orin-nx-1"); !strings.Contains(h, "ResourceClaim ci/run") {
		t.Fatalf("after a restart the board is held by %q", h)
	}
	if err := unprepareOne(t, d, c.UID); err != nil {
		t.Fatal(err)
	}
	if h := n.boardHolder("orin-nx-1"); h != "" {
		t.Errorf("after unprepare the board is held by %q", h)
	}
}

// TestAdminAccessObserver: a claim with admin access to a board that a run
// holds is prepared at once as an observer: JSPLAN_BOARD and the board's
// inventory, no device node, no lock directory, and the run's lock is left
// alone.
func TestAdminAccessObserver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	d := n.startBoot(ctx, n.setBootID("boot-1"))
	defer d.Stop()
	run := allocatedClaim("run", n.name, "orin-nx-1", false, nil)
	if _, err := prepareOne(t, d, run); err != nil {
		t.Fatal(err)
	}
	admin := allocatedClaim("admin", n.name, "orin-nx-1", true, nil)
	devs, err := prepareOne(t, d, admin)
	if err != nil {
		t.Fatalf("admin access: %v", err)
	}
	spec := injectCDI(t, n.cdi, devs[0].CDIDeviceIDs)
	for _, e := range []string{"JSPLAN_BOARD=orin-nx-1", "JSPLAN_BOARDS=" + ContainerInventory, "JSPLAN_ADMIN_ACCESS=true"} {
		if !slices.Contains(spec.Process.Env, e) {
			t.Errorf("observer env lacks %s: %v", e, spec.Process.Env)
		}
	}
	if len(spec.Linux.Devices) != 0 || len(spec.Mounts) != 1 || spec.Mounts[0].Destination != ContainerInventory {
		t.Errorf("observer gets devices %+v and mounts %+v, want only the inventory", spec.Linux.Devices, spec.Mounts)
	}
	if h := n.boardHolder("orin-nx-1"); !strings.Contains(h, "ResourceClaim ci/run ") {
		t.Errorf("with an observer, the board is held by %q", h)
	}
	// A second user claim is still refused; the observer does not count.
	if _, err := prepareOne(t, d, allocatedClaim("other", n.name, "orin-nx-1", false, nil)); err == nil || !strings.Contains(err.Error(), "already prepared for claim ci/run") {
		t.Errorf("a second user claim: %v", err)
	}
	if err := unprepareOne(t, d, admin.UID); err != nil {
		t.Fatal(err)
	}
	if h := n.boardHolder("orin-nx-1"); !strings.Contains(h, "ResourceClaim ci/run ") {
		t.Errorf("the observer's unprepare freed the run's board: %q", h)
	}
}

// TestRunInventoryHasOnlyWhatTheRunUses: the container's inventory holds
// its board only, without comments, without the drivers that serve none of
// its capabilities (and their secrets), with the serving drivers' settings;
// it loads as the original board did, and is readable only by the pod's
// user and group, who can lock in the claim's lock directory with jsplan.
func TestRunInventoryHasOnlyWhatTheRunUses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	n.writeInventory(nodeInventory(`  # plug token: see the vault, s3cret-in-a-comment
  - name: sim-2
    labels: {kind: virtual, place: "Bâtiment-Ω"}
    vars: {image-id-file: /etc/image-id}
    power: sim
    storage: sim
    drivers:
      sim: {password: demo-password, boot-delay: 5ms}  # the sim's login
      command: {on: [plug, "on"], off: [plug, "off"], env: {PLUG_TOKEN: s3cret-token}}
      blockdev: {path: /dev/disk/by-id/usb-secret-reader}
`))
	d := n.startBoot(ctx, n.setBootID("boot-1"))
	defer d.Stop()
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run-pod", Namespace: "ci", UID: "pod-uid-1"}, Spec: v1.PodSpec{
		SecurityContext: &v1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), FSGroup: ptr.To[int64](2000)},
		Containers:      []v1.Container{{Name: "apply", Image: "jsplan"}},
	}}
	if _, err := n.client.CoreV1().Pods("ci").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return d.inventory() != nil && d.inventory().Lookup("sim-2") != nil })
	c := allocatedClaim("run", n.name, "sim-2", false, pod)
	if _, err := prepareOne(t, d, c); err != nil {
		t.Fatal(err)
	}
	invPath := filepath.Join(d.claimDir(c.UID), "boards.yaml")
	doc, err := os.ReadFile(invPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"s3cret", "orin-nx-1", "usb-secret-reader", "PLUG_TOKEN", "blockdev", "command", "login"} {
		if strings.Contains(string(doc), bad) {
			t.Errorf("the run's inventory holds %q:\n%s", bad, doc)
		}
	}
	one, err := LoadInventory(invPath)
	if err != nil {
		t.Fatal(err)
	}
	orig := d.inventory().Lookup("sim-2")
	got := one.Lookup("sim-2")
	if len(one.Boards) != 1 || got == nil || got.Labels["place"] != "Bâtiment-Ω" || got.Vars["image-id-file"] != "/etc/image-id" ||
		!slices.Equal(got.Capabilities(), orig.Capabilities()) || !slices.Equal(got.DriverNames(), []string{"sim"}) {
		t.Fatalf("the run's board: %+v (from %+v)\n%s", got, orig, doc)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(invPath, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1000 || st.Gid != 2000 || st.Mode&0o777 != 0o440 {
		t.Errorf("the run's inventory: uid %d gid %d mode %o, want 1000 2000 440", st.Uid, st.Gid, st.Mode&0o777)
	}
	locks := filepath.Join(d.claimDir(c.UID), "locks")
	if err := syscall.Stat(locks, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1000 || st.Mode&0o7777 != 0o700 {
		t.Errorf("the claim's lock directory: uid %d mode %o, want 1000 700", st.Uid, st.Mode&0o7777)
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot run jsplan as the pod's user")
	}
	// jsplan, as the pod's user, reads the inventory and locks the board in
	// the claim's directory (the lock code checks its owner and mode). The
	// runtime bind-mounts both; here the path is made reachable instead.
	for p := d.claimDir(c.UID); p != filepath.Dir(filepath.Dir(n.state)); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	bin := buildJsplan(t)
	cmd := exec.Command(bin, "lock", "sim-2", "--boards", invPath, "--lock-dir", locks, "--lock-wait", "1s", "--", "true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 2000}}
	cmd.Env = append(os.Environ(), "HOME="+os.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("jsplan lock as the pod's user: %v\n%s", err, out)
	}
	if _, err := os.Stat(lock.Path(locks, "sim-2")); err != nil {
		t.Errorf("no lock file made by the pod's user: %v", err)
	}
}

// TestLabelsCutAtCharacters: label values longer than an attribute may be
// are cut at a character boundary, at most 64 bytes, still valid UTF-8.
func TestLabelsCutAtCharacters(t *testing.T) {
	for _, v := range []string{
		strings.Repeat("é", 40),                // 2-byte runes: 64 is a boundary
		"a" + strings.Repeat("é", 40),          // 64 falls inside a rune
		strings.Repeat("日本", 20),               // 3-byte runes
		"ab" + strings.Repeat("🛠", 20),         // 4-byte runes
		strings.Repeat("x", 63) + "ü" + "tail", // the 64th byte starts a rune
	} {
		got := clip(v)
		if len(got) > maxStringLen || !utf8.ValidString(got) || !strings.HasPrefix(v, got) || len(got) < maxStringLen-3 {
			t.Errorf("clip(%q) = %q (%d bytes)", v, got, len(got))
		}
	}
}

// inventory is the inventory the driver last loaded.
func (d *Driver) inventory() *engine.Inventory {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inv
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("timed out")
}

// buildJsplan builds the jsplan binary in jsplan's own module, as its image
// has it, in a directory every user may read.
func buildJsplan(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jsplan-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "jsplan")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "../../../cmd/jsplan"
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building jsplan: %v\n%s", err, out)
	}
	return bin
}

// TestRollingUpdateAndProbe: two driver instances on one node, as during a
// rolling update (each registered under its pod UID), both answer the
// probe; the new one takes over the board lock of a claim the old one
// prepared once the old one stops, and the stopped one fails the probe.
func TestRollingUpdateAndProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	boot := n.setBootID("boot-1")
	oldPod := n.startBoot(ctx, boot, kubeletplugin.RollingUpdate("pod-old"))
	oldSockets := SocketPaths(DefaultDriverName, n.reg, n.plugins, "pod-old")
	if err := oldSockets.Check(ctx, DefaultDriverName); err != nil {
		t.Fatalf("probe of the running driver: %v", err)
	}
	if err := oldSockets.Check(ctx, "other.example.com"); err == nil {
		t.Error("the probe accepts a driver of another name")
	}
	c := allocatedClaim("run", n.name, "orin-nx-1", false, nil)
	if _, err := prepareOne(t, oldPod, c); err != nil {
		t.Fatal(err)
	}

	newPod := n.startBoot(ctx, boot, kubeletplugin.RollingUpdate("pod-new"))
	defer newPod.Stop()
	newSockets := SocketPaths(DefaultDriverName, n.reg, n.plugins, "pod-new")
	for _, s := range []Sockets{oldSockets, newSockets} {
		if err := s.Check(ctx, DefaultDriverName); err != nil {
			t.Errorf("probe while both run: %v", err)
		}
	}
	if got := newPod.LockedClaims(); len(got) != 0 {
		t.Errorf("the new driver holds %v while the old one still does", got)
	}
	oldPod.Stop()
	if err := oldSockets.Check(ctx, DefaultDriverName); err == nil {
		t.Error("the probe passes for a stopped driver")
	}
	waitFor(t, func() bool { return slices.Equal(newPod.LockedClaims(), []string{string(c.UID)}) })
	if h := n.boardHolder("orin-nx-1"); !strings.Contains(h, "ResourceClaim ci/run") {
		t.Errorf("after the old driver stopped the board is held by %q", h)
	}
	if err := unprepareOne(t, newPod, c.UID); err != nil {
		t.Fatal(err)
	}
	if h := n.boardHolder("orin-nx-1"); h != "" {
		t.Errorf("after unprepare the board is held by %q", h)
	}
}
