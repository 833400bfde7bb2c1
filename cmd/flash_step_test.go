package cmd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The flash step writes compressed images through the flash pipeline onto
// the board's storage, checks the sha256 and boots what it wrote; a wrong
// checksum fails the step before the board boots.
func TestFlashStep(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd not installed (make deps installs it)")
	}
	e := newEnv(t)
	raw := append(bytes.Repeat([]byte{0}, 1<<20), []byte("\nJSPLAN_IMAGE_ID=flash-step-42\n")...)
	raw = append(raw, bytes.Repeat([]byte("data"), 50000)...)
	img := e.write("img/disk.img", string(raw))
	if out, err := exec.Command("zstd", "-q", "-f", img, "-o", img+".zst").CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v %s", err, out)
	}
	zst, _ := os.ReadFile(img + ".zst")
	sum := sha256.Sum256(zst)
	plan := e.write("flash.yaml", `apiVersion: jsplan.dev/v1
kind: Plan
params:
  image: {type: path, required: true}
  sha: {type: string, required: true}
steps:
  - power: off
  - flash: {image: "${{ params.image }}", sha256: "${{ params.sha }}", verify: true}
  - power: on
  - wait-for-login: {username: root, password: sim-password}
  - run: {command: cat etc/image-id, expect-output: "^flash-step-42$"}
finally:
  - power: off
`)
	art := filepath.Join(e.dir, "a1")
	r := e.run(e.applyArgs(plan, art, "--set", "image="+img+".zst", "--set", "sha="+hex.EncodeToString(sum[:]))...)
	if r.code != 0 {
		t.Fatalf("flash and boot failed: %s", r)
	}
	disk, err := os.ReadFile(filepath.Join(e.state, "sim-1", "sim", "disk.img"))
	if err != nil || !bytes.Equal(disk, raw) {
		t.Fatalf("the board's storage does not hold the decompressed image (%d vs %d bytes, %v)", len(disk), len(raw), err)
	}
	// The report names the image, its format and the checked sum.
	if rep := readReport(t, art); len(rep.Images) != 1 || rep.Images[0].Path != img+".zst" || rep.Images[0].Format != "zstd" ||
		rep.Images[0].SHA256 != hex.EncodeToString(sum[:]) || rep.Images[0].Step != "2" || rep.Images[0].Size != int64(len(raw)) {
		t.Errorf("report images: %+v", rep.Images)
	}
	bad := strings.Repeat("0", 64)
	art2 := filepath.Join(e.dir, "a2")
	r = e.run(e.applyArgs(plan, art2, "--set", "image="+img+".zst", "--set", "sha="+bad)...)
	if r.code != 1 || !strings.Contains(r.stdout, "checksum") {
		t.Fatalf("a wrong sha256 must fail the flash step (exit 1): %s", r)
	}
	rep := readReport(t, art2)
	if len(rep.Steps) < 4 || rep.Steps[1].Status != "failed" || rep.Steps[3].Status != "skipped" {
		t.Fatalf("flash must fail and the board must not boot: %+v", rep.Steps)
	}
}

// jsplan flash: the same pipeline from the command line, with exit codes by
// error class.
func TestFlashCommand(t *testing.T) {
	e := newEnv(t)
	img := e.write("img.raw", strings.Repeat("jsplan flash command\n", 10000))
	target := filepath.Join(e.dir, "target.img")
	if r := e.run("flash", "-q", img, target); r.code != 0 {
		t.Fatalf("%s", r)
	}
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) {
		t.Fatal("target differs from the image")
	}
	if r := e.run("flash", "-q", "--sha256", strings.Repeat("ab", 32), img, target); r.code != 1 || !strings.Contains(r.stderr, "checksum") {
		t.Fatalf("wrong checksum: %s", r)
	}
	if r := e.run("flash", "-q", img, "/dev/null"); r.code != 3 || !strings.Contains(r.stderr, "character device") {
		t.Fatalf("refused target: %s", r)
	}
	if r := e.run("flash", img); r.code != 2 {
		t.Fatalf("usage: %s", r)
	}
}
