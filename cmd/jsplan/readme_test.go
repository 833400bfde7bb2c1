package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The plans and inventories shown in README.md are valid as written (the
// plan next to a copy of plans/lib, as the README says it is saved).
func TestReadmeExamplesValidate(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1)
	dir := t.TempDir()
	libs, _ := filepath.Glob("../../plans/lib/*.yaml")
	for _, l := range libs {
		b, _ := os.ReadFile(l)
		p := filepath.Join(dir, "plans", "lib", filepath.Base(l))
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checked := 0
	for i, m := range blocks {
		if !bytes.Contains(m[1], []byte("apiVersion: jsplan.dev/v1")) {
			continue
		}
		p := filepath.Join(dir, "plans", "examples", "readme-"+string(rune('a'+i))+".yaml")
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, m[1], 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if code := run([]string{"jsplan", "validate", p}, &out, &errOut); code != 0 {
			t.Errorf("README example %d is invalid:\n%s\n%s", i+1, m[1], errOut.String())
		}
		checked++
	}
	if checked < 2 {
		t.Fatalf("expected the README's plan and inventory examples, found %d", checked)
	}
}
