package tests

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// validatable is what the Tekton v1 types implement for the admission webhook.
type validatable interface {
	SetDefaults(context.Context)
	Validate(context.Context) *apis.FieldError
}

// TestManifestsDecodeAndValidate decodes every Tekton object under tekton/
// strictly, sets its defaults and validates it as the webhook would on create.
func TestManifestsDecodeAndValidate(t *testing.T) {
	ms := loadManifests(t)
	kinds := map[string]int{}
	for _, m := range ms {
		kinds[m.Kind]++
		v, ok := m.Obj.(validatable)
		if !ok {
			continue
		}
		ctx := apis.WithinCreate(context.Background())
		v.SetDefaults(ctx)
		if err := v.Validate(ctx); err != nil {
			t.Errorf("%v: %v", m, err)
		}
	}
	for _, k := range []string{"Task", "Pipeline", "TaskRun", "PipelineRun"} {
		if kinds[k] == 0 {
			t.Errorf("no %s found under tekton/", k)
		}
	}
	t.Logf("validated: %v", kinds)
}

// TestDecodeRejectsMistakes makes sure the strict decoding catches what the
// ancestor's loose YAML let through.
func TestDecodeRejectsMistakes(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: x}\nspec:\n  stepz: []\n",
		"duplicate key": "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: x}\nspec: {}\nspec: {}\n",
		"unknown kind":  "apiVersion: tekton.dev/v1\nkind: Tusk\nmetadata: {name: x}\n",
	} {
		if _, _, err := decodeDocument("x.yaml", []byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	// Validation catches a script that names an undeclared param.
	task := &v1.Task{}
	doc := "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: x}\nspec:\n  steps:\n    - image: a.io/b:1\n      script: echo $(params.nope)\n"
	if err := yaml.UnmarshalStrict([]byte(doc), task); err != nil {
		t.Fatal(err)
	}
	ctx := apis.WithinCreate(context.Background())
	task.SetDefaults(ctx)
	if err := task.Validate(ctx); err == nil {
		t.Error("a Task using an undeclared param validated")
	}
}

type objects struct {
	tasks     map[string]*v1.Task
	pipelines map[string]*v1.Pipeline
}

func collect(t *testing.T, ms []*manifest) objects {
	t.Helper()
	o := objects{tasks: map[string]*v1.Task{}, pipelines: map[string]*v1.Pipeline{}}
	ctx := apis.WithinCreate(context.Background())
	for _, m := range ms {
		switch obj := m.Obj.(type) {
		case *v1.Task:
			if prev, dup := o.tasks[obj.Name]; dup && prev != nil {
				t.Errorf("%v: a second Task named %q", m, obj.Name)
			}
			obj.SetDefaults(ctx)
			o.tasks[obj.Name] = obj
		case *v1.Pipeline:
			if _, dup := o.pipelines[obj.Name]; dup {
				t.Errorf("%v: a second Pipeline named %q", m, obj.Name)
			}
			obj.SetDefaults(ctx)
			o.pipelines[obj.Name] = obj
		}
	}
	return o
}

// checkRunAgainstTask does the reconciler's checks of a TaskRun (or a
// pipeline task) against the Task it runs, plus one of ours: every param
// given is declared (Tekton ignores extra params, which hides typos).
func checkRunAgainstTask(ctx context.Context, taskName string, spec *v1.TaskSpec, params v1.Params, matrix *v1.Matrix) []string {
	var errs []string
	rtr := &trresources.ResolvedTask{TaskName: taskName, Kind: v1.NamespacedTaskKind, TaskSpec: spec}
	if err := taskrun.ValidateResolvedTask(ctx, params, matrix, rtr); err != nil {
		errs = append(errs, err.Error())
	}
	if err := taskrun.ValidateEnumParam(ctx, params, spec.Params); err != nil {
		errs = append(errs, err.Error())
	}
	declared := map[string]bool{}
	for _, p := range spec.Params {
		declared[p.Name] = true
	}
	for _, p := range params {
		if !declared[p.Name] {
			errs = append(errs, "param "+p.Name+" is not declared by Task "+taskName)
		}
	}
	return errs
}

// TestRunsMatchTheirTasks checks every TaskRun and PipelineRun against the
// Task or Pipeline it names, and every pipeline task against its Task, with
// the reconciler's validation functions.
func TestRunsMatchTheirTasks(t *testing.T) {
	ms := loadManifests(t)
	o := collect(t, ms)
	ctx := context.Background()
	for _, m := range ms {
		switch obj := m.Obj.(type) {
		case *v1.TaskRun:
			obj.SetDefaults(ctx)
			spec, name := obj.Spec.TaskSpec, "(inline)"
			if spec == nil && obj.Spec.TaskRef != nil && obj.Spec.TaskRef.Resolver == "" {
				task := o.tasks[obj.Spec.TaskRef.Name]
				if task == nil {
					t.Errorf("%v: Task %q is not defined under tekton/", m, obj.Spec.TaskRef.Name)
					continue
				}
				spec, name = &task.Spec, task.Name
			}
			if spec == nil {
				continue
			}
			for _, e := range checkRunAgainstTask(ctx, name, spec, obj.Spec.Params, nil) {
				t.Errorf("%v: %s", m, e)
			}
			if err := workspace.ValidateBindings(ctx, spec.Workspaces, obj.Spec.Workspaces); err != nil {
				t.Errorf("%v: %v", m, err)
			}
		case *v1.PipelineRun:
			obj.SetDefaults(ctx)
			if obj.Spec.PipelineRef == nil || obj.Spec.PipelineRef.Resolver != "" {
				continue
			}
			p := o.pipelines[obj.Spec.PipelineRef.Name]
			if p == nil {
				t.Errorf("%v: Pipeline %q is not defined under tekton/", m, obj.Spec.PipelineRef.Name)
				continue
			}
			for _, err := range []error{
				resources.ValidateRequiredParametersProvided(&p.Spec.Params, &obj.Spec.Params),
				resources.ValidateParamTypesMatching(&p.Spec, obj),
				resources.ValidateWorkspaceBindings(&p.Spec, obj),
				resources.ValidateTaskRunSpecs(&p.Spec, obj),
			} {
				if err != nil {
					t.Errorf("%v: %v", m, err)
				}
			}
			checkOnePVCPerTask(t, m, &p.Spec, obj.Spec.Workspaces)
		}
	}
	for _, p := range o.pipelines {
		defaults := map[string]string{}
		for _, ps := range p.Spec.Params {
			if ps.Default != nil {
				defaults[ps.Name] = ps.Default.StringVal
			}
		}
		for _, pt := range append(append([]v1.PipelineTask{}, p.Spec.Tasks...), p.Spec.Finally...) {
			spec, name := pipelineTaskSpec(pt, o, defaults)
			if spec == nil {
				if pt.TaskRef == nil || pt.TaskRef.Resolver != "hub" {
					t.Errorf("Pipeline %s, task %s: its Task is not under tekton/", p.Name, pt.Name)
				}
				continue
			}
			for _, e := range checkRunAgainstTask(ctx, name, spec, pt.Params, pt.Matrix) {
				t.Errorf("Pipeline %s, task %s: %s", p.Name, pt.Name, e)
			}
			if err := checkPipelineTaskWorkspaces(spec, pt); err != "" {
				t.Errorf("Pipeline %s, task %s: %s", p.Name, pt.Name, err)
			}
		}
	}
}

// pipelineTaskSpec finds the Task a pipeline task runs: inline, by name, or
// through the cluster resolver by a name that may be a Pipeline param (its
// default then).
func pipelineTaskSpec(pt v1.PipelineTask, o objects, defaults map[string]string) (*v1.TaskSpec, string) {
	if pt.TaskSpec != nil {
		return &pt.TaskSpec.TaskSpec, pt.Name + " (inline)"
	}
	name := ""
	switch {
	case pt.TaskRef == nil:
	case pt.TaskRef.Resolver == "":
		name = pt.TaskRef.Name
	case pt.TaskRef.Resolver == "cluster":
		name = clusterTaskName(pt.TaskRef)
		if m := regexp.MustCompile(`^\$\(params\.([a-z0-9-]+)\)$`).FindStringSubmatch(name); m != nil {
			name = defaults[m[1]]
		}
	}
	if task := o.tasks[name]; task != nil {
		return &task.Spec, task.Name
	}
	return nil, ""
}

// clusterTaskName is the name param of a cluster-resolver reference to a Task.
func clusterTaskName(ref *v1.TaskRef) string {
	kind, name := "task", ""
	for _, p := range ref.Params {
		switch p.Name {
		case "kind":
			kind = p.Value.StringVal
		case "name":
			name = p.Value.StringVal
		}
	}
	if kind != "task" {
		return ""
	}
	return name
}

// checkPipelineTaskWorkspaces: the Task's required workspaces are all given,
// and every workspace given is declared by the Task.
func checkPipelineTaskWorkspaces(spec *v1.TaskSpec, pt v1.PipelineTask) string {
	given := map[string]bool{}
	for _, w := range pt.Workspaces {
		given[w.Name] = true
	}
	declared := map[string]bool{}
	for _, d := range spec.Workspaces {
		declared[d.Name] = true
		if !d.Optional && !given[d.Name] {
			return "required workspace " + d.Name + " is not bound"
		}
	}
	for _, w := range pt.Workspaces {
		if !declared[w.Name] {
			return "workspace " + w.Name + " is not declared by the Task"
		}
	}
	return ""
}

// checkOnePVCPerTask: with the default affinity assistant (coschedule:
// workspaces) a TaskRun may mount only one PVC-backed workspace; Tekton's own
// check, applied to the bindings each pipeline task would get.
func checkOnePVCPerTask(t *testing.T, m *manifest, p *v1.PipelineSpec, bindings []v1.WorkspaceBinding) {
	t.Helper()
	byName := map[string]v1.WorkspaceBinding{}
	for _, b := range bindings {
		byName[b.Name] = b
	}
	for _, pt := range append(append([]v1.PipelineTask{}, p.Tasks...), p.Finally...) {
		var wb []v1.WorkspaceBinding
		for _, w := range pt.Workspaces {
			b, ok := byName[w.Workspace]
			if !ok {
				continue
			}
			// The reconciler turns a PipelineRun's volumeClaimTemplate into
			// one PVC per pipeline workspace before it creates the TaskRuns.
			if b.VolumeClaimTemplate != nil {
				b.VolumeClaimTemplate = nil
				b.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pvc-" + w.Workspace}
			}
			b.Name = w.Name
			wb = append(wb, b)
		}
		if err := workspace.ValidateOnlyOnePVCIsUsed(wb); err != nil {
			t.Errorf("%v: pipeline task %s: %v", m, pt.Name, err)
		}
	}
}

// TestCatalogConventions checks what the catalog's linter and reviewers ask
// of a Task.
func TestCatalogConventions(t *testing.T) {
	task := catalogTask(t)
	dir := filepath.Join(tektonDir, "task", "jsplan", "0.1")
	if v := task.Labels["app.kubernetes.io/version"]; v != "0.1" {
		t.Errorf("label app.kubernetes.io/version = %q, want the directory's version 0.1", v)
	}
	for _, a := range []string{"tekton.dev/pipelines.minVersion", "tekton.dev/categories", "tekton.dev/tags", "tekton.dev/displayName", "tekton.dev/platforms"} {
		if task.Annotations[a] == "" {
			t.Errorf("annotation %s is missing", a)
		}
	}
	if c := task.Annotations["tekton.dev/categories"]; c != "Testing" {
		t.Errorf("tekton.dev/categories = %q, want Testing", c)
	}
	if p := task.Annotations["tekton.dev/platforms"]; !strings.Contains(p, "linux/amd64") || !strings.Contains(p, "linux/arm64") {
		t.Errorf("tekton.dev/platforms = %q, want linux/amd64 and linux/arm64", p)
	}
	if strings.TrimSpace(task.Spec.Description) == "" {
		t.Error("spec.description is empty")
	}
	for _, sub := range []string{"samples", "tests"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil || len(entries) == 0 {
			t.Errorf("%s/ is missing or empty", sub)
		}
	}

	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	if !regexp.MustCompile(`(?m)^# .*jsplan`).MatchString(text) {
		t.Error("README.md: no title naming the Task")
	}
	for _, h := range []string{"Install", "Parameters", "Workspaces", "Results", "Platforms", "Usage"} {
		if !regexp.MustCompile(`(?m)^## ` + h + `\b`).MatchString(text) {
			t.Errorf("README.md: no section %q", h)
		}
	}
	for _, p := range task.Spec.Params {
		if !strings.Contains(text, "`"+p.Name+"`") {
			t.Errorf("README.md does not document param %s", p.Name)
		}
	}
	for _, w := range task.Spec.Workspaces {
		if !strings.Contains(text, "`"+w.Name+"`") {
			t.Errorf("README.md does not document workspace %s", w.Name)
		}
	}
	for _, r := range task.Spec.Results {
		if !strings.Contains(text, "`"+r.Name+"`") {
			t.Errorf("README.md does not document result %s", r.Name)
		}
	}
}

// pinnedImage: fully qualified (a registry host) and pinned by digest or by a
// tag other than latest.
var pinnedImage = regexp.MustCompile(`^[a-z0-9.-]+[.:][a-z0-9]+[^/]*/[a-z0-9._/-]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9._-]+(@sha256:[0-9a-f]{64})?)$`)

func imagePinned(ref string) bool {
	return pinnedImage.MatchString(ref) && !strings.HasSuffix(strings.SplitN(ref, "@", 2)[0], ":latest")
}

// TestScriptsAndImages: in every Task under tekton/ (inline ones included),
// params reach scripts through env, never pasted into the script, and every
// image is fully qualified and pinned.
func TestScriptsAndImages(t *testing.T) {
	ms := loadManifests(t)
	paramRef := regexp.MustCompile(`^\$\(params\.([a-z0-9-]+)\)$`)
	// values: what a param of the Task resolves to where it runs (its
	// default, or the Pipeline param a pipeline task passes to it).
	check := func(where string, spec *v1.TaskSpec, values map[string]string) {
		for _, p := range spec.Params {
			if _, ok := values[p.Name]; !ok && p.Default != nil {
				values[p.Name] = p.Default.StringVal
			}
		}
		for _, s := range spec.Steps {
			if strings.Contains(s.Script, "$(params.") || strings.Contains(s.Script, "$(tasks.") {
				t.Errorf("%s step %s: script uses $(params.…) or $(tasks.…); pass it through env", where, s.Name)
			}
			img := s.Image
			if m := paramRef.FindStringSubmatch(img); m != nil {
				img = values[m[1]]
			}
			if !imagePinned(img) {
				t.Errorf("%s step %s: image %q (%q) is not fully qualified and pinned", where, s.Name, s.Image, img)
			}
		}
	}
	for _, m := range ms {
		switch obj := m.Obj.(type) {
		case *v1.Task:
			check(m.String(), &obj.Spec, map[string]string{})
		case *v1.TaskRun:
			if obj.Spec.TaskSpec != nil {
				check(m.String(), obj.Spec.TaskSpec, map[string]string{})
			}
		case *v1.Pipeline:
			defaults := map[string]string{}
			for _, p := range obj.Spec.Params {
				if p.Default != nil {
					defaults[p.Name] = p.Default.StringVal
				}
			}
			for _, pt := range append(append([]v1.PipelineTask{}, obj.Spec.Tasks...), obj.Spec.Finally...) {
				if pt.TaskSpec == nil {
					continue
				}
				values := map[string]string{}
				for _, p := range pt.Params {
					v := p.Value.StringVal
					if m := paramRef.FindStringSubmatch(v); m != nil {
						v = defaults[m[1]]
					}
					values[p.Name] = v
				}
				check(m.String()+" task "+pt.Name, &pt.TaskSpec.TaskSpec, values)
			}
		}
	}
	for _, ok := range []string{"ghcr.io/a/b:v1", "docker.io/library/debian:bookworm-20250101@sha256:" + strings.Repeat("a", 64), "localhost:5000/x/y@sha256:" + strings.Repeat("0", 64)} {
		if !imagePinned(ok) {
			t.Errorf("imagePinned(%q) = false", ok)
		}
	}
	for _, bad := range []string{"debian:12", "ghcr.io/a/b", "ghcr.io/a/b:latest", "busybox"} {
		if imagePinned(bad) {
			t.Errorf("imagePinned(%q) = true", bad)
		}
	}
}

// TestDutlinkSampleMatchesTask: the privileged variant in the sample is the
// catalog Task plus exactly the documented device-access changes, so the
// two cannot drift apart.
func TestDutlinkSampleMatchesTask(t *testing.T) {
	task := catalogTask(t)
	var variant *v1.Task
	for _, m := range manifestsIn(t, "task/jsplan/0.1/samples/task-jsplan-dutlink.yaml") {
		if tk, ok := m.Obj.(*v1.Task); ok {
			variant = tk
		}
	}
	if variant == nil {
		t.Fatal("samples/task-jsplan-dutlink.yaml has no Task")
	}
	ctx := apis.WithinCreate(context.Background())
	variant.SetDefaults(ctx)
	if err := variant.Validate(ctx); err != nil {
		t.Fatal(err)
	}

	extraVolumes := map[string]bool{"host-dev": true, "jsplan-locks": true}
	got := variant.Spec.DeepCopy()
	var vols = got.Volumes[:0]
	for _, v := range got.Volumes {
		if !extraVolumes[v.Name] {
			vols = append(vols, v)
		} else if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
		}
	}
	got.Volumes = vols
	privileged := false
	for i := range got.Steps {
		s := &got.Steps[i]
		mounts := s.VolumeMounts[:0]
		for _, vm := range s.VolumeMounts {
			if !extraVolumes[vm.Name] {
				mounts = append(mounts, vm)
			}
		}
		s.VolumeMounts = mounts
		if s.SecurityContext != nil && s.SecurityContext.Privileged != nil && *s.SecurityContext.Privileged {
			privileged = true
		}
		s.SecurityContext = nil
	}
	if !privileged {
		t.Error("the dutlink variant's step is not privileged")
	}
	want := task.Spec.DeepCopy()
	for i := range want.Steps {
		want.Steps[i].SecurityContext = nil
	}
	got.Description, want.Description = "", ""
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the dutlink variant differs from the catalog Task beyond device access (-task +variant):\n%s", d)
	}
}

