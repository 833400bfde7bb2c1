package driver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
	cdiparser "tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/jsplan/jsplan/engine"
)

// Defaults of Config.
const (
	DefaultDriverName = "jsplan.dev"
	// CDIKind is the CDI vendor/class of the devices the driver prepares.
	CDIClass = "board"
	// ContainerInventory is where the container finds its one-board
	// inventory (JSPLAN_BOARDS points there).
	ContainerInventory = "/etc/jsplan/boards.yaml"
	// ContainerLockDir is where the container finds the node's lock
	// directory: the Task's default --lock-dir.
	ContainerLockDir = "/var/lock/jsplan"
)

// UnhealthyMode says how an unhealthy board is withheld from the scheduler.
type UnhealthyMode string

const (
	// UnhealthyTaint keeps the device in the slice with a NoSchedule taint
	// (jsplan.dev/unhealthy=<reason>): it stays visible, with the reason, and
	// claims already allocated to it are left alone. Needs DRADeviceTaints
	// (GA in Kubernetes 1.37, a feature gate before).
	UnhealthyTaint UnhealthyMode = "taint"
	// UnhealthyRemove leaves the device out of the slice: works on every
	// version, but the board disappears from view.
	UnhealthyRemove UnhealthyMode = "remove"
	// UnhealthyAuto taints, and removes instead once the API server drops
	// the taints (the feature is off).
	UnhealthyAuto UnhealthyMode = "auto"
)

// Config configures a Driver.
type Config struct {
	DriverName string // default DefaultDriverName
	NodeName   string
	// Inventory is the node's Boards file.
	Inventory string
	// StateDir holds one directory per prepared claim (its inventory and
	// state); it must be the same path on the host, since the container
	// mounts the inventory from there, and it survives driver restarts.
	StateDir string
	// CDIDir is where CDI specs are written (/var/run/cdi).
	CDIDir string
	// LockDir is the host's jsplan lock directory, mounted into the
	// container at ContainerLockDir.
	LockDir string
	// Host resolves device nodes (Root "/" in the DaemonSet).
	Host Host
	// Prober checks the boards every CheckInterval (nil: no check).
	Prober        Prober
	CheckInterval time.Duration
	// PollInterval is how often the inventory file and the boards' fixed
	// device nodes are looked at (default 5s).
	PollInterval time.Duration
	Unhealthy    UnhealthyMode
	KubeClient   kubernetes.Interface
}

// Driver is the DRA kubelet plugin for jsplan boards.
type Driver struct {
	cfg    Config
	helper *kubeletplugin.Helper
	cdi    *cdiapi.Cache
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	inv        *engine.Inventory
	invSum     [32]byte
	probed     map[string]Health // from the Prober
	absent     map[string]Health // from missing fixed device nodes
	taint      bool
	published  []resourceapi.Device
	lastErr    string
	publishErr error
}

// Start starts the plugin: the kubelet registration and DRA gRPC services
// (opts adds to or overrides kubeletplugin's options), the ResourceSlice
// publishing, and the background loop that follows the inventory and the
// boards' health until ctx ends or Stop.
func Start(ctx context.Context, cfg Config, opts ...kubeletplugin.Option) (*Driver, error) {
	if cfg.DriverName == "" {
		cfg.DriverName = DefaultDriverName
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.Unhealthy == "" {
		cfg.Unhealthy = UnhealthyAuto
	}
	if cfg.Host.Root == "" {
		cfg.Host.Root = "/"
	}
	if cfg.NodeName == "" || cfg.Inventory == "" || cfg.StateDir == "" || cfg.CDIDir == "" || cfg.LockDir == "" {
		return nil, errors.New("jsplan DRA driver: node name, inventory, state, CDI and lock directories are required")
	}
	for _, dir := range []string{cfg.StateDir, cfg.CDIDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(cfg.CDIDir), cdiapi.WithAutoRefresh(false))
	if err != nil {
		return nil, fmt.Errorf("CDI: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	d := &Driver{cfg: cfg, cdi: cache, ctx: ctx, cancel: cancel, taint: cfg.Unhealthy != UnhealthyRemove,
		probed: map[string]Health{}, absent: map[string]Health{}}
	if err := d.reload(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "inventory not loaded; publishing no boards until it is fixed")
	}
	all := append([]kubeletplugin.Option{
		kubeletplugin.DriverName(cfg.DriverName),
		kubeletplugin.NodeName(cfg.NodeName),
		kubeletplugin.KubeClient(cfg.KubeClient),
		kubeletplugin.HealthService(false),
	}, opts...)
	d.helper, err = kubeletplugin.Start(ctx, d, all...)
	if err != nil {
		cancel(err)
		return nil, err
	}
	if err := d.publish(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	go d.loop(ctx)
	return d, nil
}

// Stop ends the plugin's services and loop. Prepared claims stay on disk.
func (d *Driver) Stop() {
	d.cancel(errors.New("stopped"))
	d.helper.Stop()
}

// Done is closed when the driver stopped, by Stop or a fatal error (Err).
func (d *Driver) Done() <-chan struct{} { return d.ctx.Done() }

// Err is why the driver stopped.
func (d *Driver) Err() error { return context.Cause(d.ctx) }

// Helper is the kubeletplugin helper (registration status, for tests).
func (d *Driver) Helper() *kubeletplugin.Helper { return d.helper }

// Devices returns the devices last published.
func (d *Driver) Devices() []resourceapi.Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]resourceapi.Device(nil), d.published...)
}

