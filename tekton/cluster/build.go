package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// The pinned releases the node is built from. Kubernetes and etcd come
// from this module's go.mod (k8s.io/kubernetes v1.37.2); the others are
// `go install`ed at these versions, each from its own go.mod.
const (
	ContainerdVersion = "v2.4.2"
	TektonVersion     = "v1.15.1" // the newest tektoncd/pipeline the module proxy serves
	CNIPluginsVersion = "v1.9.0"
)

// Image names of the images built here (no registry serves them).
const (
	PauseImage = "localhost/jsplan-cluster/pause:v1"
	ShellImage = "localhost/jsplan-cluster/busybox:v1"
)

// TektonImage is the name of Tekton's image for one of its commands
// (entrypoint, nop, workingdirinit, sidecarlogresults).
func TektonImage(cmd string) string {
	return "localhost/jsplan-cluster/tekton/" + cmd + ":" + TektonVersion
}

// CacheDir is where built binaries are kept between runs:
// $JSPLAN_CLUSTER_CACHE, else cluster in $JSPLAN_CACHE, else jsplan/cluster
// in the user's cache directory (outside the checkout, so that a fresh
// clone on the same machine finds them).
func CacheDir() string {
	if d := os.Getenv("JSPLAN_CLUSTER_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("JSPLAN_CACHE"); d != "" {
		return filepath.Join(d, "cluster")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "jsplan", "cluster")
}

// Build builds the node's binaries, or finds them in the cache, and
// returns their paths. moduleDir is this module's directory.
func Build(ctx context.Context, moduleDir string, log io.Writer) (Binaries, error) {
	cache := CacheDir()
	var b Binaries
	goInstall := func(name, version string, pkgs ...string) (string, error) {
		dir := filepath.Join(cache, "bin", name+"-"+version)
		ok := true
		for _, p := range pkgs {
			if _, err := os.Stat(filepath.Join(dir, filepath.Base(p))); err != nil {
				ok = false
			}
		}
		if ok {
			return dir, nil
		}
		fmt.Fprintf(log, "cluster: building %s %s (go install; cached in %s)\n", name, version, dir)
		args := []string{"install", "-trimpath"}
		for _, p := range pkgs {
			args = append(args, p+"@"+version)
		}
		return dir, goCmd(ctx, "", []string{"GOBIN=" + dir}, args...)
	}
	dir, err := goInstall("containerd", ContainerdVersion,
		"github.com/containerd/containerd/v2/cmd/containerd",
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
		"github.com/containerd/containerd/v2/cmd/ctr")
	if err != nil {
		return b, err
	}
	b.Containerd, b.Ctr, b.ShimDir = filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr"), dir
	if dir, err = moduleBuild(ctx, log, "tekton", filepath.Join(moduleDir, "tektonbin"), "",
		"github.com/tektoncd/pipeline/cmd/controller",
		"github.com/tektoncd/pipeline/cmd/resolvers",
		"github.com/tektoncd/pipeline/cmd/entrypoint",
		"github.com/tektoncd/pipeline/cmd/nop",
		"github.com/tektoncd/pipeline/cmd/workingdirinit",
		"github.com/tektoncd/pipeline/cmd/sidecarlogresults"); err != nil {
		return b, err
	}
	b.TektonController, b.TektonResolvers = filepath.Join(dir, "controller"), filepath.Join(dir, "resolvers")
	b.TektonConfig = filepath.Join(goEnv("GOMODCACHE"), "github.com/tektoncd/pipeline@"+TektonVersion, "config")
	if _, err := os.Stat(b.TektonConfig); err != nil {
		// The binaries were cached, the module's source was not.
		_ = goCmd(ctx, filepath.Join(moduleDir, "tektonbin"), nil, "mod", "download", "github.com/tektoncd/pipeline")
		if _, err := os.Stat(b.TektonConfig); err != nil {
			return b, fmt.Errorf("the release configuration of Tekton: %w", err)
		}
	}
	if b.CNIDir, err = goInstall("cni-plugins", CNIPluginsVersion,
		"github.com/containernetworking/plugins/plugins/main/bridge",
		"github.com/containernetworking/plugins/plugins/main/loopback",
		"github.com/containernetworking/plugins/plugins/ipam/host-local",
		"github.com/containernetworking/plugins/plugins/meta/portmap"); err != nil {
		return b, err
	}

	// This module's commands: the Kubernetes components, etcd and pause.
	if dir, err = moduleBuild(ctx, log, "kubernetes", moduleDir, kubeVersionFlags,
		"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager",
		"k8s.io/kubernetes/cmd/kube-scheduler", "k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kubectl",
		"./cmd/etcd", "./cmd/pause"); err != nil {
		return b, err
	}
	b.APIServer = filepath.Join(dir, "kube-apiserver")
	b.ControllerManager = filepath.Join(dir, "kube-controller-manager")
	b.Scheduler = filepath.Join(dir, "kube-scheduler")
	b.Kubelet = filepath.Join(dir, "kubelet")
	b.Kubectl = filepath.Join(dir, "kubectl")
	b.Etcd = filepath.Join(dir, "etcd")
	b.Pause = filepath.Join(dir, "pause")
	if b.Runc, err = exec.LookPath("runc"); err != nil {
		return b, fmt.Errorf("runc: %w (Debian package runc; make deps installs it)", err)
	}
	return b, nil
}

