package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
)

// node is one fake node: the kubelet's directories, the host's /dev (a
// by-id link to a real pty), the lock directory and the inventory.
type node struct {
	t                                          *testing.T
	name                                       string
	root, reg, plugins, state, cdi, locks, inv string
	console                                    string // the node the by-id link points to, as the container sees it
	consoleHost                                string // and its path under root
	client                                     *fake.Clientset
}

const (
	consoleByID = "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"
	sdmuxDisk   = "/dev/disk/by-id/usb-LinuxAut_sdmux_HS-SD_MMC_000000001234-0:0"
)

func nodeInventory(extra string) string {
	return `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  # A board with a USB-UART console and an SD mux whose disk shows up only
  # while the mux shows the card to the host.
  - name: orin-nx-1
    labels: {soc: orin-nx, lab: bench-a}
    vars: {image-id-file: /etc/image-id}
    drivers:
      serial: {port: ` + consoleByID + `, baud: 115200}
      command: {on: ["true"], off: ["true"]}
      blockdev: {path: ` + sdmuxDisk + `}
  - name: sim-1
    labels: {kind: virtual}
    drivers:
      sim: {password: demo-password}
` + extra
}

func newNode(t *testing.T) *node {
	t.Helper()
	// Socket paths must stay short (108 bytes): not t.TempDir().
	d, err := os.MkdirTemp("", "dra")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	n := &node{t: t, name: "node-a", root: filepath.Join(d, "host"), reg: filepath.Join(d, "reg"),
		plugins: filepath.Join(d, "plug"), state: filepath.Join(d, "state"), cdi: filepath.Join(d, "cdi"),
		locks: filepath.Join(d, "locks"), inv: filepath.Join(d, "boards.yaml")}
	for _, dir := range []string{n.reg, n.plugins, n.locks, filepath.Join(n.root, "dev/serial/by-id")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A real character device for the console, as udev makes it for a
	// USB-UART (major 188): a pty would not do, a runtime cannot create a
	// pty's node in a container and the driver leaves ptys out.
	if os.Geteuid() != 0 {
		t.Skip("making a device node needs root")
	}
	n.console = "/dev/ttyUSB0"
	n.consoleHost = filepath.Join(n.root, "dev/ttyUSB0")
	if err := syscall.Mknod(n.consoleHost, syscall.S_IFCHR|0o660, 188<<8); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../ttyUSB0", filepath.Join(n.root, "dev/serial/by-id", consoleByID)); err != nil {
		t.Fatal(err)
	}
	n.writeInventory(nodeInventory(""))
	n.client = fake.NewClientset(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, UID: "node-a-uid"}})
	return n
}

func (n *node) writeInventory(s string) {
	n.t.Helper()
	tmp := n.inv + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Rename(tmp, n.inv); err != nil {
		n.t.Fatal(err)
	}
}

// start starts the driver as the DaemonSet does, on the node's sockets.
func (n *node) start(ctx context.Context) *Driver {
	n.t.Helper()
	d, err := Start(ctx, Config{NodeName: n.name, Inventory: n.inv, StateDir: n.state, CDIDir: n.cdi,
		LockDir: n.locks, Host: Host{Root: n.root}, PollInterval: 50 * time.Millisecond, KubeClient: n.client},
		kubeletplugin.RegistrarDirectoryPath(n.reg), kubeletplugin.PluginDataDirectoryPath(n.plugins))
	if err != nil {
		n.t.Fatal(err)
	}
	return d
}