// reload reads the inventory when its content changed.
func (d *Driver) reload(ctx context.Context) error {
	src, err := os.ReadFile(d.cfg.Inventory)
	if err != nil {
		return d.noteErr(ctx, err)
	}
	sum := sha256.Sum256(src)
	d.mu.Lock()
	same := d.inv != nil && sum == d.invSum
	d.mu.Unlock()
	if same {
		return nil
	}
	inv, err := LoadInventory(d.cfg.Inventory)
	if err != nil {
		// Keep publishing the last good inventory: a typo must not take
		// every board of the node away from running claims' view.
		return d.noteErr(ctx, err)
	}
	d.mu.Lock()
	d.inv, d.invSum, d.lastErr = inv, sum, ""
	d.mu.Unlock()
	klog.FromContext(ctx).Info("inventory loaded", "file", d.cfg.Inventory, "boards", inv.Names())
	return nil
}

func (d *Driver) noteErr(ctx context.Context, err error) error {
	d.mu.Lock()
	repeat := d.lastErr == err.Error()
	d.lastErr = err.Error()
	d.mu.Unlock()
	if !repeat {
		klog.FromContext(ctx).Error(err, "inventory")
	}
	return err
}

// checkNodes marks boards whose fixed hardware is missing.
func (d *Driver) checkNodes() {
	d.mu.Lock()
	inv := d.inv
	d.mu.Unlock()
	absent := map[string]Health{}
	if inv != nil {
		for _, b := range inv.Boards {
			_, missing := d.cfg.Host.DeviceNodes(b)
			var gone []string
			for _, m := range missing {
				if m.Fixed {
					gone = append(gone, m.Path)
				}
			}
			if len(gone) > 0 {
				absent[b.Name] = Health{Reason: "missing " + strings.Join(gone, ", ")}
			}
		}
	}
	d.mu.Lock()
	d.absent = absent
	d.mu.Unlock()
}

// unhealthy merges the two sources of bad health.
func (d *Driver) unhealthy() map[string]Health {
	out := map[string]Health{}
	for n, h := range d.probed {
		if !h.Healthy {
			out[n] = h
		}
	}
	for n, h := range d.absent {
		out[n] = h
	}
	return out
}

// publish hands the current devices to the ResourceSlice controller when
// they changed.
func (d *Driver) publish(ctx context.Context) error {
	d.checkNodes()
	d.mu.Lock()
	var devs []resourceapi.Device
	var warnings []string
	if d.inv != nil {
		devs, warnings = Devices(d.inv, d.unhealthy(), d.taint)
	}
	changed := d.publishErr != nil || !sameDevices(devs, d.published)
	d.published = devs
	d.mu.Unlock()
	if !changed {
		return nil
	}
	for _, w := range warnings {
		klog.FromContext(ctx).Info("warning: " + w)
	}
	// A slice holds at most 128 devices.
	var slices []resourceslice.Slice
	for i := 0; i < len(devs); i += 128 {
		slices = append(slices, resourceslice.Slice{Devices: devs[i:min(i+128, len(devs))]})
	}
	if len(slices) == 0 {
		slices = []resourceslice.Slice{{}}
	}
	err := d.helper.PublishResources(ctx, resourceslice.DriverResources{
		Pools: map[string]resourceslice.Pool{d.cfg.NodeName: {Slices: slices}},
	})
	d.mu.Lock()
	d.publishErr = err
	d.mu.Unlock()
	return err
}

func sameDevices(a, b []resourceapi.Device) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func (d *Driver) loop(ctx context.Context) {
	logger := klog.FromContext(ctx)
	poll := time.NewTicker(d.cfg.PollInterval)
	defer poll.Stop()
	var check <-chan time.Time
	if d.cfg.Prober != nil && d.cfg.CheckInterval > 0 {
		t := time.NewTicker(d.cfg.CheckInterval)
		defer t.Stop()
		check = t.C
		go d.probe(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			_ = d.reload(ctx)
		case <-check:
			d.probe(ctx)
		}
		if err := d.publish(ctx); err != nil {
			logger.Error(err, "publishing the boards")
		}
	}
}

