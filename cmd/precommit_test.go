package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The jsplan-validate hook runs through pre-commit itself, from a scratch
// repository, against a good and a bad plan.
func TestPreCommitHook(t *testing.T) {
	if _, err := exec.LookPath("pre-commit"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pre-commit is not installed: make test installs it")
		}
		t.Skip("pre-commit not installed (make deps installs it)")
	}
	if testing.Short() {
		t.Skip("slow: builds jsplan inside pre-commit")
	}
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	home := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@localhost", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@localhost")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	cfg := "repos:\n  - repo: " + strings.TrimSpace(string(root)) + "\n    rev: " + strings.TrimSpace(string(rev)) +
		"\n    hooks:\n      - id: jsplan-validate\n"
	write := func(name, text string) {
		p := filepath.Join(repo, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".pre-commit-config.yaml", cfg)
	write("plans/good.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nsteps:\n  - log: hello\n")
	git("add", ".")
	precommit := func(files ...string) (string, error) {
		cmd := exec.Command("pre-commit", append([]string{"run", "--files"}, files...)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "PRE_COMMIT_HOME="+home)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := precommit("plans/good.yaml"); err != nil {
		t.Fatalf("hook failed on a good plan: %v\n%s", err, out)
	}
	write("plans/bad.yaml", "apiVersion: jsplan.dev/v1\nkind: Plan\nsteps:\n  - power: on\n    timout: 3s\n")
	git("add", ".")
	out, err := precommit("plans/bad.yaml")
	if err == nil {
		t.Fatalf("hook passed a bad plan:\n%s", out)
	}
	if !strings.Contains(out, "plans/bad.yaml:5:5") || !strings.Contains(out, `did you mean "timeout"`) {
		t.Fatalf("hook output lacks the position and hint:\n%s", out)
	}
	// A repository full of other YAML: playbooks and manifests beside the
	// plans pass; a plan with a mistyped apiVersion does not pass unchecked.
	write("plans/site.yml", "- hosts: all\n  tasks: []\n")
	write("plans/boards/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
	git("add", ".")
	if out, err := precommit("plans/good.yaml", "plans/site.yml", "plans/boards/pod.yaml"); err != nil {
		t.Fatalf("hook failed on other YAML beside the plans: %v\n%s", err, out)
	}
	write("plans/typo.yaml", "apiVersion: jsplan/v1\nkind: Plan\nsteps:\n  - log: hello\n")
	git("add", ".")
	out, err = precommit("plans/site.yml", "plans/typo.yaml")
	if err == nil || !strings.Contains(out, "plans/typo.yaml:1:13") || !strings.Contains(out, "not a jsplan document") {
		t.Fatalf("hook passed a plan with a mistyped apiVersion: %v\n%s", err, out)
	}
}
