package tests

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/termination"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// repoRoot is the jsplan repository, whose main module holds cmd/jsplan.
const repoRoot = "../.."

var (
	buildOnce sync.Once
	jsplanDir string
	buildErr  error
)

// jsplanBin builds cmd/jsplan from the repository once per test binary and
// returns the directory that holds it, for PATH.
func jsplanBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs(repoRoot)
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "jsplan-tekton-bin-")
		if err != nil {
			buildErr = err
			return
		}
		jsplanDir = dir
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "jsplan"), "./cmd/jsplan")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/jsplan in %s: %v\n%s", root, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return jsplanDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if jsplanDir != "" {
		os.RemoveAll(jsplanDir)
	}
	os.Exit(code)
}

func testdataDir(t *testing.T, rel string) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newTaskRun is a TaskRun of the Task named task with string and array
// params and workspace bindings.
func newTaskRun(task string, params map[string]any, ws ...v1.WorkspaceBinding) *v1.TaskRun {
	tr := &v1.TaskRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "jsplan-run-1", Namespace: "hil", UID: "6a7b1c2d"},
		Spec: v1.TaskRunSpec{
			TaskRef:    &v1.TaskRef{Name: task},
			Workspaces: ws,
		},
	}
	for k, v := range params {
		switch v := v.(type) {
		case string:
			tr.Spec.Params = append(tr.Spec.Params, v1.Param{Name: k, Value: *v1.NewStructuredValues(v)})
		case []string:
			tr.Spec.Params = append(tr.Spec.Params, v1.Param{Name: k, Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: v}})
		}
	}
	return tr
}

func pvc(name, claim string) v1.WorkspaceBinding {
	return v1.WorkspaceBinding{Name: name, PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}
}

// plansEmulation runs the catalog Task with the plan workspace bound to a
// PVC holding testdata/plans and the artifacts workspace to a PVC whose
// directory is returned.
func plansEmulation(t *testing.T, params map[string]any, ws ...v1.WorkspaceBinding) (*emulation, string) {
	t.Helper()
	art := t.TempDir()
	e := &emulation{
		Task:     catalogTask(t),
		TaskRun:  newTaskRun("jsplan", params, append([]v1.WorkspaceBinding{pvc("plan", "plans"), pvc("artifacts", "artifacts")}, ws...)...),
		Claims:   map[string]string{"plans": testdataDir(t, "plans"), "artifacts": art},
		PathDirs: []string{jsplanBin(t)},
	}
	return e, art
}

// checkResults checks the verdict, the exit code, and that the summary is one
// clean line that starts with prefix.
func checkResults(t *testing.T, res *emulationResult, code int, verdict, prefix string) {
	t.Helper()
	if res.ExitCode != code {
		t.Errorf("step exit code %d, want %d\noutput:\n%s", res.ExitCode, code, res.Output)
	}
	if got := res.Results["verdict"]; got != verdict {
		t.Errorf("verdict %q, want %q", got, verdict)
	}
	s := res.Results["summary"]
	if !strings.HasPrefix(s, prefix) {
		t.Errorf("summary %q, want it to start with %q", s, prefix)
	}
	if strings.ContainsAny(s, "\n\r\x1b") || len([]rune(s)) > 400 {
		t.Errorf("summary is not one short clean line: %q", s)
	}
	// The termination message the entrypoint writes: parse it back as the
	// controller does.
	var rr []struct{ Key, Value string }
	if err := json.Unmarshal(res.Message, &rr); err != nil {
		t.Errorf("termination message %q: %v", res.Message, err)
	}
	if len(res.Message) > termination.MaxContainerTerminationMessageLength {
		t.Errorf("termination message is %d bytes", len(res.Message))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}

// report reads the status of report.json.
func report(t *testing.T, dir string) (status, summary string) {
	t.Helper()
	var r struct{ Status, Summary string }
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "report.json"))), &r); err != nil {
		t.Errorf("report.json: %v", err)
	}
	return r.Status, r.Summary
}

