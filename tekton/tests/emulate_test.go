package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/result"
	"github.com/tektoncd/pipeline/pkg/termination"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
)

// An emulation runs a TaskRun the way the controller, the kubelet and
// Tekton's entrypoint would, on this machine: the reconciler's own
// substitution functions in the reconciler's order, the workspace volumes
// and Tekton's implicit mounts stood in for by temporary directories, each
// step's script run as the entrypoint runs it (its own process group, the
// step's env, args and workingDir), the results read back from the results
// directory and encoded as the termination message.
type emulation struct {
	Task    *v1.Task
	TaskRun *v1.TaskRun
	// Objects the workspaces may name: ConfigMaps and Secrets are
	// materialized from their data; a PVC is the host directory in Claims.
	ConfigMaps map[string]*corev1.ConfigMap
	Secrets    map[string]*corev1.Secret
	Claims     map[string]string
	// HostPaths maps a hostPath volume's path to the host directory that
	// stands in for it ("/dev" may map to itself).
	HostPaths map[string]string
	// PathDirs are put in front of the system PATH (where jsplan is).
	PathDirs []string
	// Started, when set, is called with the process group of each step.
	Started func(pgid int)

	root   string
	mounts map[string]string // container path -> host path
	vols   map[string]string // volume name -> host dir
}

// tester is the part of *testing.T the emulation uses; goTester makes it
// usable from a goroutine other than the test's.
type tester interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fatal(args ...any)
	TempDir() string
	Cleanup(func())
}

// goTester reports a fatal error as an error and ends only its goroutine,
// which must signal the test (e.g. close a channel) in a deferred call.
type goTester struct{ *testing.T }

func (g goTester) Fatalf(format string, args ...any) {
	g.T.Helper()
	g.T.Errorf(format, args...)
	runtime.Goexit()
}

func (g goTester) Fatal(args ...any) {
	g.T.Helper()
	g.T.Error(args...)
	runtime.Goexit()
}

// emulationResult is what the TaskRun's status would show.
type emulationResult struct {
	ExitCode  int               // of the last step that ran
	Results   map[string]string // task results, as read by the entrypoint
	Output    string            // the steps' stdout and stderr
	Message   []byte            // the termination message
	Workspace map[string]string // workspace name -> host dir it was materialized in
	Spec      *v1.TaskSpec      // the substituted spec
}

