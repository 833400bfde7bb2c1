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
	"slices"
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
	"github.com/jsplan/jsplan/internal/boardenv"
	"github.com/jsplan/jsplan/internal/lock"
)

// Defaults of Config.
const (
	DefaultDriverName = "jsplan.dev"
	// CDIClass is the CDI class of the devices the driver prepares.
	CDIClass = "board"
	// ContainerInventory is where the container finds its one-board
	// inventory (JSPLAN_BOARDS points there).
	ContainerInventory = "/etc/jsplan/boards.yaml"
	// ContainerLockDir is where the container finds its claim's own lock
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
	// LockDir is the node's jsplan lock directory: the driver holds a
	// prepared board's lock there on behalf of its claim. The container
	// gets a lock directory of its own at ContainerLockDir.
	LockDir string
	// BootIDFile holds the node's boot ID (default
	// /proc/sys/kernel/random/boot_id): claims prepared in an earlier boot
	// are dropped at start.
	BootIDFile string
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
	// Access is how pods reach their boards (default AccessDevices).
	Access Access
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
	rated      map[string]Health // bad in the boards' health records
	taint      bool
	published  []resourceapi.Device
	lastFail   failure
	publishErr error
	locks      map[types.UID]*lock.Set   // the node locks held per claim
	agents     map[types.UID]*claimAgent // agent-access claims' agents

	bootID       string
	prepMu       sync.Mutex // prepare, unprepare, relock
	relockWarned map[types.UID]bool
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
	switch cfg.Access {
	case "":
		cfg.Access = AccessDevices
	case AccessDevices, AccessAgent:
	default:
		return nil, fmt.Errorf("jsplan DRA driver: access %q is neither %q nor %q", cfg.Access, AccessDevices, AccessAgent)
	}
	if cfg.BootIDFile == "" {
		cfg.BootIDFile = "/proc/sys/kernel/random/boot_id"
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
		probed: map[string]Health{}, absent: map[string]Health{}, locks: map[types.UID]*lock.Set{}, agents: map[types.UID]*claimAgent{},
		bootID: readBootID(cfg.BootIDFile), relockWarned: map[types.UID]bool{}}
	d.recover(ctx)
	d.relock(ctx)
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
		d.releaseAll()
		return nil, err
	}
	if err := d.publish(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	go d.loop(ctx)
	return d, nil
}

// Stop ends the plugin's services and loop and lets go of the board locks
// it holds, as its exit would. Prepared claims stay on disk: a driver
// started again takes their locks again.
func (d *Driver) Stop() {
	d.cancel(errors.New("stopped"))
	d.helper.Stop()
	d.releaseAll()
}

// releaseAll lets go of every board lock the driver holds and ends the
// claims' agents (their boards are powered off).
func (d *Driver) releaseAll() {
	d.prepMu.Lock()
	defer d.prepMu.Unlock()
	d.mu.Lock()
	uids := make([]types.UID, 0, len(d.locks))
	for uid := range d.locks {
		uids = append(uids, uid)
	}
	for uid := range d.agents {
		if !slices.Contains(uids, uid) {
			uids = append(uids, uid)
		}
	}
	d.mu.Unlock()
	for _, uid := range uids {
		d.stopAgent(uid)
		d.releaseLocks(uid)
	}
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
		f := failure{read: true}
		if !errors.As(err, &f.errno) {
			f.read = false // not an errno: nothing tells it is the same failure, logged each time
		}
		return d.noteErr(ctx, f, err)
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
		return d.noteErr(ctx, failure{sum: sum}, err)
	}
	d.mu.Lock()
	d.inv, d.invSum, d.lastFail = inv, sum, failure{}
	d.mu.Unlock()
	klog.FromContext(ctx).Info("inventory loaded", "file", d.cfg.Inventory, "boards", inv.Names())
	return nil
}

// failure is what made the inventory unusable, so that the same one is
// logged once while it lasts: the file unreadable for one reason (an
// errno), or one content that does not load.
type failure struct {
	read  bool
	errno syscall.Errno
	sum   [sha256.Size]byte
}

func (d *Driver) noteErr(ctx context.Context, f failure, err error) error {
	d.mu.Lock()
	repeat := f != (failure{}) && f == d.lastFail
	d.lastFail = f
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
	rated, err := ratedHealth(d.cfg.LockDir, inv)
	if err != nil {
		klog.Background().Error(err, "reading the boards' health records")
	}
	d.mu.Lock()
	d.absent = absent
	if err == nil {
		d.rated = rated
	}
	d.mu.Unlock()
}