// junit parses junit.xml and returns its failure and error counts.
func junit(t *testing.T, dir string) (tests, failures, errors int) {
	t.Helper()
	var s struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
	}
	if err := xml.Unmarshal([]byte(readFile(t, filepath.Join(dir, "junit.xml"))), &s); err != nil {
		t.Errorf("junit.xml: %v", err)
	}
	return s.Tests, s.Failures, s.Errors
}

// TestCatalogTestRun runs the catalog's tests/run.yaml as it is: the
// ConfigMap becomes the plan workspace, the TaskRun runs the Task.
func TestCatalogTestRun(t *testing.T) {
	e := &emulation{Task: catalogTask(t), ConfigMaps: map[string]*corev1.ConfigMap{}, PathDirs: []string{jsplanBin(t)}}
	for _, m := range manifestsIn(t, "task/jsplan/0.1/tests/run.yaml") {
		switch o := m.Obj.(type) {
		case *corev1.ConfigMap:
			e.ConfigMaps[o.Name] = o
		case *v1.TaskRun:
			e.TaskRun = o
		}
	}
	if e.TaskRun == nil {
		t.Fatal("tests/run.yaml has no TaskRun")
	}
	res := e.run(t)
	checkResults(t, res, 0, "passed", "passed: ")
	art := res.Workspace["artifacts"]
	for _, f := range []string{"jsplan.log", "console.log", "report.json", "junit.xml", "report.html", "plan.rendered.yaml"} {
		if _, err := os.Stat(filepath.Join(art, f)); err != nil {
			t.Errorf("artifacts: %v", err)
		}
	}
	if st, sum := report(t, art); st != "passed" || sum+pagePointer != res.Results["summary"] {
		t.Errorf("report.json: status %q summary %q; the summary result is %q", st, sum, res.Results["summary"])
	}
	if n, f, e := junit(t, art); n == 0 || f != 0 || e != 0 {
		t.Errorf("junit.xml: %d tests, %d failures, %d errors", n, f, e)
	}
	// The step's output streams jsplan's own.
	if !strings.Contains(res.Output, "wait-for-login") || !strings.Contains(res.Output, "jsplan-task: verdict: passed") {
		t.Errorf("step output lacks jsplan's progress or the verdict:\n%s", res.Output)
	}
}

func TestFailingPlan(t *testing.T) {
	e, art := plansEmulation(t, map[string]any{"plan": "fail.yaml", "board": "sim-1"})
	res := e.run(t)
	checkResults(t, res, 1, "failed", "failed: ")
	if !strings.Contains(res.Results["summary"], "status 1") {
		t.Errorf("summary does not say why: %q", res.Results["summary"])
	}
	if st, _ := report(t, art); st != "failed" {
		t.Errorf("report.json status %q", st)
	}
	if _, f, _ := junit(t, art); f == 0 {
		t.Error("junit.xml has no failure")
	}
	if !strings.Contains(readFile(t, filepath.Join(art, "console.log")), "login:") {
		t.Error("console.log lacks the board's login prompt")
	}
}

func TestInvalidPlan(t *testing.T) {
	e, art := plansEmulation(t, map[string]any{"plan": "invalid.yaml"})
	res := e.run(t)
	checkResults(t, res, 2, "error", "error (exit 2): invalid.yaml:6:10: error: undefined parameter")
	if _, err := os.Stat(filepath.Join(art, "report.json")); err == nil {
		t.Error("an invalid plan left a report.json")
	}
}

// A params entry that is not key=value stops the step before jsplan runs.
func TestParamsEntryNotKeyValue(t *testing.T) {
	e, art := plansEmulation(t, map[string]any{"plan": "pass.yaml", "params": []string{"greeting=hi", "oops"}})
	res := e.run(t)
	checkResults(t, res, 2, "error", `error (exit 2): params entry "oops" is not key=value`)
	if _, err := os.Stat(filepath.Join(art, "jsplan.log")); err == nil {
		t.Error("jsplan ran")
	}
}

func TestJsplanMissing(t *testing.T) {
	e, _ := plansEmulation(t, map[string]any{"plan": "pass.yaml"})
	e.PathDirs = nil
	for _, d := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
		if _, err := os.Stat(filepath.Join(d, "jsplan")); err == nil {
			t.Skipf("%s/jsplan exists on this machine", d)
		}
	}
	res := e.run(t)
	checkResults(t, res, 127, "error", "error (exit 127): jsplan not found")
}