// Probe runs the Prober once and publishes the result.
func (d *Driver) Probe(ctx context.Context) {
	d.probe(ctx)
	if err := d.publish(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "publishing the boards")
	}
}

func (d *Driver) probe(ctx context.Context) {
	if d.cfg.Prober == nil {
		return
	}
	res, err := d.cfg.Prober.Probe(ctx, d.cfg.Inventory)
	if err != nil {
		klog.FromContext(ctx).Error(err, "board check")
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, h := range res {
		if prev, ok := d.probed[name]; !ok || prev.Healthy != h.Healthy {
			klog.FromContext(ctx).Info("board health", "board", name, "healthy", h.Healthy, "check", h.Reason)
		}
		d.probed[name] = h
	}
}

// HandleError implements kubeletplugin.DRAPlugin. In auto mode, taints
// dropped by the API server (DRADeviceTaints off) switch the driver to
// removing unhealthy boards instead.
func (d *Driver) HandleError(ctx context.Context, err error, msg string) {
	var dropped *resourceslice.DroppedFieldsError
	if errors.As(err, &dropped) && d.cfg.Unhealthy == UnhealthyAuto {
		d.mu.Lock()
		was := d.taint
		d.taint = false
		d.published = nil
		d.mu.Unlock()
		if was {
			klog.FromContext(ctx).Info("the API server dropped device taints (DRADeviceTaints is off): unhealthy boards are now left out of the slice instead")
			go func() { _ = d.publish(ctx) }()
			return
		}
	}
	klog.FromContext(ctx).Error(err, msg)
	if !errors.Is(err, kubeletplugin.ErrRecoverable) {
		d.cancel(err)
	}
}

// WatchHealthStatus implements kubeletplugin.DRAPlugin; the health service
// is turned off (health reaches the scheduler through the slice instead).
func (d *Driver) WatchHealthStatus(context.Context, chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}

// claimState is what the driver remembers of a prepared claim, in
// StateDir/<uid>/state.json, so that a restarted driver still knows it.
type claimState struct {
	UID       types.UID        `json:"uid"`
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Devices   []preparedDevice `json:"devices"`
}

type preparedDevice struct {
	Requests []string `json:"requests"`
	Pool     string   `json:"pool"`
	Device   string   `json:"device"`
	Board    string   `json:"board"`
	CDIID    string   `json:"cdiID"`
}

func (d *Driver) claimDir(uid types.UID) string {
	return filepath.Join(d.cfg.StateDir, "claims", string(uid))
}

func (d *Driver) specName(uid types.UID) string {
	return cdiapi.GenerateTransientSpecName(d.cfg.DriverName, CDIClass, string(uid))
}

func readState(dir string) (*claimState, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var s claimState
	return &s, json.Unmarshal(b, &s)
}

// preparedBoards maps each board prepared for some claim to that claim.
func (d *Driver) preparedBoards() map[string]*claimState {
	out := map[string]*claimState{}
	dirs, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "claims", "*"))
	for _, dir := range dirs {
		if s, err := readState(dir); err == nil {
			for _, pd := range s.Devices {
				out[pd.Board] = s
			}
		}
	}
	return out
}

// PrepareResourceClaims implements kubeletplugin.DRAPlugin.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	out := map[types.UID]kubeletplugin.PrepareResult{}
	for _, c := range claims {
		devs, err := d.prepare(ctx, c)
		out[c.UID] = kubeletplugin.PrepareResult{Devices: devs, Err: err}
		if err != nil {
			klog.FromContext(ctx).Error(err, "prepare", "claim", klog.KObj(c))
		}
	}
	return out, nil
}