func (e *emulation) run(t tester) *emulationResult {
	t.Helper()
	ctx := context.Background()
	e.root = t.TempDir()
	e.mounts = map[string]string{}
	e.vols = map[string]string{}

	task := e.Task.DeepCopy()
	tr := e.TaskRun.DeepCopy()
	cctx := apis.WithinCreate(ctx)
	task.SetDefaults(cctx)
	tr.SetDefaults(cctx)
	if err := task.Validate(cctx); err != nil {
		t.Fatalf("Task: %v", err)
	}
	if err := tr.Validate(cctx); err != nil {
		t.Fatalf("TaskRun: %v", err)
	}

	// The reconciler: resolve, check, substitute.
	rtr := &resources.ResolvedTask{TaskName: task.Name, Kind: v1.NamespacedTaskKind, TaskSpec: &task.Spec}
	if err := taskrun.ValidateResolvedTask(ctx, tr.Spec.Params, nil, rtr); err != nil {
		t.Fatalf("ValidateResolvedTask: %v", err)
	}
	if err := taskrun.ValidateEnumParam(ctx, tr.Spec.Params, rtr.TaskSpec.Params); err != nil {
		t.Fatalf("ValidateEnumParam: %v", err)
	}
	if err := workspace.ValidateBindings(ctx, rtr.TaskSpec.Workspaces, tr.Spec.Workspaces); err != nil {
		t.Fatalf("ValidateBindings: %v", err)
	}
	resources.ApplyParametersToWorkspaceBindings(rtr.TaskSpec, tr)
	wsVolumes := workspace.CreateVolumes(tr.Spec.Workspaces)

	ts := rtr.TaskSpec.DeepCopy()
	ts = resources.ApplyParameters(ts, tr, ts.Params...)
	ts = resources.ApplyContexts(ts, rtr.TaskName, tr)
	ts = resources.ApplyResults(ts)
	ts = resources.ApplyArtifacts(ts)
	ts = resources.ApplyStepExitCodePath(ts)
	ts = resources.ApplyWorkspaces(ctx, ts, ts.Workspaces, tr.Spec.Workspaces, wsVolumes)

	b, err := json.Marshal(ts)
	if err != nil {
		t.Fatal(err)
	}
	if left := leftoverVariables(b); len(left) > 0 {
		t.Fatalf("variables left after substitution: %v", left)
	}

	// Pod creation: workspace mounts and the step template.
	ts, err = workspace.Apply(ctx, *ts, tr.Spec.Workspaces, wsVolumes)
	if err != nil {
		t.Fatalf("workspace.Apply: %v", err)
	}
	ts = resources.ApplyCredentialsPath(ts, pipeline.CredsDir)
	steps, err := v1.MergeStepsWithStepTemplate(ts.StepTemplate, ts.Steps)
	if err != nil {
		t.Fatal(err)
	}

	// The kubelet: volumes as host directories.
	volumes := map[string]corev1.Volume{}
	for _, v := range ts.Volumes {
		volumes[v.Name] = v
	}
	res := &emulationResult{Results: map[string]string{}, Workspace: map[string]string{}, Spec: ts}
	for name, v := range wsVolumes {
		res.Workspace[name] = e.volumeDir(t, v)
	}
	for _, w := range tr.Spec.Workspaces {
		if w.SubPath != "" {
			res.Workspace[w.Name] = filepath.Join(res.Workspace[w.Name], w.SubPath)
			if err := os.MkdirAll(res.Workspace[w.Name], 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Tekton's implicit mounts, and the writable directories of the
	// container's own filesystem that the Task may use (its default lock
	// directory is there).
	for _, p := range []string{pipeline.DefaultResultPath, pipeline.StepsDir, pipeline.HomeDir, pipeline.CredsDir, pipeline.WorkspaceDir, "/tekton/scripts", "/var/lock", "/run/lock"} {
		e.mounts[p] = e.mkdir(t, "pod"+p)
	}
	var output bytes.Buffer
	readOnly := map[string]string{} // host dir -> snapshot
	for i, s := range steps {
		mounts := map[string]string{}
		for k, v := range e.mounts {
			mounts[k] = v
		}
		for _, vm := range s.VolumeMounts {
			v, ok := volumes[vm.Name]
			if !ok {
				t.Fatalf("step %s mounts volume %s that the pod does not have", s.Name, vm.Name)
			}
			dir := e.volumeDir(t, v)
			if vm.SubPath != "" {
				dir = filepath.Join(dir, vm.SubPath)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			mounts[vm.MountPath] = dir
			if vm.ReadOnly {
				readOnly[dir] = snapshot(t, dir)
			}
		}
		code := e.runStep(t, i, s, mounts, &output)
		res.ExitCode = code
		if code != 0 && s.OnError != v1.Continue {
			break
		}
	}
	res.Output = output.String()
	for dir, before := range readOnly {
		if after := snapshot(t, dir); after != before {
			t.Errorf("a read-only mount was written to: %s\nbefore:\n%s\nafter:\n%s", dir, before, after)
		}
	}

	// The entrypoint: results from the results directory into the
	// termination message, which must fit Kubernetes' limit.
	var rr []result.RunResult
	for _, r := range ts.Results {
		b, err := os.ReadFile(filepath.Join(e.mounts[pipeline.DefaultResultPath], r.Name))
		if err != nil {
			continue
		}
		res.Results[r.Name] = string(b)
		rr = append(rr, result.RunResult{Key: r.Name, Value: string(b), ResultType: result.TaskRunResultType})
	}
	msgPath := filepath.Join(e.root, "termination-log")
	if err := termination.WriteMessage(msgPath, rr); err != nil {
		t.Errorf("termination message: %v", err)
	} else if res.Message, err = os.ReadFile(msgPath); err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *emulation) mkdir(t tester, rel string) string {
	t.Helper()
	dir := filepath.Join(e.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// volumeDir materializes a pod volume as a host directory, once per volume.
func (e *emulation) volumeDir(t tester, v corev1.Volume) string {
	t.Helper()
	if dir, ok := e.vols[v.Name]; ok {
		return dir
	}
	var dir string
	switch {
	case v.EmptyDir != nil:
		dir = e.mkdir(t, "volumes/"+v.Name)
	case v.HostPath != nil:
		d, ok := e.HostPaths[v.HostPath.Path]
		if !ok {
			t.Fatalf("no host directory for hostPath %s", v.HostPath.Path)
		}
		dir = d
	case v.PersistentVolumeClaim != nil:
		d, ok := e.Claims[v.PersistentVolumeClaim.ClaimName]
		if !ok {
			t.Fatalf("no host directory for PVC %s", v.PersistentVolumeClaim.ClaimName)
		}
		dir = d
	case v.ConfigMap != nil:
		cm, ok := e.ConfigMaps[v.ConfigMap.Name]
		if !ok {
			t.Fatalf("ConfigMap %s not found", v.ConfigMap.Name)
		}
		dir = e.mkdir(t, "volumes/"+v.Name)
		files := map[string][]byte{}
		for k, s := range cm.Data {
			files[k] = []byte(s)
		}
		for k, b := range cm.BinaryData {
			files[k] = b
		}
		writeKeys(t, dir, files, v.ConfigMap.Items, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		s, ok := e.Secrets[v.Secret.SecretName]
		if !ok {
			t.Fatalf("Secret %s not found", v.Secret.SecretName)
		}
		dir = e.mkdir(t, "volumes/"+v.Name)
		files := map[string][]byte{}
		for k, b := range s.Data {
			files[k] = b
		}
		for k, str := range s.StringData {
			files[k] = []byte(str)
		}
		writeKeys(t, dir, files, v.Secret.Items, v.Secret.DefaultMode)
	default:
		t.Fatalf("volume %s: only emptyDir, hostPath, PVC, ConfigMap and Secret volumes are emulated", v.Name)
	}
	e.vols[v.Name] = dir
	return dir
}

// writeKeys writes ConfigMap or Secret keys as files, as the kubelet does.
func writeKeys(t tester, dir string, files map[string][]byte, items []corev1.KeyToPath, defaultMode *int32) {
	t.Helper()
	mode := fs.FileMode(0o644)
	if defaultMode != nil {
		mode = fs.FileMode(*defaultMode)
	}
	paths := map[string]string{}
	if len(items) == 0 {
		for k := range files {
			paths[k] = k
		}
	}
	for _, it := range items {
		paths[it.Key] = it.Path
	}
	for k, p := range paths {
		b, ok := files[k]
		if !ok {
			t.Fatalf("key %s not found", k)
		}
		f := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// translate rewrites container paths in s to the host directories mounted
// there: the longest mount path wins, and only whole path components match.
func translate(s string, mounts map[string]string) string {
	paths := make([]string, 0, len(mounts))
	for p := range mounts {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	isPathChar := func(c byte) bool {
		return c == '/' || c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		matched := false
		if s[i] == '/' && (i == 0 || !isPathChar(s[i-1])) {
			for _, p := range paths {
				end := i + len(p)
				if strings.HasPrefix(s[i:], p) && (end == len(s) || s[end] == '/' || !isPathChar(s[end])) {
					b.WriteString(mounts[p])
					i = end
					matched = true
					break
				}
			}
		}
		if !matched {
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

// runStep runs one step as the entrypoint would and returns its exit code.
func (e *emulation) runStep(t tester, i int, s v1.Step, mounts map[string]string, output *bytes.Buffer) int {
	t.Helper()
	if s.Script == "" {
		t.Fatalf("step %s: only script steps are emulated", s.Name)
	}
	script := s.Script
	if !strings.HasPrefix(script, "#!") {
		script = "#!/bin/sh\nset -e\n" + script // pod.convertScripts' preamble
	}
	file := filepath.Join(mounts["/tekton/scripts"], fmt.Sprintf("script-%d", i))
	if err := os.WriteFile(file, []byte(translate(script, mounts)), 0o755); err != nil {
		t.Fatal(err)
	}
	args := make([]string, len(s.Args))
	for j, a := range s.Args {
		args[j] = translate(a, mounts)
	}
	cmd := exec.Command(file, args...)
	cmd.Dir = translate(s.WorkingDir, mounts)
	if cmd.Dir == "" {
		cmd.Dir = mounts[pipeline.WorkspaceDir]
	}
	path := strings.Join(append(append([]string{}, e.PathDirs...), "/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin"), ":")
	cmd.Env = []string{"PATH=" + path, "HOME=" + e.mkdir(t, fmt.Sprintf("home-%d", i))}
	for _, ev := range s.Env {
		if ev.ValueFrom != nil {
			t.Fatalf("step %s: env %s uses valueFrom, not emulated", s.Name, ev.Name)
		}
		cmd.Env = append(cmd.Env, ev.Name+"="+translate(ev.Value, mounts))
	}
	w := &lockedWriter{w: output}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as cmd/entrypoint does
	if err := cmd.Start(); err != nil {
		t.Fatalf("step %s: %v", s.Name, err)
	}
	pgid := cmd.Process.Pid
	waited := false
	t.Cleanup(func() {
		if !waited { // the test stopped early: end the step's processes
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	if e.Started != nil {
		e.Started(pgid)
	}
	err := cmd.Wait()
	waited = true
	// The container would be gone now; nothing of the step may outlive it.
	if syscall.Kill(-pgid, 0) == nil {
		t.Errorf("step %s left processes running in its process group", s.Name)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		t.Fatalf("step %s: %v", s.Name, err)
		return -1
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// snapshot lists the files under dir with their sizes and modes.
func snapshot(t tester, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s %v %d %d\n", rel, info.Mode(), info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