// slice waits for the node's ResourceSlice to satisfy ok and returns it.
func (n *node) slice(ctx context.Context, ok func(*resourceapi.ResourceSlice) bool) *resourceapi.ResourceSlice {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last []resourceapi.ResourceSlice
	for time.Now().Before(deadline) {
		l, err := n.client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{})
		if err != nil {
			n.t.Fatal(err)
		}
		last = l.Items
		if len(l.Items) == 1 && ok(&l.Items[0]) {
			return &l.Items[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("the ResourceSlice never reached the expected state; last: %+v", last)
	return nil
}

func deviceNames(s *resourceapi.ResourceSlice) []string {
	var out []string
	for _, d := range s.Spec.Devices {
		out = append(out, d.Name)
	}
	return out
}

func dial(t *testing.T, path string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDriverAgainstFakeKubelet: the driver publishes its node's boards,
// registers with the kubelet, prepares a claim the scheduler's allocator
// allocated from that very slice, and the CDI devices it returns give a
// container (edited by the CDI library the runtimes use) the board and
// nothing privileged; a restarted driver still knows the claim, and
// unprepare removes everything prepare made.
func TestDriverAgainstFakeKubelet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	d := n.start(ctx)

	// The published slice: one device per board, with its attributes.
	s := n.slice(ctx, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 2 })
	if s.Spec.Driver != "jsplan.dev" || s.Spec.Pool.Name != n.name || s.Spec.NodeName == nil || *s.Spec.NodeName != n.name {
		t.Fatalf("slice: driver %q pool %q node %v", s.Spec.Driver, s.Spec.Pool.Name, s.Spec.NodeName)
	}
	orin := s.Spec.Devices[0]
	want := map[string]string{"name": "orin-nx-1", "soc": "orin-nx", "lab": "bench-a", "capabilities": "power,console,storage", "drivers": "blockdev,command,serial"}
	for k, v := range want {
		if a := orin.Attributes[resourceapi.QualifiedName(k)]; a.StringValue == nil || *a.StringValue != v {
			t.Errorf("attribute %s = %v, want %q", k, a.StringValue, v)
		}
	}
	for _, k := range []string{"cap_power", "cap_console", "cap_storage", "driver_serial", "driver_command", "driver_blockdev"} {
		if a := orin.Attributes[resourceapi.QualifiedName(k)]; a.BoolValue == nil || !*a.BoolValue {
			t.Errorf("attribute %s missing", k)
		}
	}
	if _, ok := orin.Attributes["cap_network"]; ok || len(orin.Taints) != 0 {
		t.Errorf("orin-nx-1: unexpected cap_network or taints: %+v", orin)
	}

	// Registration, as the kubelet's plugin watcher does it.
	reg := registerapi.NewRegistrationClient(dial(t, filepath.Join(n.reg, "jsplan.dev-reg.sock")))
	info, err := reg.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != registerapi.DRAPlugin || info.Name != "jsplan.dev" || !slices.Contains(info.SupportedVersions, drapb.DRAPluginService) {
		t.Fatalf("GetInfo: %+v", info)
	}
	if _, err := reg.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}

	// The scheduler's allocator, over the published slice.
	f := &farm{nodes: []*v1.Node{{ObjectMeta: metav1.ObjectMeta{Name: n.name}}}, slices: []*resourceapi.ResourceSlice{s},
		allocated: newFarm(t, 0, 0, nil).allocated, classes: classLister{boardClass()}, cel: newFarm(t, 0, 0, nil).cel,
		features: newFarm(t, 0, 0, nil).features}
	claim := boardClaim("run-1", `device.attributes["jsplan.dev"].?soc.orValue("") == "orin-nx"`)
	if f.allocate(ctx, t, claim, 0) != n.name {
		t.Fatal("not allocated")
	}
	if _, err := n.client.ResourceV1().ResourceClaims("ci").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// NodePrepareResources, as the kubelet calls it.
	dra := drapb.NewDRAPluginClient(dial(t, filepath.Join(n.plugins, "dra.sock")))
	pbClaim := &drapb.Claim{Namespace: "ci", Name: "run-1", Uid: string(claim.UID)}
	resp, err := dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{pbClaim}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Claims[string(claim.UID)]
	if r == nil || r.Error != "" || len(r.Devices) != 1 || r.Devices[0].DeviceName != "orin-nx-1" || len(r.Devices[0].CdiDeviceIds) != 1 {
		t.Fatalf("NodePrepareResources: %+v", resp)
	}
	ids := r.Devices[0].CdiDeviceIds

	// The container, as the runtime builds it with the CDI library.
	spec := injectCDI(t, n.cdi, ids)
	env := spec.Process.Env
	for _, e := range []string{"JSPLAN_BOARD=orin-nx-1", "JSPLAN_BOARDS=" + ContainerInventory, "JSPLAN_LOCK_DIR=" + ContainerLockDir} {
		if !slices.Contains(env, e) {
			t.Errorf("env lacks %s: %v", e, env)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(n.consoleHost, &st); err != nil {
		t.Fatal(err)
	}
	byID := "/dev/serial/by-id/" + consoleByID
	var paths []string
	for _, dev := range spec.Linux.Devices {
		paths = append(paths, dev.Path)
		if dev.Type != "c" || dev.Major != int64(st.Rdev>>8&0xfff) {
			t.Errorf("device %s: type %s major %d, want the UART's char device", dev.Path, dev.Type, dev.Major)
		}
	}
	if !slices.Contains(paths, byID) || !slices.Contains(paths, n.console) || len(paths) != 2 {
		t.Errorf("device nodes %v, want %s and %s (the SD mux disk is absent until switched)", paths, byID, n.console)
	}
	allowed := 0
	for _, rule := range spec.Linux.Resources.Devices {
		if rule.Allow && rule.Type == "c" && rule.Access == "rwm" {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("device cgroup: %d allow rules, want one per node: %+v", allowed, spec.Linux.Resources.Devices)
	}
	mounts := map[string]oci.Mount{}
	for _, m := range spec.Mounts {
		mounts[m.Destination] = m
	}
	inv, lk := mounts[ContainerInventory], mounts[ContainerLockDir]
	if lk.Source != filepath.Join(n.state, "claims", string(claim.UID), "locks") || !slices.Contains(lk.Options, "rw") {
		t.Errorf("lock dir mount: %+v, want the claim's own lock directory", lk)
	}
	if !slices.Contains(inv.Options, "ro") {
		t.Errorf("inventory mount not read-only: %+v", inv)
	}
	one, err := LoadInventory(inv.Source)
	if err != nil {
		t.Fatalf("the container's inventory: %v", err)
	}
	if names := one.Names(); len(names) != 1 || names[0] != "orin-nx-1" || one.Boards[0].Labels["soc"] != "orin-nx" {
		t.Errorf("the container's inventory holds %v", names)
	}
	// Nothing privileged: no capabilities, hooks, namespaces, sysctls or
	// mounts beyond the two.
	if spec.Process.Capabilities != nil || spec.Hooks != nil || len(spec.Linux.Namespaces) != 0 || len(spec.Linux.Sysctl) != 0 ||
		len(spec.Mounts) != 2 || spec.Process.NoNewPrivileges || len(spec.Process.User.AdditionalGids) != 0 {
		t.Errorf("the CDI edits ask for more than device nodes, env and two mounts: %+v %+v", spec.Process, spec.Linux)
	}

	// Idempotent: a second prepare returns the same devices.
	again, err := dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{pbClaim}})
	if err != nil || !slices.Equal(again.Claims[string(claim.UID)].Devices[0].CdiDeviceIds, ids) {
		t.Fatalf("second prepare: %v %+v", err, again)
	}

	// Another claim allocated the same board (a scheduler bug): refused.
	forged := boardClaim("forged", "")
	forged.Status = claim.Status
	if _, err := n.client.ResourceV1().ResourceClaims("ci").Create(ctx, forged, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fr, err := dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ci", Name: "forged", Uid: string(forged.UID)}}})
	if err != nil || !strings.Contains(fr.Claims[string(forged.UID)].Error, "board orin-nx-1 is already prepared for claim ci/run-1") {
		t.Errorf("a second claim on a prepared board: %v %+v", err, fr)
	}

	// The driver restarts: the prepared claim survives.
	d.Stop()
	d = n.start(ctx)
	defer d.Stop()
	if got := d.PreparedClaims(); !slices.Equal(got, []string{string(claim.UID)}) {
		t.Fatalf("after a restart, prepared claims %v", got)
	}
	dra = drapb.NewDRAPluginClient(dial(t, filepath.Join(n.plugins, "dra.sock")))
	again, err = dra.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{pbClaim}})
	if err != nil || !slices.Equal(again.Claims[string(claim.UID)].Devices[0].CdiDeviceIds, ids) {
		t.Fatalf("prepare after restart: %v %+v", err, again)
	}

	// Unprepare removes the CDI spec and the claim's files.
	ur, err := dra.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{pbClaim}})
	if err != nil || ur.Claims[string(claim.UID)].Error != "" {
		t.Fatalf("unprepare: %v %+v", err, ur)
	}
	left, _ := filepath.Glob(filepath.Join(n.cdi, "*"))
	if len(left) != 0 || len(d.PreparedClaims()) != 0 {
		t.Errorf("after unprepare: CDI specs %v, claims %v", left, d.PreparedClaims())
	}
	if _, err := os.Stat(inv.Source); !os.IsNotExist(err) {
		t.Errorf("the claim's inventory is still there: %v", err)
	}
	// Unprepare again: not an error.
	if ur, err := dra.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{pbClaim}}); err != nil || ur.Claims[string(claim.UID)].Error != "" {
		t.Errorf("second unprepare: %v %+v", err, ur)
	}
}

