package image

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const repoRoot = "../.."

// imageRef is the Task image's reference as the Makefile sets it
// (IMAGE_REF), the one place it is set.
func imageRef(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE_REF\s*:?=\s*(\S+)\s*$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("Makefile: no IMAGE_REF := line")
	}
	if !regexp.MustCompile(`^[a-z0-9.-]+\.[a-z]+(:[0-9]+)?/[a-z0-9._/-]+:[\w][\w.-]*$`).MatchString(m[1]) ||
		strings.HasSuffix(m[1], ":latest") {
		t.Fatalf("Makefile: IMAGE_REF %s is not a registry-qualified reference with a version tag", m[1])
	}
	return m[1]
}

// paramDefault returns the default of the param named name in the Tekton
// resource in file (spec.params).
func paramDefault(t *testing.T, file, name string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			Params []struct {
				Name    string `yaml:"name"`
				Default any    `yaml:"default"`
			} `yaml:"params"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, p := range doc.Spec.Params {
		if p.Name == name {
			s, _ := p.Default.(string)
			return s, true
		}
	}
	return "", false
}

// TestImageReference checks that the image `make image` builds (IMAGE_REF in
// the Makefile) is the one the Task, the Pipeline and the DUTLink sample name
// by default, and the one the Containerfile and the READMEs describe: every
// mention of the image's repository carries IMAGE_REF's tag, and the
// Containerfile's VERSION defaults to that tag.
func TestImageReference(t *testing.T) {
	ref := imageRef(t)
	i := strings.LastIndex(ref, ":")
	repo, tag := ref[:i], ref[i+1:]

	for _, f := range []string{
		"tekton/task/jsplan/0.1/jsplan.yaml",
		"tekton/task/jsplan/0.1/samples/task-jsplan-dutlink.yaml",
		"tekton/pipeline/jsplan-hil/jsplan-hil.yaml",
	} {
		def, ok := paramDefault(t, f, "jsplan-image")
		if !ok {
			t.Errorf("%s: no jsplan-image param", f)
		} else if def != ref {
			t.Errorf("%s: jsplan-image defaults to %q, want IMAGE_REF %s (Makefile)", f, def, ref)
		}
	}

	// Every mention of the repository, wherever it is; these files must
	// mention it.
	// (Another image whose name starts the same, ghcr.io/jsplan/jsplan-dra,
	// is not a mention.)
	mention := regexp.MustCompile(regexp.QuoteMeta(repo) + `(:[\w.-]+|-[\w.-]*)?`)
	for _, f := range []string{
		"README.md",
		"tekton/Containerfile",
		"tekton/README.md",
		"tekton/task/jsplan/0.1/README.md",
		"tekton/task/jsplan/0.1/jsplan.yaml",
		"tekton/task/jsplan/0.1/samples/task-jsplan-dutlink.yaml",
		"tekton/pipeline/jsplan-hil/jsplan-hil.yaml",
	} {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Error(err)
			continue
		}
		ms := mention.FindAllString(string(b), -1)
		if len(ms) == 0 {
			t.Errorf("%s does not mention the image %s", f, ref)
		}
		for _, m := range ms {
			if strings.HasPrefix(m, repo+"-") {
				continue
			}
			if m != ref {
				t.Errorf("%s names %s, want IMAGE_REF %s (Makefile)", f, m, ref)
			}
		}
	}

	b, err := os.ReadFile(filepath.Join(repoRoot, "tekton", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	versions := regexp.MustCompile(`(?m)^ARG VERSION=(\S+)$`).FindAllStringSubmatch(string(b), -1)
	if len(versions) == 0 {
		t.Error("tekton/Containerfile: no ARG VERSION= default")
	}
	for _, v := range versions {
		if v[1] != tag {
			t.Errorf("tekton/Containerfile: ARG VERSION=%s, want IMAGE_REF's tag %s", v[1], tag)
		}
	}
}

// TestContainerfileRuntime checks what the image's runtime stage promises the
// Task beyond the tools (tekton/tests checks those): a numeric USER without a
// group, so that the user keeps its supplementary groups (dialout and plugdev
// for serial and USB devices); the lock directory where /var/lock really
// points; and a .containerignore that keeps the repository's history, caches
// and outputs out of the build context.
func TestContainerfileRuntime(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "tekton", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)\s*$`).FindAllStringSubmatch(text, -1)
	if len(users) == 0 {
		t.Fatal("no USER")
	}
	if u := users[len(users)-1][1]; !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(u) {
		t.Errorf("final USER %s: want a bare numeric uid (uid:gid drops the supplementary groups)", u)
	}
	if !regexp.MustCompile(`useradd[^\n]*--groups\s+\S*dialout`).MatchString(text) ||
		!regexp.MustCompile(`useradd[^\n]*--groups\s+\S*plugdev`).MatchString(text) {
		t.Error("the image's user is not in dialout and plugdev")
	}
	if !strings.Contains(text, "/run/lock/jsplan") {
		t.Error("the lock directory is not made at /run/lock/jsplan (/var/lock is a symlink to /run/lock)")
	}

	ig, err := os.ReadFile(filepath.Join(repoRoot, ".containerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(ig), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{".git", ".cache", "out", "bin"} {
		if !lines[want] {
			t.Errorf(".containerignore does not exclude %s", want)
		}
	}
}

// TestImageTestGivesEveryStepVariable: test-image.sh runs the Task's step
// script as the Task's pod would, so it must give the container every
// environment variable the step declares (a new param the script reads
// and the emulation leaves unset fails the run for the wrong reason).
func TestImageTestGivesEveryStepVariable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "tekton/task/jsplan/0.1/jsplan.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var task struct {
		Spec struct {
			Steps []struct {
				Env []struct{ Name string }
			}
		}
	}
	if err := yaml.Unmarshal(b, &task); err != nil {
		t.Fatal(err)
	}
	sh, err := os.ReadFile(filepath.Join(repoRoot, "internal/image/test-image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range task.Spec.Steps {
		for _, e := range s.Env {
			n++
			if !regexp.MustCompile(`-e ` + regexp.QuoteMeta(e.Name) + `=`).Match(sh) {
				t.Errorf("test-image.sh does not give the step's %s", e.Name)
			}
		}
	}
	if n < 10 {
		t.Fatalf("found %d step variables in the Task; the test reads it wrongly", n)
	}
}
