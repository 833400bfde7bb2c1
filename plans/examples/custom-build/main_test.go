package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// bins builds this example's jsplan and the stock one (cmd/jsplan) into a
// temporary directory, as a lab would: go build.
func bins(t *testing.T) (lab, stock string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building a jsplan needs go in PATH: %v", err)
	}
	dir := t.TempDir()
	lab, stock = filepath.Join(dir, "jsplan-lab"), filepath.Join(dir, "jsplan")
	for _, b := range [][2]string{{lab, "."}, {stock, "../../../cmd/jsplan"}} {
		out, err := exec.Command(goBin, "build", "-o", b[0], b[1]).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	return lab, stock
}

// result is one run of a built binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// run runs bin with args in dir.
func run(t *testing.T, dir, bin string, args ...string) result {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Dir = dir
	c.Env = append(os.Environ(), "NO_COLOR=1")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return r
}

// work copies the example's plan and inventory into a fresh directory.
func work(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"relay-check.yaml", "boards.yaml", "jsplan.schema.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// report reads a run's report.json: each step's type and status.
func report(t *testing.T, artifacts string) (status string, steps [][2]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(artifacts, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Status string `json:"status"`
		Steps  []struct {
			Type, Status string
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Steps {
		steps = append(steps, [2]string{s.Type, s.Status})
	}
	return r.Status, steps
}

// A jsplan built with a lab's step type and driver validates, renders and
// runs a plan using both, on the virtual board; its schema has them; the
// stock jsplan rejects the plan, naming the unknown step at its position.
func TestCustomBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	lab, stock := bins(t)
	dir := work(t)

	// The schema: the checked-in one (for the modelines) is the custom
	// binary's; the stock binary's lacks the new step and driver.
	want, err := os.ReadFile("jsplan.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, dir, lab, "schema")
	if r.code != 0 || r.stdout != string(want) {
		t.Errorf("jsplan-lab schema differs from jsplan.schema.json (regenerate: go run . schema > jsplan.schema.json): %s", r.stderr)
	}
	for _, def := range []string{`"step.expect-power"`, `"driver.relay"`} {
		if !strings.Contains(r.stdout, def) {
			t.Errorf("jsplan-lab schema has no %s", def)
		}
		if s := run(t, dir, stock, "schema"); s.code != 0 || strings.Contains(s.stdout, def) {
			t.Errorf("stock schema (exit %d) has %s", s.code, def)
		}
	}

	if r := run(t, dir, lab, "validate", "--boards", "boards.yaml", "relay-check.yaml"); r.code != 0 {
		t.Fatalf("jsplan-lab validate: %s", r)
	}
	r = run(t, dir, lab, "render", "--boards", "boards.yaml", "relay-check.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "power: relay") ||
		!strings.Contains(r.stdout, "- expect-power: \"on\"") || !strings.Contains(r.stdout, "within: 2s") {
		t.Fatalf("jsplan-lab render: %s", r)
	}

	// apply on relay-sim-1, a sim board with the relay: the relay switches the power,
	// its card file keeps channel 3's state, expect-power reads it back.
	state, art := filepath.Join(dir, "state"), filepath.Join(dir, "art-relay")
	r = run(t, dir, lab, "apply", "relay-check.yaml", "--boards", "boards.yaml",
		"--artifacts", art, "--state-dir", state, "--lock-dir", filepath.Join(dir, "locks"))
	if r.code != 0 {
		t.Fatalf("jsplan-lab apply: %s", r)
	}
	for _, line := range []string{"relay: channel 3 on", "relay: channel 3 off", "power is on, as expected", "power is off, as expected"} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("apply output lacks %q:\n%s", line, r.stdout)
		}
	}
	status, steps := report(t, art)
	wantSteps := [][2]string{{"power", "passed"}, {"expect-power", "passed"}, {"power", "passed"}, {"expect-power", "passed"}}
	if status != "passed" || len(steps) != len(wantSteps) {
		t.Fatalf("report: %s %v", status, steps)
	}
	for i := range steps {
		if steps[i] != wantSteps[i] {
			t.Errorf("step %d: %v, want %v", i+1, steps[i], wantSteps[i])
		}
	}
	card, err := os.ReadFile(filepath.Join(state, "relay-sim-1", "relay", "card"))
	if err != nil || string(card) != "00000000\n" {
		t.Errorf("relay card after the run: %q, %v; want every channel open", card, err)
	}

	// The state is read back, not remembered: a plan that expects the
	// power on after switching it off fails as a test failure (exit 1).
	wrong := strings.Replace(readFile(t, filepath.Join(dir, "relay-check.yaml")),
		"expect-power: {state: off, within: 2s}", "expect-power: {state: on, within: 200ms}", 1)
	if err := os.WriteFile(filepath.Join(dir, "wrong.yaml"), []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, dir, lab, "apply", "wrong.yaml", "--boards", "boards.yaml",
		"--artifacts", filepath.Join(dir, "art-wrong"), "--state-dir", state, "--lock-dir", filepath.Join(dir, "locks"))
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "power is off, expected on within 200ms") {
		t.Errorf("apply expecting the wrong state: %s", r)
	}

	// The same plan on the built-in inventory's sim-1: expect-power reads
	// the sim driver's power state; no relay is involved.
	r = run(t, dir, lab, "apply", "relay-check.yaml", "--artifacts", filepath.Join(dir, "art-sim"),
		"--state-dir", filepath.Join(dir, "state-sim"), "--lock-dir", filepath.Join(dir, "locks"))
	if r.code != 0 || strings.Count(r.stdout, "as expected") != 2 || strings.Contains(r.stdout, "relay:") {
		t.Errorf("jsplan-lab apply on the built-in sim-1: %s", r)
	}

	// The stock jsplan: the step and the driver are unknown keys, each at
	// its file:line:col.
	r = run(t, dir, stock, "validate", "--boards", "boards.yaml", "relay-check.yaml")
	for _, d := range []string{
		`relay-check.yaml:15:5: error: unknown key "expect-power"`,
		`relay-check.yaml:17:5: error: unknown key "expect-power"`,
		`boards.yaml:13:7: error: unknown key "relay"`,
	} {
		if r.code != 2 || !strings.Contains(r.stderr, d) {
			t.Errorf("stock validate: want exit 2 and %q: %s", d, r)
		}
	}

	// Walking plans/, the stock jsplan skips this directory (its schema is
	// another jsplan's) and says so; this jsplan checks it with the rest.
	r = run(t, ".", stock, "validate", "../..")
	if r.code != 0 || !strings.Contains(r.stdout, "(2 skipped: for another jsplan") {
		t.Errorf("stock validate plans/: %s", r)
	}
	r = run(t, ".", lab, "validate", "../..")
	if r.code != 0 || strings.Contains(r.stdout, "another jsplan") {
		t.Errorf("jsplan-lab validate plans/: %s", r)
	}
}

// TestBuildsAsItsOwnModule builds the example as a lab would outside this
// repository: its own module (example.com/lab) that requires jsplan,
// which is how a step type registered from another module reaches the
// schema, validation and a run. The lab needs no module the main module
// does not (go.sum is the main module's), so the module cache the tests
// were built from serves it; where it does not, the Go proxy does.
func TestBuildsAsItsOwnModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a jsplan: not in -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building a jsplan needs go in PATH: %v", err)
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	lab := t.TempDir()
	const self = "github.com/jsplan/jsplan/plans/examples/custom-build/"
	for _, f := range []string{"main.go", "relay/relay.go", "expectpower/expectpower.go", "relay-check.yaml", "boards.yaml", "jsplan.schema.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(self), []byte("example.com/lab/"))
		if err := os.MkdirAll(filepath.Join(lab, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lab, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mod := "module example.com/lab\n\ngo 1.26\n\nrequire github.com/jsplan/jsplan v0.0.0\n\nreplace github.com/jsplan/jsplan => " + root + "\n"
	if err := os.WriteFile(filepath.Join(lab, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lab, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(lab, "jsplan-lab")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = lab
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in its own module: %v\n%s", err, out)
	}

	if r := run(t, lab, bin, "schema"); r.code != 0 || !strings.Contains(r.stdout, `"step.expect-power"`) || !strings.Contains(r.stdout, `"driver.relay"`) {
		t.Fatalf("the lab's schema lacks its step or driver: %s", r)
	}
	if r := run(t, lab, bin, "validate", "--boards", "boards.yaml", "relay-check.yaml"); r.code != 0 {
		t.Fatalf("validate: %s", r)
	}
	r := run(t, lab, bin, "apply", "relay-check.yaml", "--boards", "boards.yaml", "--artifacts", filepath.Join(lab, "art"),
		"--state-dir", filepath.Join(lab, "state"), "--lock-dir", filepath.Join(lab, "locks"))
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "power is on, as expected") {
		t.Fatalf("apply on the relay board: %s", r)
	}
}
