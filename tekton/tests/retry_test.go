package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// The retry-infra param reaches jsplan: the first board's power switch
// fails (exit 3), the run moves to the second board and passes, and the
// artifacts keep both attempts.
func TestRetryInfraParam(t *testing.T) {
	e, art := plansEmulation(t, map[string]any{"plan": "pass.yaml", "retry-infra": "1", "params": []string{"greeting=hello from tekton"}},
		v1.WorkspaceBinding{Name: "boards", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "boards"}}})
	e.ConfigMaps = map[string]*corev1.ConfigMap{"boards": {Data: map[string]string{"boards.yaml": `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: broken-sim
    labels: {kind: virtual}
    drivers:
      sim: {password: demo-password, faults: {power-fail: true}}
  - name: good-sim
    labels: {kind: virtual}
    drivers:
      sim: {password: demo-password}
`}}}
	res := e.run(t)
	checkResults(t, res, 0, "passed", "passed: ")
	var rep struct {
		Board    string `json:"board"`
		Attempts []struct {
			Board    string `json:"board"`
			ExitCode int    `json:"exit_code"`
			Reason   string `json:"reason"`
			Dir      string `json:"dir"`
		} `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(art, "report.json"))), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Board != "good-sim" || len(rep.Attempts) != 2 || rep.Attempts[0].Board != "broken-sim" || rep.Attempts[0].ExitCode != 3 ||
		!strings.Contains(rep.Attempts[0].Reason, "power") || rep.Attempts[0].Dir != "attempt-1" {
		t.Fatalf("report.json: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(art, "attempt-1", "report.json")); err != nil {
		t.Errorf("the first attempt's artifacts: %v", err)
	}
	if _, err := os.Stat(filepath.Join(art, "jsplan.log")); err != nil {
		t.Errorf("jsplan.log (the Task's, not jsplan's) must stay in place: %v", err)
	}
}

// A retry-infra that is not a number stops the step before jsplan runs.
func TestRetryInfraParamNotANumber(t *testing.T) {
	e, art := plansEmulation(t, map[string]any{"plan": "pass.yaml", "retry-infra": "two"})
	res := e.run(t)
	checkResults(t, res, 2, "error", `error (exit 2): param retry-infra "two" is not a number of retries`)
	if _, err := os.Stat(filepath.Join(art, "jsplan.log")); err == nil {
		t.Error("jsplan ran")
	}
}