// Params and extra args reach jsplan as separate arguments, spaces kept.
func TestParamsAndExtraArgs(t *testing.T) {
	e, art := plansEmulation(t, map[string]any{
		"plan":       "pass.yaml",
		"board":      "sim-1",
		"params":     []string{"greeting=hello from tekton"},
		"extra-args": []string{"--output", "json"},
		"lock-wait":  "1m",
	})
	res := e.run(t)
	checkResults(t, res, 0, "passed", "passed: ")
	log := readFile(t, filepath.Join(art, "jsplan.log"))
	if !strings.Contains(log, `"event":"run-end"`) && !strings.Contains(log, `"event": "run-end"`) {
		t.Errorf("--output json did not reach jsplan; jsplan.log:\n%s", log)
	}
}

// The summary result is jsplan's summary from report.json, JSON escapes
// undone, and where to find report.html.
func TestSummaryFromReport(t *testing.T) {
	text := strings.Repeat(`<&>"x\\`, 20)
	e, art := plansEmulation(t, map[string]any{"plan": "longfail.yaml", "board": "sim-1", "params": []string{"text=" + text}})
	res := e.run(t)
	checkResults(t, res, 1, "failed", "failed: ")
	if _, sum := report(t, art); sum+pagePointer != res.Results["summary"] {
		t.Errorf("summary result\n%q\nreport.json summary and the pointer to report.html\n%q", res.Results["summary"], sum+pagePointer)
	}
}

// pagePointer ends the summary when the artifacts workspace holds report.html.
const pagePointer = " (details: report.html in the artifacts)"

// A very long message is cut to 400 characters, not bytes, so that the
// results fit the termination message and stay valid UTF-8.
func TestLongSummaryIsCut(t *testing.T) {
	name := strings.Repeat("ké", 300)
	e, _ := plansEmulation(t, map[string]any{"plan": "pass.yaml", "params": []string{name + "=1"}})
	res := e.run(t)
	checkResults(t, res, 2, "error", "error (exit 2): ")
	s := res.Results["summary"]
	if n := len([]rune(s)); n != 400 {
		t.Errorf("summary has %d characters, want it cut to 400: %q", n, s)
	}
	if !utf8.ValidString(s) || !strings.Contains(s, "kéké") {
		t.Errorf("summary is not the cut diagnostic: %q", s)
	}
}

// The image workspace reaches the plan as $JSPLAN_IMAGE_DIR, the inventory
// comes from a ConfigMap, and the password from the credentials Secret's
// params.yaml, without showing up in the results or the artifacts.
func TestImageBoardsAndCredentials(t *testing.T) {
	const password = "tk-Secret-7f3a"
	images := t.TempDir()
	id := fmt.Sprintf("tekton-%d", os.Getpid())
	img := append(make([]byte, 1<<20), []byte("\nJSPLAN_IMAGE_ID="+id+"\n")...)
	if err := os.WriteFile(filepath.Join(images, "disk.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	e, art := plansEmulation(t,
		map[string]any{"plan": "flash.yaml", "board": "bench-sim", "params": []string{"image-id=" + id}},
		pvc("image", "images"),
		v1.WorkspaceBinding{Name: "boards", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "boards"}}},
		v1.WorkspaceBinding{Name: "credentials", Secret: &corev1.SecretVolumeSource{SecretName: "creds", DefaultMode: ptr(int32(0o400))}},
	)
	e.Claims["images"] = images
	e.ConfigMaps = map[string]*corev1.ConfigMap{"boards": {Data: map[string]string{"boards.yaml": `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: bench-sim
    labels: {kind: virtual}
    vars: {image-id-file: etc/image-id}
    drivers:
      sim: {password: ` + password + `}
`}}}
	e.Secrets = map[string]*corev1.Secret{"creds": {Data: map[string][]byte{"params.yaml": []byte("password: " + password + "\n")}}}
	res := e.run(t)
	checkResults(t, res, 0, "passed", "passed: ")
	if b, _ := os.ReadFile(filepath.Join(art, "files", "etc", "image-id")); !strings.Contains(string(b), id) {
		t.Errorf("collected image-id %q, want %q", b, id)
	}
	for _, f := range []string{"jsplan.log", "console.log", "report.json", "junit.xml", "plan.rendered.yaml"} {
		if strings.Contains(readFile(t, filepath.Join(art, f)), password) {
			t.Errorf("%s shows the password", f)
		}
	}
	if strings.Contains(res.Output, password) || strings.Contains(string(res.Message), password) {
		t.Error("the step output or the results show the password")
	}
}

