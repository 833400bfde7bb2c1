package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The node's addresses. The node lives in a network namespace of its own
// with only a loopback interface; NodeIP and ServiceIP are addresses on it.
// ServiceIP is the "kubernetes" Service's cluster IP: with no kube-proxy
// here, the address itself stands in for the rule that would forward it to
// the API server, which listens on port 443 of every address.
const (
	NodeName    = "jsplan-node-1"
	NodeIP      = "10.250.0.1"
	ServiceIP   = "10.96.0.1"
	ServiceCIDR = "10.96.0.0/16"
	PodCIDR     = "10.244.0.0/24"
	APIServer   = "https://127.0.0.1:443"
)

// Binaries are the node's programs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kubelet, Kubectl string
	Containerd, Ctr, ShimDir                                        string // ShimDir holds containerd-shim-runc-v2
	Runc, Pause                                                     string
	CNIDir                                                          string // bridge, host-local, loopback, portmap
	TektonController, TektonResolvers                               string
	TektonConfig                                                    string // config/ of tektoncd/pipeline
}

// Node is a one-node Kubernetes cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd (runc, CDI) and a
// kubelet, each a process of its own. It must run inside the namespaces
// Isolate makes, where the system paths it uses (/var/lib/kubelet,
// /run, /etc/cdi, ...) are private mounts.
type Node struct {
	Root string // the node's files: pki, configs, data, logs
	Bin  Binaries
	Log  io.Writer // progress lines

	pki   *pki
	procs []*proc
	// Admin is the kubeconfig of a cluster administrator (system:masters).
	Admin string
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (n *Node) logf(format string, args ...any) {
	if n.Log != nil {
		fmt.Fprintf(n.Log, "%s cluster: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

func (n *Node) path(p ...string) string { return filepath.Join(append([]string{n.Root}, p...)...) }

// LogFile is where component name writes its output.
func (n *Node) LogFile(name string) string { return n.path("logs", name+".log") }

// start runs a component in the background, its output in its log file.
func (n *Node) start(name string, env []string, argv ...string) (*proc, error) {
	if err := os.MkdirAll(n.path("logs"), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(n.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	n.procs = append(n.procs, p)
	n.logf("started %s (pid %d)", name, cmd.Process.Pid)
	return p, nil
}

// Stop ends the components in the reverse order of their start: SIGTERM,
// then SIGKILL to the process group after 15 seconds.
func (n *Node) Stop() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		n.stopProc(n.procs[i], 15*time.Second)
	}
	n.procs = nil
}

func (n *Node) stopProc(p *proc, grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Exited reports an error for every component that has ended.
func (n *Node) Exited() error {
	var errs []error
	for _, p := range n.procs {
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("%s exited: %v (log %s)", p.name, p.err, n.LogFile(p.name)))
		default:
		}
	}
	return errors.Join(errs...)
}

// Start brings the node up and returns when the kubelet's Node is Ready.
func (n *Node) Start(ctx context.Context) error {
	var err error
	for _, d := range []string{"etc", "data", "logs", "cni/net.d"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	if n.pki, err = newPKI(n.path("pki")); err != nil {
		return err
	}
	p := n.pki
	for _, c := range []struct {
		name, cn string
		orgs     []string
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, []string{"127.0.0.1", NodeIP, ServiceIP, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{"admin", "jsplan-admin", []string{"system:masters"}, nil},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{"controller-manager", "system:kube-controller-manager", nil, nil},
		{"scheduler", "system:kube-scheduler", nil, nil},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, nil},
		{"kubelet-serving", "system:node:" + NodeName, []string{"system:nodes"}, []string{NodeIP, "127.0.0.1", NodeName}},
	} {
		if err := p.issue(c.name, c.cn, c.orgs, c.hosts...); err != nil {
			return err
		}
	}
	kc := map[string]string{}
	for _, name := range []string{"admin", "controller-manager", "scheduler", "kubelet"} {
		if kc[name], err = p.kubeconfig(name, APIServer); err != nil {
			return err
		}
	}
	n.Admin = kc["admin"]

	// etcd
	if _, err := n.start("etcd", nil, n.Bin.Etcd, "--data-dir", n.path("data", "etcd")); err != nil {
		return err
	}
	if err := waitTCP(ctx, "127.0.0.1:2379", time.Minute); err != nil {
		return fmt.Errorf("etcd: %w (log %s)", err, n.LogFile("etcd"))
	}

	// kube-apiserver
	if _, err := n.start("kube-apiserver", nil, n.Bin.APIServer,
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--secure-port=443", "--advertise-address="+NodeIP,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--tls-cert-file="+p.path("apiserver.crt"), "--tls-private-key-file="+p.path("apiserver.key"),
		"--client-ca-file="+p.path("ca.crt"),
		"--kubelet-client-certificate="+p.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+p.path("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.path("sa.pub"),
		"--service-account-signing-key-file="+p.path("sa.key"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	if err := n.waitHTTPS(ctx, "/readyz", 3*time.Minute); err != nil {
		return fmt.Errorf("kube-apiserver: %w (log %s)", err, n.LogFile("kube-apiserver"))
	}
	n.logf("kube-apiserver ready")

	if _, err := n.start("kube-controller-manager", nil, n.Bin.ControllerManager,
		"--kubeconfig="+kc["controller-manager"],
		"--authentication-kubeconfig="+kc["controller-manager"],
		"--authorization-kubeconfig="+kc["controller-manager"],
		"--bind-address=127.0.0.1", "--secure-port=10257",
		"--service-account-private-key-file="+p.path("sa.key"),
		"--root-ca-file="+p.path("ca.crt"),
		"--use-service-account-credentials=true",
		"--cluster-signing-cert-file="+p.path("ca.crt"),
		"--cluster-signing-key-file="+p.path("ca.key"),
		"--controllers=*,-node-ipam-controller",
		"--leader-elect=false",
		"--v=1",
	); err != nil {
		return err
	}
	if _, err := n.start("kube-scheduler", nil, n.Bin.Scheduler,
		"--kubeconfig="+kc["scheduler"],
		"--authentication-kubeconfig="+kc["scheduler"],
		"--authorization-kubeconfig="+kc["scheduler"],
		"--bind-address=127.0.0.1", "--secure-port=10259",
		"--leader-elect=false",
		"--v=1",
	); err != nil {
		return err
	}

	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	return n.startKubelet(ctx, kc["kubelet"])
}

func (n *Node) startContainerd(ctx context.Context) error {
	cni := n.path("cni", "net.d")
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "jsplan-pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, PodCIDR)
	if err := os.WriteFile(filepath.Join(cni, "10-jsplan.conflist"), []byte(conf), 0o644); err != nil {
		return err
	}
	config := fmt.Sprintf(`version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %q

[plugins."io.containerd.cri.v1.runtime"]
  cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %q
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%q]
    conf_dir = %q
`, PauseImage, n.Bin.Runc, n.Bin.CNIDir, cni)
	file := n.path("etc", "containerd.toml")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		return err
	}
	env := []string{"PATH=" + n.Bin.ShimDir + ":" + filepath.Dir(n.Bin.Runc) + ":" + os.Getenv("PATH")}
	if _, err := n.start("containerd", env, n.Bin.Containerd, "--config", file); err != nil {
		return err
	}
	if err := waitFile(ctx, "/run/containerd/containerd.sock", time.Minute); err != nil {
		return fmt.Errorf("containerd: %w (log %s)", err, n.LogFile("containerd"))
	}
	n.logf("containerd ready")
	return nil
}

// Import loads OCI archives into containerd's k8s.io namespace, where the
// kubelet finds them: the cluster pulls nothing.
func (n *Node) Import(ctx context.Context, archives ...string) error {
	for _, a := range archives {
		cmd := exec.CommandContext(ctx, n.Bin.Ctr, "--address", "/run/containerd/containerd.sock", "-n", "k8s.io",
			"images", "import", "--no-unpack=false", "--snapshotter", "overlayfs", a)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %v\n%s", a, err, out)
		}
		n.logf("imported %s: %s", filepath.Base(a), strings.TrimSpace(string(out)))
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context, kubeconfig string) error {
	p := n.pki
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
cgroupRoot: /jsplan-cluster
enforceNodeAllocatable: []
failSwapOn: false
resolvConf: ""
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: %s
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
clusterDomain: cluster.local
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerNode: true
serializeImagePulls: false
`, NodeIP, p.path("kubelet-serving.crt"), p.path("kubelet-serving.key"), p.path("ca.crt"))
	file := n.path("etc", "kubelet.yaml")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		return err
	}
	if _, err := n.start("kubelet", nil, n.Bin.Kubelet,
		"--config="+file,
		"--kubeconfig="+kubeconfig,
		"--hostname-override="+NodeName,
		"--node-ip="+NodeIP,
		"--cert-dir="+n.path("pki", "kubelet"),
		"--v=1",
	); err != nil {
		return err
	}
	n.logf("waiting for node %s to be Ready", NodeName)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := n.Kubectl(ctx, "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && strings.TrimSpace(out) == "True" {
			n.logf("node %s Ready", NodeName)
			return nil
		}
		if e := n.Exited(); e != nil {
			return e
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not Ready after 3m (%s; log %s)", NodeName, strings.TrimSpace(out), n.LogFile("kubelet"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Kubectl runs kubectl as the cluster's administrator and returns its
// standard output; an error carries its standard error.
func (n *Node) Kubectl(ctx context.Context, args ...string) (string, error) {
	return n.KubectlIn(ctx, nil, args...)
}

// KubectlIn is Kubectl with stdin.
func (n *Node) KubectlIn(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.Bin.Kubectl, append([]string{"--kubeconfig", n.Admin}, args...)...)
	cmd.Stdin = stdin
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (n *Node) waitHTTPS(ctx context.Context, path string, timeout time.Duration) error {
	ca, err := os.ReadFile(n.pki.path("ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(n.pki.path("admin.crt"), n.pki.path("admin.key"))
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.Get(APIServer + path)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		if e := n.Exited(); e != nil {
			return e
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready after %s: %s", timeout, last)
}

func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitFile(ctx context.Context, file string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(file); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