// unhealthy merges the sources of bad health: the prober, missing fixed
// device nodes and the health records (a failed health check).
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
	for n, h := range d.rated {
		if _, ok := out[n]; !ok {
			out[n] = h
		}
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
	var slices []resourceslice.Slice
	for i := 0; i < len(devs); i += MaxSliceDevices {
		slices = append(slices, resourceslice.Slice{Devices: devs[i:min(i+MaxSliceDevices, len(devs))]})
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
			d.relock(ctx)
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
// StateDir/claims/<uid>/state.json, so that a restarted driver still knows
// it. BootID is the node's boot the claim was prepared in.
type claimState struct {
	UID       types.UID        `json:"uid"`
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	BootID    string           `json:"bootID"`
	Devices   []preparedDevice `json:"devices"`
	// Agent: the pod reaches its boards through the claim's agent
	// (AccessAgent); OwnerUID and OwnerGID are the pod's, for the files
	// the agent makes again after a driver restart.
	Agent    bool   `json:"agent,omitempty"`
	OwnerUID *int64 `json:"ownerUID,omitempty"`
	OwnerGID *int64 `json:"ownerGID,omitempty"`
}

type preparedDevice struct {
	Requests []string `json:"requests"`
	Pool     string   `json:"pool"`
	Device   string   `json:"device"`
	Board    string   `json:"board"`
	CDIID    string   `json:"cdiID"`
	// Admin is an admin-access allocation: an observer, holding no lock.
	Admin bool `json:"admin,omitempty"`
	// Resource is set for a share of a shared resource (Board then names
	// the resource): several claims hold one at once, up to its capacity.
	Resource bool `json:"resource,omitempty"`
	// Shares is how many shares of the resource the claim holds, and
	// Kind the resource's kind.
	Shares int    `json:"shares,omitempty"`
	Kind   string `json:"kind,omitempty"`
	// Capacity is the resource's capacity in the node's inventory: how
	// many slots its lock has.
	Capacity int `json:"capacity,omitempty"`
}

// RoleEnv is the environment variable that names a request's device in the
// container: prefix plus the request's name in upper case, characters
// outside [A-Z0-9] as "_" (request "dut" is JSPLAN_BOARD_DUT).
func RoleEnv(prefix, request string) string { return boardenv.Name(prefix, request) }

// shareSuffix tells apart the CDI devices of one claim's shares of a
// device that several requests of the claim hold.
func shareSuffix(id *types.UID) string {
	if id == nil {
		return ""
	}
	return "-" + string(*id)
}

func (d *Driver) claimDir(uid types.UID) string {
	return filepath.Join(d.cfg.StateDir, "claims", string(uid))
}

func (d *Driver) specName(uid types.UID) string {
	return cdiapi.GenerateTransientSpecName(d.cfg.DriverName, CDIClass, string(uid))
}

// specExists reports whether the claim's CDI spec is in the CDI directory.
func (d *Driver) specExists(uid types.UID) bool {
	for _, ext := range []string{".yaml", ".json"} {
		if fi, err := os.Stat(filepath.Join(d.cfg.CDIDir, d.specName(uid)+ext)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

func readState(dir string) (*claimState, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var s claimState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	return &s, nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over path, and the directory synced, so
// that a crash or power loss leaves the old content or the new, never a
// torn file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readBootID reads the node's boot ID ("" when it cannot be read).
func readBootID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// recover runs at start: it drops the claims that did not survive (prepared
// in an earlier boot of the node, or whose CDI spec is gone: the CDI
// directory was wiped, by a reboot or by hand, or a state file is
// unreadable), and the CDI specs of this driver that belong to no prepared
// claim. The kubelet prepares again any claim whose pod still needs it.
func (d *Driver) recover(ctx context.Context) {
	logger := klog.FromContext(ctx)
	dirs, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "claims", "*"))
	kept := map[string]bool{}
	for _, dir := range dirs {
		uid := types.UID(filepath.Base(dir))
		s, err := readState(dir)
		var why string
		switch {
		case err != nil:
			why = "unreadable state: " + err.Error()
		case s.BootID != d.bootID:
			why = fmt.Sprintf("prepared in an earlier boot of the node (%s, now %s)", s.BootID, d.bootID)
		case !d.specExists(uid):
			why = "its CDI spec is gone"
		}
		if why == "" {
			kept[string(uid)] = true
			continue
		}
		logger.Info("dropping a stale prepared claim", "uid", uid, "reason", why)
		if err := d.remove(uid); err != nil {
			logger.Error(err, "dropping a stale prepared claim", "uid", uid)
		}
	}
	prefix := d.specName("")
	specs, _ := os.ReadDir(d.cfg.CDIDir)
	for _, e := range specs {
		name := e.Name()
		ext := filepath.Ext(name)
		if !strings.HasPrefix(name, prefix) || (ext != ".yaml" && ext != ".json") {
			continue
		}
		if uid := strings.TrimSuffix(strings.TrimPrefix(name, prefix), ext); !kept[uid] {
			logger.Info("removing a CDI spec of no prepared claim", "file", name)
			if err := os.Remove(filepath.Join(d.cfg.CDIDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				logger.Error(err, "removing an orphaned CDI spec")
			}
		}
	}
}

// preparedBoards maps each board prepared for some claim (not as an
// admin-access observer) to that claim.
func (d *Driver) preparedBoards() map[string]*claimState {
	out := map[string]*claimState{}
	dirs, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "claims", "*"))
	for _, dir := range dirs {
		if s, err := readState(dir); err == nil {
			for _, pd := range s.Devices {
				if !pd.Admin && !pd.Resource {
					out[pd.Board] = s
				}
			}
		}
	}
	return out
}

// holder is the lock holder record the driver writes for a claim: `jsplan
// boards list` and `jsplan console` on the node show the board busy with it.
func (d *Driver) holder(s *claimState) lock.Holder {
	return lock.Holder{
		Plan: fmt.Sprintf("ResourceClaim %s/%s (uid %s)", s.Namespace, s.Name, s.UID),
		PID:  os.Getpid(), Host: d.cfg.NodeName, User: "jsplan-dra", Since: time.Now(),
	}
}

// lockBoards takes the node's lock of every board of s that is not an
// admin-access observer, and a slot of each shared resource per share the
// claim holds, on behalf of the claim: as jsplan takes a run's locks, all
// together in the global order, or none (it never waits).
func (d *Driver) lockBoards(s *claimState) (*lock.Set, error) {
	var wants []lock.Want
	for _, pd := range s.Devices {
		switch {
		case pd.Admin:
		case s.Agent:
			// The claim's agent holds the board's lock with its lease.
			if pd.Resource {
				for range max(pd.Shares, 1) {
					wants = append(wants, lock.Want{Name: pd.Board, Capacity: max(pd.Capacity, 1)})
				}
			}
		case pd.Resource:
			for range max(pd.Shares, 1) {
				wants = append(wants, lock.Want{Name: pd.Board, Capacity: max(pd.Capacity, 1)})
			}
		default:
			wants = append(wants, lock.Want{Name: pd.Board})
		}
	}
	if len(wants) == 0 {
		return &lock.Set{}, nil
	}
	set, _, err := lock.AcquireAll(d.ctx, d.cfg.LockDir, [][]lock.Want{wants}, d.holder(s), 0, nil)
	if be := (*lock.BusyError)(nil); errors.As(err, &be) {
		who := "another run"
		if be.Holder != nil {
			who = be.Holder.String()
		}
		return nil, fmt.Errorf("%s is busy on the node: held by %s", be.What, who)
	}
	return set, err
}

// relock makes the node locks held match the prepared claims: it takes
// again the locks of prepared claims that hold none (after a driver restart;
// while an older driver instance still runs, it holds them and a later try
// succeeds once it exits), and lets go of the locks of claims another
// instance unprepared (during a rolling update the kubelet may prepare a
// claim through one instance and unprepare it through the other).
func (d *Driver) relock(ctx context.Context) {
	d.prepMu.Lock()
	defer d.prepMu.Unlock()
	if d.ctx.Err() != nil {
		return // stopped: the locks were let go
	}
	dirs, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "claims", "*"))
	prepared := map[types.UID]bool{}
	for _, dir := range dirs {
		prepared[types.UID(filepath.Base(dir))] = true
	}
	d.mu.Lock()
	var gone []types.UID
	for uid := range d.locks {
		if !prepared[uid] {
			gone = append(gone, uid)
		}
	}
	d.mu.Unlock()
	for _, uid := range gone {
		d.releaseLocks(uid)
	}
	for _, dir := range dirs {
		uid := types.UID(filepath.Base(dir))
		d.mu.Lock()
		_, have := d.locks[uid]
		_, serving := d.agents[uid]
		d.mu.Unlock()
		if have && serving {
			continue
		}
		s, err := readState(dir)
		if err != nil {
			continue
		}
		if !have {
			held, err := d.lockBoards(s)
			if err != nil {
				d.relockWarn(ctx, s, "a prepared claim's board lock is not held yet", err)
				continue
			}
			d.mu.Lock()
			d.locks[uid] = held
			d.mu.Unlock()
		}
		if s.Agent && !serving {
			// The claim's agent ended with the driver that ran it: serve
			// its boards again, under new leases (new token files; a run
			// that held the old ones failed with the agent).
			boards, err := d.agentBoards(s)
			if err == nil && len(boards) > 0 {
				err = d.startAgent(ctx, s, boards, podOwner{uid: s.OwnerUID, gid: s.OwnerGID})
			}
			if err != nil {
				d.relockWarn(ctx, s, "a prepared claim's agent is not serving yet", err)
				continue
			}
		}
		delete(d.relockWarned, uid)
	}
}

// relockWarn logs once per claim why relock could not restore it yet.
func (d *Driver) relockWarn(ctx context.Context, s *claimState, msg string, err error) {
	if !d.relockWarned[s.UID] {
		klog.FromContext(ctx).Info(msg, "claim", klog.KRef(s.Namespace, s.Name), "err", err.Error())
		d.relockWarned[s.UID] = true
	}
}

// releaseLocks drops the node locks held for a claim.
func (d *Driver) releaseLocks(uid types.UID) {
	d.mu.Lock()
	held := d.locks[uid]
	delete(d.locks, uid)
	d.mu.Unlock()
	_ = held.Release()
}

// remove forgets a claim: its locks, CDI spec and directory.
func (d *Driver) remove(uid types.UID) error {
	d.stopAgent(uid)
	d.releaseLocks(uid)
	if err := d.cdi.RemoveSpec(d.specName(uid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.RemoveAll(d.claimDir(uid))
}

// PrepareResourceClaims implements kubeletplugin.DRAPlugin.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d.prepMu.Lock()
	defer d.prepMu.Unlock()
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
	s, err := readState(dir)
	switch {
	case err == nil && s.BootID == d.bootID && d.specExists(c.UID):
		return s.result(), nil // prepared before (kubelet or driver restart)
	case err == nil:
		// The CDI spec is gone (or the node rebooted): prepare anew.
		klog.FromContext(ctx).Info("re-preparing a claim whose CDI spec is gone", "claim", klog.KObj(c))
	case !errors.Is(err, os.ErrNotExist):
		klog.FromContext(ctx).Info("re-preparing a claim whose state is unreadable", "claim", klog.KObj(c), "err", err.Error())
	}
	// Whatever is left of an earlier or interrupted prepare goes first.
	if err := d.remove(c.UID); err != nil {
		return nil, err
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
	resources := map[string]*engine.ResourceSpec{}
	for _, r := range inv.Resources {
		resources[ResourceDeviceName(r.Name)] = r
	}
	busy := d.preparedBoards()
	state := &claimState{UID: c.UID, Namespace: c.Namespace, Name: c.Name, BootID: d.bootID, Agent: d.cfg.Access == AccessAgent}
	var boards []*engine.BoardSpec
	for _, r := range c.Status.Allocation.Devices.Results {
		if r.Driver != d.cfg.DriverName {
			continue
		}
		if r.Pool != d.cfg.NodeName {
			return nil, fmt.Errorf("device %s/%s is in pool %s, not this node's (%s)", r.Pool, r.Device, r.Pool, d.cfg.NodeName)
		}
		if res := resources[r.Device]; res != nil && byDevice[r.Device] == nil {
			state.Devices = append(state.Devices, preparedDevice{
				Requests: []string{r.Request}, Pool: r.Pool, Device: r.Device, Board: res.Name, Resource: true, Shares: consumedShares(r), Kind: res.Kind, Capacity: res.Capacity,
				CDIID: cdiparser.QualifiedName(d.cfg.DriverName, CDIClass, string(c.UID)+"-"+r.Device+shareSuffix(r.ShareID)),
			})
			continue
		}
		b := byDevice[r.Device]
		if b == nil {
			return nil, fmt.Errorf("device %s is not a board of this node's inventory (any more)", r.Device)
		}
		admin := r.AdminAccess != nil && *r.AdminAccess
		if other := busy[b.Name]; !admin && other != nil && other.UID != c.UID {
			return nil, fmt.Errorf("board %s is already prepared for claim %s/%s (%s)", b.Name, other.Namespace, other.Name, other.UID)
		}
		boards = append(boards, b)
		state.Devices = append(state.Devices, preparedDevice{
			Requests: []string{r.Request}, Pool: r.Pool, Device: r.Device, Board: b.Name, Admin: admin,
			CDIID: cdiparser.QualifiedName(d.cfg.DriverName, CDIClass, string(c.UID)+"-"+r.Device),
		})
	}
	if len(state.Devices) == 0 {
		return nil, nil
	}
	held, err := d.lockBoards(state)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.locks[c.UID] = held
	d.mu.Unlock()
	if err := d.write(ctx, c, state, boards); err != nil {
		if rerr := d.remove(c.UID); rerr != nil {
			klog.FromContext(ctx).Error(rerr, "cleaning up after a failed prepare", "claim", klog.KObj(c))
		}
		return nil, err
	}
	return state.result(), nil
}

// write writes a claim's files: the run's inventory, its private lock
// directory, the CDI spec, and last the state that says it is prepared.
func (d *Driver) write(ctx context.Context, c *resourceapi.ResourceClaim, state *claimState, boards []*engine.BoardSpec) error {
	dir := d.claimDir(c.UID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ids := d.podIDs(ctx, c)
	state.OwnerUID, state.OwnerGID = ids.uid, ids.gid
	var served []*engine.BoardSpec // boards the claim's agent serves
	if state.Agent {
		admin := map[string]bool{}
		for _, pd := range state.Devices {
			admin[pd.Board] = pd.Admin
		}
		for _, b := range boards {
			if !admin[b.Name] {
				served = append(served, b)
			}
		}
		if len(served) > 0 {
			if err := d.startAgent(ctx, state, served, ids); err != nil {
				return err
			}
		}
	}
	var shares []Share
	for _, pd := range state.Devices {
		if pd.Resource {
			shares = append(shares, Share{Resource: pd.Board, Kind: pd.Kind, Count: pd.Shares})
		}
	}
	remote := map[string]string{}
	for _, b := range served {
		remote[b.Name] = tokenFile(b.Name)
	}
	doc, err := boardsDocument(boards, shares, remote)
	if err != nil {
		return err
	}
	inventory := filepath.Join(dir, "boards.yaml")
	if err := writeFileAtomic(inventory, doc, ids.fileMode()); err != nil {
		return err
	}
	if err := ids.chown(inventory); err != nil {
		return err
	}
	user := false
	for _, pd := range state.Devices {
		user = user || !pd.Admin
	}
	edits := cdispec.ContainerEdits{
		Env:    []string{"JSPLAN_BOARDS=" + ContainerInventory},
		Mounts: []*cdispec.Mount{{HostPath: inventory, ContainerPath: ContainerInventory, Options: []string{"ro", "bind"}}},
	}
	if state.Agent && len(served) > 0 {
		// The claim's agent socket and lease tokens: all the pod gets of
		// its boards.
		edits.Mounts = append(edits.Mounts, &cdispec.Mount{HostPath: d.leaseDir(c.UID), ContainerPath: ContainerLeaseDir, Options: []string{"rw", "bind"}})
	} else if user {
		// The run's own lock directory: the board's lock on the node is
		// held by the driver for the claim, so the run's jsplan locks in a
		// directory of its own, shared with no one.
		locks := filepath.Join(dir, "locks")
		if err := os.Mkdir(locks, 0o700); err != nil {
			return err
		}
		if err := ids.lockDir(locks); err != nil {
			return err
		}
		edits.Env = append(edits.Env, "JSPLAN_LOCK_DIR="+ContainerLockDir)
		edits.Mounts = append(edits.Mounts, &cdispec.Mount{HostPath: locks, ContainerPath: ContainerLockDir, Options: []string{"rw", "bind"}})
	}
	spec := &cdispec.Spec{Kind: d.cfg.DriverName + "/" + CDIClass, ContainerEdits: edits}
	byName := map[string]*engine.BoardSpec{}
	for _, b := range boards {
		byName[b.Name] = b
	}
	for _, pd := range state.Devices {
		_, _, name, _ := cdiparser.ParseQualifiedName(pd.CDIID)
		var edits cdispec.ContainerEdits
		for _, req := range pd.Requests {
			// Each request (a plan's role) names its board or resource:
			// JSPLAN_BOARD_DUT=orin-nx-1, JSPLAN_RESOURCE_BUS=can0.
			if pd.Resource {
				edits.Env = append(edits.Env, RoleEnv("JSPLAN_RESOURCE_", req)+"="+pd.Board)
			} else {
				edits.Env = append(edits.Env, RoleEnv("JSPLAN_BOARD_", req)+"="+pd.Board)
			}
		}
		if pd.Resource {
			spec.Devices = append(spec.Devices, cdispec.Device{Name: name, ContainerEdits: edits})
			continue
		}
		b := byName[pd.Board]
		if len(boards) == 1 {
			// One board: it is the run's board, as --board would say.
			edits.Env = append(edits.Env, "JSPLAN_BOARD="+b.Name)
		}
		if pd.Admin {
			// An observer: it sees which board and its inventory entry,
			// and gets no device node.
			edits.Env = append(edits.Env, "JSPLAN_ADMIN_ACCESS=true")
		} else if !state.Agent {
			nodes, missing := d.cfg.Host.DeviceNodes(b)
			for _, n := range nodes {
				if containerless(n) {
					klog.FromContext(ctx).Info("a pseudo-terminal cannot be a container's device node; the container will not see it", "board", b.Name, "node", n.Path, "target", n.HostPath)
					continue
				}
				edits.DeviceNodes = append(edits.DeviceNodes, cdiDeviceNode(n))
			}
			for _, m := range missing {
				klog.FromContext(ctx).Info("device node not present at prepare; the container will not see it", "board", b.Name, "node", m.Path)
			}
		}
		spec.Devices = append(spec.Devices, cdispec.Device{Name: name, ContainerEdits: edits})
	}
	version, err := cdispec.MinimumRequiredVersion(spec)
	if err != nil {
		return err
	}
	spec.Version = version
	if err := d.cdi.WriteSpec(spec, d.specName(c.UID)); err != nil {
		return fmt.Errorf("writing the CDI spec: %w", err)
	}
	b, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "state.json"), b, 0o600)
}

func (s *claimState) result() []kubeletplugin.Device {
	var out []kubeletplugin.Device
	for _, pd := range s.Devices {
		out = append(out, kubeletplugin.Device{Requests: pd.Requests, PoolName: pd.Pool, DeviceName: pd.Device, CDIDeviceIDs: []string{pd.CDIID}})
	}
	return out
}

// UnprepareResourceClaims implements kubeletplugin.DRAPlugin: the board
// locks are released, the CDI spec and the claim's directory go; a claim
// never prepared (or already dropped as stale) is not an error.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.prepMu.Lock()
	defer d.prepMu.Unlock()
	out := map[types.UID]error{}
	for _, c := range claims {
		d.harvest(ctx, c.UID)
		out[c.UID] = d.remove(c.UID)
	}
	return out, nil
}

// harvest records in the node's health records what the claim's runs said
// of its boards (an infrastructure failure makes a board suspect).
func (d *Driver) harvest(ctx context.Context, uid types.UID) {
	s, err := readState(d.claimDir(uid))
	if err != nil {
		return
	}
	var boards []string
	for _, pd := range s.Devices {
		if !pd.Admin && !pd.Resource {
			boards = append(boards, pd.Board)
		}
	}
	if err := harvestRuns(filepath.Join(d.claimDir(uid), "locks"), d.cfg.LockDir, boards); err != nil {
		klog.FromContext(ctx).Error(err, "recording the claim's runs in the boards' health", "claim", klog.KRef(s.Namespace, s.Name))
	}
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

// LockedClaims lists the UIDs of the prepared claims whose board locks the
// driver holds.
func (d *Driver) LockedClaims() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for uid := range d.locks {
		out = append(out, string(uid))
	}
	sort.Strings(out)
	return out
}

// containerless reports whether n is a node no container can be given: a
// pseudo-terminal's (a console simulator's, or a UART exported by a
// program as a pty) lives in the host's devpts instance, and the runtime
// refuses to create it in the container's (found on the real node: the
// container then never started).
func containerless(n DeviceNode) bool {
	return strings.HasPrefix(n.HostPath, "/dev/pts/") || n.HostPath == "/dev/ptmx"
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

// consumedShares is how many shares of a resource an allocation result
// took (1 when the scheduler recorded none).
func consumedShares(r resourceapi.DeviceRequestAllocationResult) int {
	if q, ok := r.ConsumedCapacity[ShareCapacity]; ok && q.Value() > 0 {
		return int(q.Value())
	}
	return 1
}