func ptr[T any](v T) *T { return &v }

// waitForFile waits until path contains want, for at most limit (a guard
// against a hang, not a measurement).
func waitForFile(path, want string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// SIGTERM to the step's process group, as Tekton's entrypoint forwards it
// on cancel or timeout: jsplan runs finally, the step reports interrupted
// and exits 143.
func TestInterrupted(t *testing.T) {
	e, art := plansEmulation(t, map[string]any{"plan": "hold.yaml", "board": "sim-1"})
	e.Started = func(pgid int) {
		go func() {
			if waitForFile(filepath.Join(art, "jsplan.log"), "holding the board", 2*time.Minute) {
				_ = syscall.Kill(-pgid, syscall.SIGTERM)
			}
		}()
	}
	res := e.run(t)
	checkResults(t, res, 143, "interrupted", "interrupted")
	if st, _ := report(t, art); st != "interrupted" {
		t.Errorf("report.json status %q", st)
	}
	if !strings.Contains(readFile(t, filepath.Join(art, "jsplan.log")), "finally ran") {
		t.Error("the plan's finally steps did not run")
	}
}

// Two pods of the privileged variant on one node share the hostPath lock
// directory: while one holds the board, the other gives up after lock-wait
// with an infrastructure error.
func TestDutlinkVariantLocksAcrossPods(t *testing.T) {
	var variant *v1.Task
	for _, m := range manifestsIn(t, "task/jsplan/0.1/samples/task-jsplan-dutlink.yaml") {
		if tk, ok := m.Obj.(*v1.Task); ok {
			variant = tk
		}
	}
	if variant == nil {
		t.Fatal("no Task in samples/task-jsplan-dutlink.yaml")
	}
	nodeLocks := t.TempDir() // the node's /var/lock/jsplan
	pod := func(plan string, params map[string]any) (*emulation, string) {
		art := t.TempDir()
		params["plan"] = plan
		params["board"] = "sim-1"
		return &emulation{
			Task:      variant,
			TaskRun:   newTaskRun(variant.Name, params, pvc("plan", "plans"), pvc("artifacts", "artifacts")),
			Claims:    map[string]string{"plans": testdataDir(t, "plans"), "artifacts": art},
			HostPaths: map[string]string{"/dev": "/dev", "/var/lock/jsplan": nodeLocks},
			PathDirs:  []string{jsplanBin(t)},
		}, art
	}

	holder, holderArt := pod("hold.yaml", map[string]any{})
	holding := make(chan int, 1)
	holder.Started = func(pgid int) {
		go func() {
			if waitForFile(filepath.Join(holderArt, "jsplan.log"), "holding the board", 2*time.Minute) {
				holding <- pgid
			}
			close(holding)
		}()
	}
	done := make(chan *emulationResult, 1)
	go func() {
		defer close(done)
		done <- holder.run(goTester{t})
	}()
	pgid, ok := <-holding
	if !ok {
		t.Fatal("the first run never held the board")
	}

	waiter, waiterArt := pod("pass.yaml", map[string]any{"lock-wait": "0s"})
	res := waiter.run(t)
	checkResults(t, res, 3, "error", "error: ")
	if !strings.Contains(res.Results["summary"], "busy") {
		t.Errorf("summary does not say the board is busy: %q", res.Results["summary"])
	}
	if st, _ := report(t, waiterArt); st != "error" {
		t.Errorf("report.json status %q", st)
	}

	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	if hres := <-done; hres != nil {
		checkResults(t, hres, 143, "interrupted", "interrupted")
	}
}