func (d *Driver) prepare(ctx context.Context, c *resourceapi.ResourceClaim) ([]kubeletplugin.Device, error) {
	dir := d.claimDir(c.UID)
	if s, err := readState(dir); err == nil {
		return s.result(), nil // prepared before (kubelet or driver restart)
	}
	if c.Status.Allocation == nil {
		return nil, fmt.Errorf("claim %s/%s is not allocated", c.Namespace, c.Name)
	}
	d.mu.Lock()
	inv := d.inv
	d.mu.Unlock()
	if inv == nil {
		return nil, errors.New("no inventory loaded on this node")
	}
	byDevice := map[string]*engine.BoardSpec{}
	for _, b := range inv.Boards {
		byDevice[DeviceName(b.Name)] = b
	}
	busy := d.preparedBoards()
	state := &claimState{UID: c.UID, Namespace: c.Namespace, Name: c.Name}
	var boards []*engine.BoardSpec
	for _, r := range c.Status.Allocation.Devices.Results {
		if r.Driver != d.cfg.DriverName {
			continue
		}
		if r.Pool != d.cfg.NodeName {
			return nil, fmt.Errorf("device %s/%s is in pool %s, not this node's (%s)", r.Pool, r.Device, r.Pool, d.cfg.NodeName)
		}
		b := byDevice[r.Device]
		if b == nil {
			return nil, fmt.Errorf("device %s is not a board of this node's inventory (any more)", r.Device)
		}
		if other := busy[b.Name]; other != nil && other.UID != c.UID {
			return nil, fmt.Errorf("board %s is already prepared for claim %s/%s (%s)", b.Name, other.Namespace, other.Name, other.UID)
		}
		boards = append(boards, b)
		state.Devices = append(state.Devices, preparedDevice{
			Requests: []string{r.Request}, Pool: r.Pool, Device: r.Device, Board: b.Name,
			CDIID: cdiparser.QualifiedName(d.cfg.DriverName, CDIClass, string(c.UID)+"-"+r.Device),
		})
	}
	if len(boards) == 0 {
		return nil, nil
	}
	doc, err := BoardsDocument(boards)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	inventory := filepath.Join(dir, "boards.yaml")
	// Readable by the container's user, whatever its UID: the directory is
	// mounted into this claim's containers only.
	if err := os.WriteFile(inventory, doc, 0o444); err != nil {
		return nil, err
	}
	spec := &cdispec.Spec{
		Kind: d.cfg.DriverName + "/" + CDIClass,
		ContainerEdits: cdispec.ContainerEdits{
			Env: []string{"JSPLAN_BOARDS=" + ContainerInventory, "JSPLAN_LOCK_DIR=" + ContainerLockDir},
			Mounts: []*cdispec.Mount{
				{HostPath: inventory, ContainerPath: ContainerInventory, Options: []string{"ro", "bind"}},
				{HostPath: d.cfg.LockDir, ContainerPath: ContainerLockDir, Options: []string{"rw", "bind"}},
			},
		},
	}
	for i, b := range boards {
		edits := cdispec.ContainerEdits{Env: []string{"JSPLAN_BOARD=" + b.Name}}
		nodes, missing := d.cfg.Host.DeviceNodes(b)
		for _, n := range nodes {
			edits.DeviceNodes = append(edits.DeviceNodes, cdiDeviceNode(n))
		}
		for _, m := range missing {
			klog.FromContext(ctx).Info("device node not present at prepare; the container will not see it", "board", b.Name, "node", m.Path)
		}
		_, _, name, _ := cdiparser.ParseQualifiedName(state.Devices[i].CDIID)
		spec.Devices = append(spec.Devices, cdispec.Device{Name: name, ContainerEdits: edits})
	}
	version, err := cdiapi.MinimumRequiredVersion(spec)
	if err != nil {
		return nil, err
	}
	spec.Version = version
	if err := d.cdi.WriteSpec(spec, d.specName(c.UID)); err != nil {
		return nil, fmt.Errorf("writing the CDI spec: %w", err)
	}
	b, _ := json.MarshalIndent(state, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o644); err != nil {
		return nil, err
	}
	return state.result(), nil
}

func (s *claimState) result() []kubeletplugin.Device {
	var out []kubeletplugin.Device
	for _, pd := range s.Devices {
		out = append(out, kubeletplugin.Device{Requests: pd.Requests, PoolName: pd.Pool, DeviceName: pd.Device, CDIDeviceIDs: []string{pd.CDIID}})
	}
	return out
}

// UnprepareResourceClaims implements kubeletplugin.DRAPlugin: the CDI spec
// and the claim's directory go; a claim never prepared is not an error.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	out := map[types.UID]error{}
	for _, c := range claims {
		err := d.cdi.RemoveSpec(d.specName(c.UID))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			out[c.UID] = err
			continue
		}
		out[c.UID] = os.RemoveAll(d.claimDir(c.UID))
	}
	return out, nil
}

// PreparedClaims lists the UIDs of the claims prepared on this node.
func (d *Driver) PreparedClaims() []string {
	dirs, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "claims", "*"))
	var out []string
	for _, dir := range dirs {
		out = append(out, filepath.Base(dir))
	}
	sort.Strings(out)
	return out
}

// cdiDeviceNode is n for a CDI spec, with the group and mode the node has on
// the host (as udev set them: dialout for serial adapters, disk for block
// devices, plugdev for USB harnesses). The runtime creates the container's
// node owned by root unless told otherwise, so without the group a
// container user in dialout could not open its own board's console.
func cdiDeviceNode(n DeviceNode) *cdispec.DeviceNode {
	dn := &cdispec.DeviceNode{Path: n.Path, HostPath: n.HostPath}
	if fi, err := os.Stat(n.HostPath); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			gid := st.Gid
			mode := os.FileMode(st.Mode &^ syscall.S_IFMT)
			dn.GID = &gid
			dn.FileMode = &mode
		}
	}
	return dn
}
