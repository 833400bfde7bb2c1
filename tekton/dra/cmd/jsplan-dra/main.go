// Command jsplan-dra is the DRA kubelet plugin for jsplan boards: it runs on
// every node with boards (a DaemonSet, see ../../deploy) and lets the
// Kubernetes scheduler place pods next to a free board that matches their
// claim.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"github.com/jsplan/jsplan/tekton/dra/driver"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	var (
		inventory  = flag.String("inventory", env("JSPLAN_BOARDS", "/etc/jsplan/boards.yaml"), "the node's Boards `file` ($JSPLAN_BOARDS)")
		nodeName   = flag.String("node-name", env("NODE_NAME", ""), "this node's name ($NODE_NAME)")
		driverName = flag.String("driver-name", driver.DefaultDriverName, "the DRA driver name")
		pluginDir  = flag.String("plugin-dir", env("JSPLAN_DRA_PLUGIN_DIR", kubeletplugin.KubeletPluginsDir+"/"+driver.DefaultDriverName), "kubelet plugin `dir`: the DRA socket and the prepared claims")
		registry   = flag.String("registry-dir", kubeletplugin.KubeletRegistryDir, "the kubelet's plugin registration `dir`")
		cdiDir     = flag.String("cdi-dir", "/var/run/cdi", "where CDI specs are written")
		lockDir    = flag.String("lock-dir", env("JSPLAN_LOCK_DIR", "/var/lock/jsplan"), "the node's jsplan lock `dir`: the driver holds a prepared board's lock there for its claim")
		stateDir   = flag.String("state-dir", env("JSPLAN_STATE_DIR", "/var/lib/jsplan"), "jsplan driver state for the health check")
		jsplanBin  = flag.String("jsplan", "jsplan", "the jsplan binary for the health check")
		check      = flag.Duration("check-interval", 5*time.Minute, "run `jsplan boards list --check` this often (0: only watch device nodes)")
		poll       = flag.Duration("poll-interval", 5*time.Second, "look at the inventory and the device nodes this often")
		access     = flag.String("access", env("JSPLAN_DRA_ACCESS", string(driver.AccessDevices)), "how a pod reaches its boards: their device nodes (devices), or only a socket and a lease token of an agent in this driver that drives the hardware (agent) ($JSPLAN_DRA_ACCESS)")
		unhealthy  = flag.String("unhealthy", string(driver.UnhealthyAuto), "an unhealthy board is tainted (taint), left out (remove), or tainted while the API server keeps taints (auto)")
		kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig `file` (default: in-cluster)")
		podUID     = flag.String("pod-uid", env("POD_UID", ""), "this driver pod's UID ($POD_UID): lets a new driver pod serve next to the old one during a rolling update (kubelet 1.33+); empty: no overlap")
		probe      = flag.Bool("probe", false, "check that the driver running with these flags answers on its sockets, and exit (the DaemonSet's startup and liveness probe)")
	)
	klog.InitFlags(nil)
	flag.Parse()
	if *probe {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s := driver.SocketPaths(*driverName, *registry, *pluginDir, types.UID(*podUID))
		if err := s.Check(ctx, *driverName); err != nil {
			fmt.Fprintln(os.Stderr, "jsplan-dra: probe:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*kubeconfig, types.UID(*podUID), driver.Config{
		DriverName: *driverName, NodeName: *nodeName, Inventory: *inventory, StateDir: *pluginDir,
		CDIDir: *cdiDir, LockDir: *lockDir, Host: driver.Host{Root: "/"}, CheckInterval: *check,
		PollInterval: *poll, Unhealthy: driver.UnhealthyMode(*unhealthy), Access: driver.Access(*access),
		Prober: driver.JsplanProber{Jsplan: *jsplanBin, LockDir: *lockDir, StateDir: *stateDir},
	}, *registry); err != nil {
		fmt.Fprintln(os.Stderr, "jsplan-dra:", err)
		os.Exit(1)
	}
}

func run(kubeconfig string, podUID types.UID, cfg driver.Config, registry string) error {
	switch cfg.Unhealthy {
	case driver.UnhealthyAuto, driver.UnhealthyTaint, driver.UnhealthyRemove:
	default:
		return fmt.Errorf("--unhealthy must be auto, taint or remove, not %q", cfg.Unhealthy)
	}
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return err
	}
	if cfg.KubeClient, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := []kubeletplugin.Option{kubeletplugin.RegistrarDirectoryPath(registry), kubeletplugin.PluginDataDirectoryPath(cfg.StateDir)}
	if podUID != "" {
		opts = append(opts, kubeletplugin.RollingUpdate(podUID))
	}
	d, err := driver.Start(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		d.Stop()
		return nil
	case <-d.Done():
		d.Stop()
		return d.Err()
	}
}
