package results

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The producers of the committed samples, run again on this machine when
// they are installed (perl's Test::More, Node.js's test runner, pytest from
// Debian's python3-pytest): their fresh output parses to the same cases.
func TestLiveProducers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs perl, node and pytest")
	}
	dir := t.TempDir()
	copyTo := func(src, dst string) string {
		b, err := os.ReadFile(filepath.Join("testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, dst)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(name string, args ...string) []byte {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		_ = cmd.Run() // the suites fail on purpose
		return out.Bytes()
	}
	for _, c := range []struct {
		name, tool, format, sample string
		produce                    func() []byte
	}{
		{"Test::More", "perl", "tap", "test-more.tap", func() []byte {
			return run("perl", copyTo("test-more.t.txt", "sample.t"))
		}},
		{"prove -v --merge", "prove", "tap", "prove-v-merge.txt", func() []byte {
			if err := os.MkdirAll(filepath.Join(dir, "t"), 0o755); err != nil {
				t.Fatal(err)
			}
			copyTo("test-more.t.txt", "t/sample.t")
			copyTo("test-more-second.t.txt", "t/second.t")
			return run("prove", "-v", "--merge", "t/sample.t", "t/second.t")
		}},
		{"node --test", "node", "tap", "node-test.tap", func() []byte {
			return run("node", "--test", "--test-reporter=tap", copyTo("node-board.test.mjs.txt", "board.test.mjs"))
		}},
		{"pytest", "/usr/bin/python3", "junit", "pytest.xml", func() []byte {
			if err := exec.Command("/usr/bin/python3", "-c", "import pytest").Run(); err != nil {
				return nil
			}
			copyTo("pytest_board.py.txt", "test_board.py")
			run("/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=out.xml",
				"-o", "junit_family=xunit1", "-o", "junit_logging=system-out", "test_board.py")
			b, _ := os.ReadFile(filepath.Join(dir, "out.xml"))
			return b
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.tool); err != nil {
				t.Skipf("%s is not installed", c.tool)
			}
			out := c.produce()
			if len(out) == 0 {
				t.Skipf("%s produced nothing (not installed?)", c.name)
			}
			got := tree(parseString(t, c.format, string(out)))
			want := tree(parseFile(t, c.format, c.sample))
			if got != want {
				t.Fatalf("fresh output:\n%s\ncommitted sample:\n%s\nraw:\n%s", got, want, out)
			}
			if strings.Contains(got, "no result") || strings.Contains(got, "ended") {
				t.Fatalf("a complete run parsed as incomplete:\n%s", got)
			}
		})
	}
}
