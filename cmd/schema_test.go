package cmd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/schema"
)

// stockSchema is the checked-in schema artifact (for editors).
func stockSchema(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../schema/jsplan.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The checked-in schema is exactly what the stock binary's registries
// generate, and what `jsplan schema` prints: adding a step type or driver
// without `make schema` fails here. (This test binary registers the stock
// set, as cmd/jsplan does: stock_test.go.)
func TestSchemaMatchesRegistry(t *testing.T) {
	file := stockSchema(t)
	if got := engine.GenerateSchema(); !bytes.Equal(got, file) {
		t.Fatalf("schema/jsplan.schema.json is stale: run `make schema` (generated %d bytes, file %d)", len(got), len(file))
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"jsplan", "schema"}, &stdout, &stderr); code != 0 || !bytes.Equal(stdout.Bytes(), file) {
		t.Fatalf("jsplan schema: exit %d, %d bytes, want the file's %d: %s", code, stdout.Len(), len(file), stderr.String())
	}
	if _, err := schema.Compile(file); err != nil {
		t.Fatalf("schema does not compile as draft 2020-12: %v", err)
	}
}

// A third-party validator (ajv-cli) accepts the schema and agrees with
// jsplan on the shipped plans and on broken ones.
func TestThirdPartyValidatorAgrees(t *testing.T) {
	ajv := os.Getenv("JSPLAN_AJV")
	if ajv == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("JSPLAN_AJV is not set: make test installs ajv-cli and sets it")
		}
		t.Skip("JSPLAN_AJV not set (make test sets it after installing ajv-cli)")
	}
	dir := t.TempDir()
	sch := filepath.Join(dir, "jsplan.schema.json")
	if err := os.WriteFile(sch, stockSchema(t), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"unknown-key.yaml":  "apiVersion: jsplan.dev/v1\nkind: Plan\nsteps:\n  - power: on\n    timout: 3s\n",
		"two-actions.yaml":  "apiVersion: jsplan.dev/v1\nkind: Plan\nsteps:\n  - power: on\n    sleep: 1s\n",
		"bad-duration.yaml": "apiVersion: jsplan.dev/v1\nkind: Plan\nsteps:\n  - sleep: 5 minutes\n",
		"wrong-type.yaml":   "apiVersion: jsplan.dev/v1\nkind: Plan\nsteps:\n  - run: {command: [1, 2]}\n",
		"no-steps.yaml":     "apiVersion: jsplan.dev/v1\nkind: Plan\n",
	}
	var files []string
	for name, text := range bad {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	good, _ := filepath.Glob("../plans/*/*.yaml")
	if len(good) < 4 {
		t.Fatalf("expected the shipped plans, found %v", good)
	}
	for _, f := range append(good, files...) {
		cmd := exec.Command(ajv, "validate", "--spec=draft2020", "--strict=false", "-s", sch, "-d", f)
		out, err := cmd.CombinedOutput()
		ajvValid := err == nil
		if err != nil && !strings.Contains(string(out), "invalid") {
			t.Fatalf("ajv failed to run on %s: %v\n%s", f, err, out)
		}
		var stdout, stderr bytes.Buffer
		code := run([]string{"jsplan", "validate", f}, &stdout, &stderr)
		jsValid := code == 0
		_, isBad := bad[filepath.Base(f)]
		if ajvValid != jsValid || jsValid == isBad {
			t.Errorf("%s: ajv valid=%v, jsplan valid=%v (expected %v)\najv: %s\njsplan: %s", f, ajvValid, jsValid, !isBad, out, stderr.String())
		}
	}
}
