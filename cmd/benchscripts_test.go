package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchScripts runs each benchmark script of `make bench` once on a
// tiny input, so that a broken benchmark fails the tests (a generated plan
// that validation refuses, a missing tool, a changed flag).
func TestBenchScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flashcmd and writes images")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("validate", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(root, "internal/bench/validate-bench.sh"))
		cmd.Env = append(os.Environ(), "N=3", "JSPLAN="+jsplanBin)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "validate 3 plans: jsplan ") {
			t.Fatalf("validate-bench.sh: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
	t.Run("flash", func(t *testing.T) {
		for _, tool := range []string{"go", "bmaptool", "zstd", "xz", "python3", "dd", "cmp"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("no %s here (internal/deps/deps.sh install)", tool)
			}
		}
		cmd := exec.Command(filepath.Join(root, "internal/bench/flash-bench.sh"))
		cmd.Env = append(os.Environ(), "RUNS=1", "RAW_SIZE=2097152", "SPARSE_SIZE=16777216")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "raw 2 MiB") || !strings.Contains(string(out), "sparse .xz, no bmap") {
			t.Fatalf("flash-bench.sh: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
}
