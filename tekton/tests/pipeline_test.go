package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
)

// TestPipelineEmulated runs the jsplan-hil Pipeline the way the PipelineRun
// reconciler would, with its own functions: pipeline params, contexts and
// workspaces applied, then each task's TaskRun emulated in order, results
// handed on with ResolveResultRef/ApplyTaskResults, the finally task given
// the jsplan task's status. fetch-plans (git) is stood in for by a
// checkout already in the shared volume; prepare-image really downloads the
// image, from an HTTP server on 127.0.0.1.
func TestPipelineEmulated(t *testing.T) {
	for _, tc := range []struct {
		name      string
		idParam   string // what the plan must see in the booted image
		code      int
		verdict   string
		status    string
		reportOut string
	}{
		{"passed", "", 0, "passed", "Succeeded", "jsplan task Succeeded, verdict passed"},
		{"failed", "some-other-image", 1, "failed", "Failed", "jsplan task Failed, verdict failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runPipeline(t, tc.idParam, tc.code, tc.verdict, tc.status, tc.reportOut)
		})
	}
}

func runPipeline(t *testing.T, idParam string, wantCode int, wantVerdict, wantStatus, wantReport string) {
	ctx := context.Background()
	o := collect(t, loadManifests(t))
	p := o.pipelines["jsplan-hil"]
	task := catalogTask(t)
	if p == nil {
		t.Fatal("Pipeline jsplan-hil not found")
	}

	// The image, served on 127.0.0.1 only.
	id := fmt.Sprintf("tekton-pipeline-%d", os.Getpid())
	img := append(make([]byte, 1<<20), []byte("\nJSPLAN_IMAGE_ID="+id+"\n")...)
	sum := sha256.Sum256(img)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/images/disk.img" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(img)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	// The shared volume, with the checkout fetch-plans would have made.
	shared := t.TempDir()
	src := filepath.Join(shared, "source", "plans")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "plans", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "pipeline.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	if idParam == "" {
		idParam = id
	}
	pr := &v1.PipelineRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "jsplan-hil-run-1", Namespace: "hil", UID: "9f8e7d6c"},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: p.Name},
			Params: v1.Params{
				{Name: "repo-url", Value: *v1.NewStructuredValues("https://git.example.org/lab/hil-plans.git")},
				{Name: "plan", Value: *v1.NewStructuredValues("plans/pipeline.yaml")},
				{Name: "board", Value: *v1.NewStructuredValues("sim-1")},
				{Name: "image-url", Value: *v1.NewStructuredValues(srv.URL + "/images/disk.img")},
				{Name: "image-sha256", Value: *v1.NewStructuredValues(hex.EncodeToString(sum[:]))},
				{Name: "plan-params", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"image-id=" + idParam}}},
			},
			Workspaces: []v1.WorkspaceBinding{{Name: "shared", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared"}}},
		},
	}
	cctx := apis.WithinCreate(ctx)
	pr.SetDefaults(cctx)
	if err := pr.Validate(cctx); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		resources.ValidateRequiredParametersProvided(&p.Spec.Params, &pr.Spec.Params),
		resources.ValidateParamTypesMatching(&p.Spec, pr),
		resources.ValidateWorkspaceBindings(&p.Spec, pr),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	// The PipelineRun reconciler's substitutions, in its order.
	resources.ApplyParametersToWorkspaceBindings(ctx, pr)
	spec := resources.ApplyParameters(ctx, &p.Spec, pr)
	spec = resources.ApplyContexts(spec, p.Name, pr)
	spec = resources.ApplyWorkspaces(spec, pr)

	state := resources.PipelineRunState{}
	for i := range spec.Tasks {
		state = append(state, &resources.ResolvedPipelineTask{PipelineTask: &spec.Tasks[i]})
	}
	for i := range spec.Finally {
		state = append(state, &resources.ResolvedPipelineTask{PipelineTask: &spec.Finally[i]})
	}
	byName := state.ToMap()
	bindings := map[string]v1.WorkspaceBinding{}
	for _, b := range pr.Spec.Workspaces {
		bindings[b.Name] = b
	}
	claims := map[string]string{"shared": shared}
	statuses := map[string]string{}

	// runTask emulates the TaskRun the reconciler creates for one pipeline
	// task and records its outcome in the state.
	runTask := func(name string) *emulationResult {
		t.Helper()
		rpt := byName[name]
		if refs, _, err := resources.ResolveResultRef(state, rpt); err != nil {
			t.Fatalf("task %s: %v", name, err)
		} else {
			resources.ApplyTaskResults(resources.PipelineRunState{rpt}, refs)
		}
		pt := rpt.PipelineTask
		b, err := json.Marshal(pt.Params)
		if err != nil {
			t.Fatal(err)
		}
		if pt.TaskRef != nil {
			rb, _ := json.Marshal(pt.TaskRef)
			b = append(b, rb...)
		}
		if left := leftoverVariables(b); len(left) > 0 {
			t.Fatalf("task %s: variables left after the PipelineRun's substitutions: %v", name, left)
		}
		tr := &v1.TaskRun{
			TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
			ObjectMeta: metav1.ObjectMeta{Name: pr.Name + "-" + name, Namespace: pr.Namespace},
			Spec:       v1.TaskRunSpec{Params: pt.Params},
		}
		for _, w := range pt.Workspaces {
			b, ok := bindings[w.Workspace]
			if !ok {
				continue // an optional Pipeline workspace left unbound
			}
			b.Name, b.SubPath = w.Name, w.SubPath
			tr.Spec.Workspaces = append(tr.Spec.Workspaces, b)
		}
		var tk *v1.Task
		switch {
		case pt.TaskSpec != nil:
			tk = &v1.Task{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: pt.TaskSpec.TaskSpec}
			tr.Spec.TaskSpec = &pt.TaskSpec.TaskSpec
		case pt.TaskRef != nil && pt.TaskRef.Resolver == "cluster" && clusterTaskName(pt.TaskRef) == task.Name:
			tk = task
			tr.Spec.TaskRef = &v1.TaskRef{Name: task.Name}
		default:
			t.Fatalf("task %s: not emulated", name)
		}
		e := &emulation{Task: tk, TaskRun: tr, Claims: claims, PathDirs: []string{jsplanBin(t)}}
		res := e.run(t)
		run := tr.DeepCopy()
		cond := corev1.ConditionTrue
		statuses["tasks."+name+".status"] = "Succeeded"
		if res.ExitCode != 0 {
			cond = corev1.ConditionFalse
			statuses["tasks."+name+".status"] = "Failed"
		}
		run.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: cond})
		for k, v := range res.Results {
			run.Status.Results = append(run.Status.Results, v1.TaskRunResult{Name: k, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(v)})
		}
		rpt.TaskRuns = []*v1.TaskRun{run}
		return res
	}

	prep := runTask("prepare-image")
	if prep.ExitCode != 0 || prep.Results["file"] != "disk.img" {
		t.Fatalf("prepare-image: exit %d, results %v\n%s", prep.ExitCode, prep.Results, prep.Output)
	}
	run := runTask("jsplan")
	checkResults(t, run, wantCode, wantVerdict, wantVerdict+": ")
	if wantCode == 0 {
		if b, _ := os.ReadFile(filepath.Join(shared, "artifacts", "files", "etc", "image-id")); !strings.Contains(string(b), id) {
			t.Errorf("the booted image's id %q, want %q", b, id)
		}
	}
	for _, f := range []string{"console.log", "report.json", "junit.xml"} {
		if _, err := os.Stat(filepath.Join(shared, "artifacts", f)); err != nil {
			t.Errorf("artifacts in the shared volume: %v", err)
		}
	}

	// finally: the jsplan task's status and results.
	resources.ApplyPipelineTaskStateContext(state, statuses)
	byName = state.ToMap()
	rep := runTask("report")
	if rep.ExitCode != 0 || !strings.Contains(rep.Output, wantReport) {
		t.Errorf("report: exit %d, output %q, want %q", rep.ExitCode, rep.Output, wantReport)
	}
}
