package steps_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
)

// A host file a step reads is checked when the plan is loaded to run, at
// its key; validation alone (the file may be made by the pipeline) and a
// path that waits on an expression are not checked.
func TestStepHostFilesCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	plan := "apiVersion: jsplan.dev/v1\nkind: Plan\nname: files\nsteps:\n" +
		"  - flash: {image: missing.img}\n" +
		"  - ansible: {playbook: missing.yml}\n" +
		"  - ansible: {playbook: there.yml}\n"
	if err := os.WriteFile(filepath.Join(dir, "there.yml"), []byte("- hosts: all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "plan.yaml")

	l := engine.NewLoader(engine.Options{Mode: engine.ModeRun})
	l.LoadPlanBytes(name, []byte(plan))
	var got []string
	for _, d := range l.Diagnostics() {
		got = append(got, d.Error())
	}
	want := []string{
		name + ":5:20: image " + filepath.Join(dir, "missing.img") + ": no such file or directory",
		name + ":6:25: playbook " + filepath.Join(dir, "missing.yml") + ": no such file or directory",
	}
	if len(got) != len(want) {
		t.Fatalf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("diagnostic %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}

	v := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	v.LoadPlanBytes(name, []byte(plan))
	if ds := v.Diagnostics(); len(ds) != 0 {
		t.Errorf("validation checked host files: %v", ds)
	}
}
