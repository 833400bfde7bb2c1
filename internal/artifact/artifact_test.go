package artifact

import (
	"os"
	"path/filepath"
	"testing"
)

// Symlinks and hard links planted in the artifacts are replaced, never
// written through; names leading out of the directory are refused.
func TestNeverWritesOutside(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	os.Symlink(victim, filepath.Join(dir, "console.log"))
	os.Link(victim, filepath.Join(dir, "report.json"))
	os.Symlink(outside, filepath.Join(dir, "sub"))

	f, err := Create(dir, "console.log")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("log")
	f.Close()
	if err := WriteFile(dir, "report.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "sub/x", []byte("x")); err == nil {
		t.Fatal("writing through a symlinked directory must fail")
	}
	if err := WriteFile(dir, "../x", []byte("x")); err == nil {
		t.Fatal("a name with .. must be refused")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the file outside was changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Fatal("a file was created outside")
	}
	for name, want := range map[string]string{"console.log": "log", "report.json": "{}"} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != FileMode {
			t.Fatalf("%s: %v %v", name, fi, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != want {
			t.Fatalf("%s = %q", name, b)
		}
	}
}