// kubeVersionFlags stamp the Kubernetes binaries with their release, as
// Kubernetes' own build does: without them they report v0.0.0, and clients
// that check the server's version (Tekton's controller wants 1.28 or
// later) refuse to start.
const kubeVersionFlags = "-X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean" +
	" -X k8s.io/client-go/pkg/version.gitVersion=v1.37.2 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37"

// moduleBuild builds the commands pkgs of the module in moduleDir into a
// cache directory named after the module's requirements, unless they are
// there already, and returns the directory.
func moduleBuild(ctx context.Context, log io.Writer, name, moduleDir, ldflags string, pkgs ...string) (string, error) {
	key, err := moduleKey(moduleDir, ldflags)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(CacheDir(), "bin", name+"-"+key)
	missing := false
	for _, p := range pkgs {
		if _, err := os.Stat(filepath.Join(dir, filepath.Base(p))); err != nil {
			missing = true
		}
	}
	if !missing {
		return dir, nil
	}
	fmt.Fprintf(log, "cluster: building %s (cached in %s)\n", name, dir)
	tmp := dir + ".tmp"
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	if err := goCmd(ctx, moduleDir, nil, append([]string{"build", "-ldflags", ldflags, "-o", tmp + "/"}, pkgs...)...); err != nil {
		return "", err
	}
	os.RemoveAll(dir)
	return dir, os.Rename(tmp, dir)
}

// moduleKey identifies this module's build: its requirements, the Go
// version and the sources of its commands.
func moduleKey(moduleDir, ldflags string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version())
	if ldflags != "" {
		fmt.Fprintln(h, ldflags)
	}
	files := []string{"go.mod", "go.sum"}
	cmds, _ := filepath.Glob(filepath.Join(moduleDir, "cmd", "*", "*.go"))
	for _, c := range cmds {
		rel, _ := filepath.Rel(moduleDir, c)
		files = append(files, rel)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(moduleDir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16], nil
}

func goEnv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0"}, env...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Images writes the OCI archives of the images built from nothing (pause,
// Tekton's commands, a busybox shell) into dir and returns their paths.
func Images(b Binaries, dir string) ([]string, error) {
	var out []string
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	add := func(name string, s Scratch) error {
		file := filepath.Join(dir, name+".oci.tar")
		if _, err := WriteOCIArchive(s, file); err != nil {
			return fmt.Errorf("image %s: %w", s.Ref, err)
		}
		out = append(out, file)
		return nil
	}
	if err := add("pause", Scratch{Ref: PauseImage, Files: []File{{Path: "/pause", Source: b.Pause}}, Entrypoint: []string{"/pause"}, User: "65535"}); err != nil {
		return nil, err
	}
	tdir := filepath.Dir(b.TektonController)
	for _, c := range []string{"controller", "resolvers", "entrypoint", "nop", "workingdirinit", "sidecarlogresults"} {
		// As ko lays them out: the binary at /ko-app/<name>, run as the
		// distroless nonroot user.
		if err := add("tekton-"+c, Scratch{Ref: TektonImage(c), Files: []File{{Path: "/ko-app/" + c, Source: filepath.Join(tdir, c)}},
			Entrypoint: []string{"/ko-app/" + c}, User: "65532"}); err != nil {
			return nil, err
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox: %w (Debian package busybox-static)", err)
	}
	files := []File{{Path: "/bin/busybox", Source: busybox}, {Path: "/tmp", Dir: true, Mode: 0o1777}}
	for _, a := range []string{"sh", "cat", "touch", "chmod", "mkdir", "cp", "mv", "rm", "ln", "ls", "echo", "printf", "tee", "base64", "sleep", "true", "false", "env", "id", "test", "[", "sed", "grep", "head", "tail", "wc"} {
		files = append(files, File{Path: "/bin/" + a, Link: "busybox"})
	}
	if err := add("busybox", Scratch{Ref: ShellImage, Files: files, Entrypoint: []string{"/bin/sh"}, User: "65532", Env: []string{"PATH=/bin"}}); err != nil {
		return nil, err
	}
	return out, nil
}

// encode and decode carry Binaries from the process that builds them into
// the namespaces.
func (b Binaries) encode() string { j, _ := json.Marshal(b); return string(j) }

func decodeBinaries(s string) (Binaries, error) {
	var b Binaries
	err := json.Unmarshal([]byte(s), &b)
	return b, err
}