// injectCDI edits an empty container spec with the CDI devices, as
// containerd and CRI-O do.
func injectCDI(t *testing.T, dir string, ids []string) *oci.Spec {
	t.Helper()
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(dir), cdiapi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	spec := &oci.Spec{Process: &oci.Process{}, Linux: &oci.Linux{}}
	if unresolved, err := cache.InjectDevices(spec, ids...); err != nil {
		t.Fatalf("InjectDevices: %v (unresolved %v)", err, unresolved)
	}
	return spec
}

// TestDriverFollowsInventoryAndHardware: the slice follows the inventory
// file and the board's fixed hardware; a broken inventory keeps the last
// good one published.
func TestDriverFollowsInventoryAndHardware(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNode(t)
	d := n.start(ctx)
	defer d.Stop()
	n.slice(ctx, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 2 })

	// A board is added to the inventory.
	n.writeInventory(nodeInventory("  - name: Sim_2\n    labels: {kind: virtual}\n    drivers:\n      sim: {password: x}\n"))
	s := n.slice(ctx, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 3 })
	if name := s.Spec.Devices[2].Name; !strings.HasPrefix(name, "sim-2-") || *s.Spec.Devices[2].Attributes["name"].StringValue != "Sim_2" {
		t.Errorf("a board name that is no DNS label: device %q", name)
	}

	// A broken inventory: the last good one stays published.
	n.writeInventory("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n  - name: x\n    drivers: {nosuch: {}}\n")
	time.Sleep(300 * time.Millisecond)
	if s := n.slice(ctx, func(*resourceapi.ResourceSlice) bool { return true }); len(s.Spec.Devices) != 3 {
		t.Errorf("after a broken inventory: %v", deviceNames(s))
	}

	// The console adapter is unplugged: the board is tainted, then back.
	n.writeInventory(nodeInventory(""))
	link := filepath.Join(n.root, "dev/serial/by-id", consoleByID)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	s = n.slice(ctx, func(s *resourceapi.ResourceSlice) bool {
		return len(s.Spec.Devices) == 2 && len(s.Spec.Devices[0].Taints) == 1
	})
	if tn := s.Spec.Devices[0].Taints[0]; tn.Key != UnhealthyTaintKey || tn.Effect != resourceapi.DeviceTaintEffectNoSchedule ||
		!strings.Contains(tn.Value, "missing-dev-serial-by-id-usb-FTDI") {
		t.Errorf("taint: %+v", tn)
	}
	if len(s.Spec.Devices[1].Taints) != 0 {
		t.Errorf("sim-1 tainted too: %+v", s.Spec.Devices[1].Taints)
	}
	if err := os.Symlink("../../ttyUSB0", link); err != nil {
		t.Fatal(err)
	}
	n.slice(ctx, func(s *resourceapi.ResourceSlice) bool {
		return len(s.Spec.Devices) == 2 && len(s.Spec.Devices[0].Taints) == 0
	})
}
