package tests

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// tektonDir is the root of the nested module, relative to this package.
const tektonDir = ".."

// A manifest is one YAML document of a file under tekton/, decoded strictly
// into the Go type its apiVersion and kind name.
type manifest struct {
	File  string // slash path relative to tekton/
	Index int    // position of the document in the file, from 0
	Raw   []byte
	Kind  string
	Obj   any // *v1.Task, *v1.Pipeline, *v1.TaskRun, *v1.PipelineRun, *corev1.ConfigMap, ...
}

func (m *manifest) String() string { return fmt.Sprintf("%s#%d (%s)", m.File, m.Index, m.Kind) }

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a multi-document YAML file, dropping empty documents.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) == "" {
			continue
		}
		docs = append(docs, []byte(d))
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// decodeDocument decodes one document strictly: unknown and duplicate fields
// are errors. file decides the type of documents without apiVersion and kind
// (tkn's --pod-template file).
func decodeDocument(file string, raw []byte) (kind string, obj any, err error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return "", nil, err
	}
	switch key := tm.APIVersion + "/" + tm.Kind; key {
	case "tekton.dev/v1/Task":
		obj = &v1.Task{}
	case "tekton.dev/v1/Pipeline":
		obj = &v1.Pipeline{}
	case "tekton.dev/v1/TaskRun":
		obj = &v1.TaskRun{}
	case "tekton.dev/v1/PipelineRun":
		obj = &v1.PipelineRun{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1/Secret":
		obj = &corev1.Secret{}
	case "v1/PersistentVolumeClaim":
		obj = &corev1.PersistentVolumeClaim{}
	case "/":
		if strings.Contains(filepath.Base(file), "pod-template") {
			tm.Kind = "PodTemplate"
			obj = &pod.Template{}
			break
		}
		return "", nil, fmt.Errorf("document has no apiVersion and kind")
	default:
		return "", nil, fmt.Errorf("unexpected apiVersion/kind %q", key)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return "", nil, fmt.Errorf("strict decoding as %s: %w", tm.Kind, err)
	}
	// The API server names an object with generateName before the webhook
	// sees it.
	if o, ok := obj.(metav1.Object); ok && o.GetName() == "" && o.GetGenerateName() != "" {
		o.SetName(o.GetGenerateName() + "x7k2p")
	}
	return tm.Kind, obj, nil
}

// loadManifests decodes every YAML document under tekton/ except those in
// testdata directories (jsplan plans and inventories, not Kubernetes objects)
// and in nested modules.
func loadManifests(t *testing.T) []*manifest {
	t.Helper()
	var out []*manifest
	err := filepath.WalkDir(tektonDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" || (strings.HasPrefix(d.Name(), ".") && path != tektonDir) {
				return filepath.SkipDir
			}
			// A nested module (dra/: the DRA driver) checks its own
			// Kubernetes manifests with Kubernetes' validation.
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != tektonDir {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tektonDir, path)
		rel = filepath.ToSlash(rel)
		for i, raw := range splitDocuments(b) {
			kind, obj, err := decodeDocument(rel, raw)
			if err != nil {
				t.Errorf("%s#%d: %v", rel, i, err)
				continue
			}
			out = append(out, &manifest{File: rel, Index: i, Raw: raw, Kind: kind, Obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// manifestsIn returns the decoded documents of one file.
func manifestsIn(t *testing.T, file string) []*manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tektonDir, filepath.FromSlash(file)))
	if err != nil {
		t.Fatal(err)
	}
	var out []*manifest
	for i, raw := range splitDocuments(b) {
		kind, obj, err := decodeDocument(file, raw)
		if err != nil {
			t.Fatalf("%s#%d: %v", file, i, err)
		}
		out = append(out, &manifest{File: file, Index: i, Raw: raw, Kind: kind, Obj: obj})
	}
	return out
}

// catalogTask decodes the catalog Task, defaulted and validated.
func catalogTask(t *testing.T) *v1.Task {
	t.Helper()
	ms := manifestsIn(t, "task/jsplan/0.1/jsplan.yaml")
	if len(ms) != 1 || ms[0].Kind != "Task" {
		t.Fatalf("task/jsplan/0.1/jsplan.yaml: want exactly one Task, got %d documents", len(ms))
	}
	task := ms[0].Obj.(*v1.Task)
	ctx := apis.WithinCreate(context.Background())
	task.SetDefaults(ctx)
	if err := task.Validate(ctx); err != nil {
		t.Fatalf("Task jsplan: %v", err)
	}
	return task
}

// tektonVariable matches a Tekton variable reference that substitution
// should have replaced; shell command substitutions like $(date) do not match.
var tektonVariable = regexp.MustCompile(`\$\((params|context|workspaces|results|tasks|steps|step|artifacts|credentials)[.\[]`)

// leftoverVariables lists the Tekton variable references left in b.
func leftoverVariables(b []byte) []string {
	var out []string
	for _, loc := range tektonVariable.FindAllIndex(b, -1) {
		end := bytes.IndexByte(b[loc[0]:], ')')
		if end < 0 {
			end = loc[1] - loc[0]
		}
		out = append(out, string(b[loc[0]:loc[0]+end+1]))
	}
	return out
}