// TestTknStartCommand checks the `tkn pipeline start` command line in the
// pipeline's README against the Pipeline: it names the Pipeline, gives every
// required param and workspace, names nothing the Pipeline lacks, and the
// files it passes exist and decode.
func TestTknStartCommand(t *testing.T) {
	dir := filepath.Join(tektonDir, "pipeline", "jsplan-hil")
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)tkn pipeline start .*?--showlog`).Find(readme)
	if m == nil {
		t.Fatal("README.md has no `tkn pipeline start ... --showlog` command")
	}
	fields := strings.Fields(strings.ReplaceAll(string(m), "\\\n", " "))
	o := collect(t, loadManifests(t))
	p := o.pipelines[fields[3]]
	if p == nil {
		t.Fatalf("tkn starts Pipeline %q, which is not defined", fields[3])
	}
	params, workspaces := map[string]bool{}, map[string]bool{}
	useDefaults := false
	for i := 4; i < len(fields); i++ {
		f := fields[i]
		switch f {
		case "--param", "--workspace", "--pod-template":
			if i+1 >= len(fields) {
				t.Fatalf("%s without a value", f)
			}
			i++
			v := fields[i]
			switch f {
			case "--param":
				params[strings.SplitN(v, "=", 2)[0]] = true
			case "--workspace":
				for _, kv := range strings.Split(v, ",") {
					k, val, _ := strings.Cut(kv, "=")
					switch k {
					case "name":
						workspaces[val] = true
					case "volumeClaimTemplateFile":
						checkFileDecodes(t, filepath.Join(dir, val), "PersistentVolumeClaim")
					}
				}
			case "--pod-template":
				checkFileDecodes(t, filepath.Join(dir, v), "PodTemplate")
			}
		case "--use-param-defaults":
			useDefaults = true
		case "--showlog":
		default:
			t.Errorf("unexpected tkn argument %q", f)
		}
	}
	declared := map[string]bool{}
	for _, ps := range p.Spec.Params {
		declared[ps.Name] = true
		if !params[ps.Name] && (ps.Default == nil || !useDefaults) {
			t.Errorf("tkn command does not give param %s", ps.Name)
		}
	}
	for name := range params {
		if !declared[name] {
			t.Errorf("tkn command gives param %s, which the Pipeline does not declare", name)
		}
	}
	wsDeclared := map[string]bool{}
	for _, w := range p.Spec.Workspaces {
		wsDeclared[w.Name] = true
		if !w.Optional && !workspaces[w.Name] {
			t.Errorf("tkn command does not bind workspace %s", w.Name)
		}
	}
	for name := range workspaces {
		if !wsDeclared[name] {
			t.Errorf("tkn command binds workspace %s, which the Pipeline does not declare", name)
		}
	}
}

func checkFileDecodes(t *testing.T, path, kind string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	k, _, err := decodeDocument(filepath.Base(path), b)
	if err != nil {
		t.Errorf("%s: %v", path, err)
	} else if k != kind {
		t.Errorf("%s: a %s, want a %s", path, k, kind)
	}
}
