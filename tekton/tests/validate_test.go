package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestJsplanValidatesEmbeddedFiles runs `jsplan validate` on every jsplan
// plan and inventory under tekton/: the test plans, and the ones embedded in
// ConfigMaps of samples and catalog tests (so a sample cannot drift from
// what jsplan accepts, driver settings included).
func TestJsplanValidatesEmbeddedFiles(t *testing.T) {
	bin := filepath.Join(jsplanBin(t), "jsplan")
	dir := t.TempDir()
	var files, inventories []string
	for _, m := range loadManifests(t) {
		cm, ok := m.Obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		for key, data := range cm.Data {
			if !strings.Contains(data, "apiVersion: jsplan.dev/") {
				continue
			}
			f := filepath.Join(dir, strings.NewReplacer("/", "_", "#", "_").Replace(m.File)+"_"+cm.Name+"_"+key)
			if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(data, "kind: Boards") {
				inventories = append(inventories, f)
			} else {
				files = append(files, f)
			}
		}
	}
	if len(files) < 1 || len(inventories) < 1 {
		t.Errorf("found %d embedded plans or inventories, want the catalog test's plan and the dutlink sample's inventory", len(files))
	}
	plans, err := filepath.Glob(filepath.Join("testdata", "plans", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		if filepath.Base(p) != "invalid.yaml" {
			files = append(files, p)
		}
	}
	// Plans against the built-in inventory; each inventory on its own (given
	// with plans, jsplan would check the plans against it).
	for _, args := range append([][]string{files}, splitEach(inventories)...) {
		out, err := exec.Command(bin, append([]string{"validate"}, args...)...).CombinedOutput()
		if err != nil {
			t.Errorf("jsplan validate %v: %v\n%s", args, err, out)
		}
	}
	out, err := exec.Command(bin, "validate", filepath.Join("testdata", "plans", "invalid.yaml")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("jsplan validate invalid.yaml: %v, want exit 2\n%s", err, out)
	}
}

func splitEach(list []string) [][]string {
	var out [][]string
	for _, s := range list {
		out = append(out, []string{s})
	}
	return out
}
