package steps_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
	"github.com/jsplan/jsplan/steps"
)

func TestCollectDestName(t *testing.T) {
	for _, tc := range []struct{ to, src, want string }{
		{"files", "/var/log/syslog", "files/var/log/syslog"},
		{"files", "var/log/syslog", "files/var/log/syslog"},
		{"files", "../../../etc/passwd", "files/etc/passwd"},
		{"files", "/a/../../b", "files/b"},
		{"logs", "a/./b//c", "logs/a/b/c"},
		{"logs/deep", "x/../../../../y", "logs/deep/y"},
		{"files", "..", "files"},
		{"files", "C:\\x", "files/C:\\x"},
	} {
		got, err := steps.DestName(tc.to, tc.src)
		if err != nil || got != filepath.FromSlash(tc.want) {
			t.Errorf("DestName(%q, %q) = %q, %v; want %q", tc.to, tc.src, got, err, tc.want)
		}
		if err == nil && !filepath.IsLocal(got) {
			t.Errorf("DestName(%q, %q) = %q leaves the artifacts", tc.to, tc.src, got)
		}
	}
}

// emptyDir fails the test when dir holds anything.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			t.Errorf("written outside the artifacts: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCollectLocal(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "data", "result.txt")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("result: ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := strings.Split(strings.TrimPrefix(filepath.ToSlash(src), "/"), "/")[0] // e.g. "tmp"
	plan := func(to string) string {
		return head + "steps:\n  - name: collect\n    collect: {from: local, paths: data/*.txt, to: " + to + "}\n"
	}

	t.Run("plain", func(t *testing.T) {
		r := execute(t, dir, "", plan("files"), false, nil)
		if s := r.step(t, "collect"); s.Status != result.Passed {
			t.Fatalf("%s %s", s.Status, s.Error)
		}
		b, err := os.ReadFile(filepath.Join(r.artifacts, "files", src))
		if err != nil || string(b) != "result: ok\n" {
			t.Errorf("collected file: %q %v", b, err)
		}
	})

	for _, tc := range []struct {
		name, to string
		link     string // a path inside the artifacts made a symlink to outside
	}{
		{"target dir is a symlink", "files", "files"},
		{"parent of the target dir is a symlink", "logs/deep", "logs"},
		{"a directory on the way is a symlink", "files", "files/" + first},
	} {
		t.Run(tc.name, func(t *testing.T) {
			art := filepath.Join(t.TempDir(), "artifacts")
			outside := t.TempDir()
			link := filepath.Join(art, filepath.FromSlash(tc.link))
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, link); err != nil {
				t.Fatal(err)
			}
			r := execute(t, dir, art, plan(tc.to), false, nil)
			s := r.step(t, "collect")
			if s.Status == result.Passed {
				t.Errorf("collect through a symlink out of the artifacts passed")
			}
			emptyDir(t, outside)
		})
	}

	t.Run("file is a symlink", func(t *testing.T) {
		art := filepath.Join(t.TempDir(), "artifacts")
		outside := t.TempDir()
		target := filepath.Join(outside, "victim")
		if err := os.WriteFile(target, []byte("untouched"), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(art, "files", src)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		r := execute(t, dir, art, plan("files"), false, nil)
		if s := r.step(t, "collect"); s.Status == result.Passed {
			t.Errorf("collect through a file symlink passed")
		}
		if b, _ := os.ReadFile(target); string(b) != "untouched" {
			t.Errorf("file outside the artifacts overwritten: %q", b)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		r := execute(t, dir, "", head+"steps:\n  - name: collect\n    collect: {from: local, paths: nothing/*.log}\n"+
			"  - name: optional\n    collect: {from: local, paths: nothing/*.log, optional: true}\n", false, nil)
		if s := r.step(t, "collect"); s.Status != result.Failed || !strings.Contains(s.Error, "no file matches") {
			t.Errorf("missing file: %s %s", s.Status, s.Error)
		}
	})
}

func TestCollectToOutsideIsInvalid(t *testing.T) {
	for _, to := range []string{"../escape", "/tmp/x", "files/../../x", ".."} {
		l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
		l.LoadPlanBytes(filepath.Join(t.TempDir(), "plan.yaml"), []byte(head+"steps:\n  - collect: {paths: /x, to: '"+to+"'}\n"))
		ds := l.Diagnostics()
		if len(ds) != 1 || !strings.Contains(ds[0].Summary, "must be a relative path inside the artifacts directory") || ds[0].Subject.Start.Line != 5 {
			t.Errorf("to: %s: %v", to, ds)
		}
	}
}

func TestCollectFromTheBoard(t *testing.T) {
	r := execute(t, "", "", head+login+`  - name: make files
    run: |
      mkdir -p d/sub && printf 'one\n' > d/a.log && printf 'two\n' > d/b.log && printf 'sp\n' > 'd/with space.txt'
      printf 'bin\000\377\n' > d/sub/bin.dat && printf 'up\n' > ../outside.txt
  - name: globs
    collect: {paths: d/*.log, to: logs}
  - name: dot-dot on the board
    collect: ['d/../d/sub/bin.dat', '../outside.txt', 'd/with space.txt']
  - name: missing
    continue-on-error: true
    collect: d/nothing*
  - name: missing but optional
    collect: {paths: d/nothing*, optional: true}
`, true, nil)
	for _, name := range []string{"make files", "globs", "dot-dot on the board", "missing but optional"} {
		if s := r.step(t, name); s.Status != result.Passed {
			t.Errorf("%s: %s %s", name, s.Status, s.Error)
		}
	}
	if s := r.step(t, "missing"); s.Status != result.Failed {
		t.Errorf("missing file on the board: %s", s.Status)
	}
	for path, want := range map[string]string{
		"logs/d/a.log":           "one\n",
		"logs/d/b.log":           "two\n",
		"files/d/sub/bin.dat":    "bin\x00\xff\n",
		"files/outside.txt":      "up\n",
		"files/d/with space.txt": "sp\n",
	} {
		b, err := os.ReadFile(filepath.Join(r.artifacts, filepath.FromSlash(path)))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", path, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(r.artifacts), "outside.txt")); err == nil {
		t.Errorf("a board path with .. was written next to the artifacts")
	}
}
