package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const mib = 1 << 20

// testImageSize is not a multiple of the page size on purpose.
const testImageSize = 8*mib + 1000

// fixture is a shared test image, made once, whose compressed forms are
// made once too (compressing is most of the tests' time).
var fixture string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flash-test-")
	if err != nil {
		panic(err)
	}
	fixture = filepath.Join(dir, "fixture.img")
	makeImage(&fixtureTB{}, fixture)
	for _, f := range formats {
		if _, err := exec.LookPath(map[string]string{"raw": "true", "gzip": "gzip", "xz": "xz", "zstd": "zstd", "bzip2": "bzip2"}[f]); err == nil {
			compress(&fixtureTB{}, fixture, f)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixtureTB lets the helpers run outside a test; failures panic.
type fixtureTB struct{ testing.TB }

func (fixtureTB) Helper()                   {}
func (fixtureTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (fixtureTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (fixtureTB) Skipf(f string, a ...any)  { panic(fmt.Sprintf(f, a...)) }

// makeImage writes a sparse test image: random and text data, allocated
// zeros, holes, a range across the 5 MiB mark (an xz block boundary with
// 1 MiB blocks) and an unaligned tail.
func makeImage(t testing.TB, path string) []byte {
	t.Helper()
	if fixture != "" && path != fixture {
		// Reuse the shared image (and its compressed forms).
		for _, ext := range []string{"", ".gz", ".xz", ".zst", ".bz2"} {
			if _, err := os.Stat(fixture + ext); err == nil {
				if err := os.Link(fixture+ext, path+ext); err != nil {
					break
				}
			}
		}
		if b, err := os.ReadFile(path); err == nil && len(b) == testImageSize {
			return b
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	img := make([]byte, testImageSize)
	fill := func(off, n int) {
		for i := off; i < off+n; i++ {
			img[i] = byte(rng.Uint32())
		}
	}
	text := func(off, n int) {
		line := []byte("jsplan flash test image, a line of text that compresses well. ")
		for i := 0; i < n; i++ {
			img[off+i] = line[i%len(line)]
		}
	}
	fill(0, 64<<10)
	text(3*mib, 400<<10)
	fill(3*mib+400<<10, 300<<10)
	// 3 MiB + 700 KiB .. + 64 KiB: zeros, but written (allocated)
	fill(4*mib, 300<<10)
	fill(5*mib-8<<10, 16<<10)
	text(5*mib+100<<10, 4096)
	fill(testImageSize-1000, 1000)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Write only the non-zero parts, plus the allocated zeros, so the rest
	// stays holes.
	write := func(off, n int) {
		if _, err := f.WriteAt(img[off:off+n], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 64<<10)
	write(3*mib, 764<<10)
	write(4*mib, 300<<10)
	write(5*mib-8<<10, 16<<10)
	write(5*mib+100<<10, 4096)
	write(testImageSize-1000, 1000)
	if err := f.Truncate(testImageSize); err != nil {
		t.Fatal(err)
	}
	return img
}

func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package: %s)", tool, map[string]string{
				"bmaptool": "bmap-tools", "xz": "xz-utils", "zstd": "zstd", "bzip2": "bzip2",
				"gzip": "gzip", "mkfs.ext4": "e2fsprogs", "losetup": "mount"}[tool])
		}
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// compress writes path compressed as format next to it and returns its
// path; an existing compressed file is reused.
func compress(t testing.TB, path, format string) string {
	t.Helper()
	ext := map[string]string{"gzip": ".gz", "xz": ".xz", "zstd": ".zst", "bzip2": ".bz2"}[format]
	if fi, err := os.Stat(path + ext); ext != "" && err == nil && fi.Size() > 0 {
		return path + ext
	}
	switch format {
	case "raw":
		return path
	case "gzip":
		need(t, "gzip")
		run(t, "gzip", "-k", "-f", path)
		return path + ".gz"
	case "xz":
		need(t, "xz")
		// Small blocks, so the test image has several.
		run(t, "xz", "-k", "-f", "-T2", "--block-size=1MiB", path)
		return path + ".xz"
	case "zstd":
		need(t, "zstd")
		run(t, "zstd", "-q", "-f", "-T0", path, "-o", path+".zst")
		return path + ".zst"
	case "bzip2":
		need(t, "bzip2")
		run(t, "bzip2", "-k", "-f", path)
		return path + ".bz2"
	}
	t.Fatalf("unknown format %s", format)
	return ""
}

var formats = []string{"raw", "gzip", "xz", "zstd", "bzip2"}

// makeBmap runs bmaptool create.
func makeBmap(t testing.TB, image, out string) {
	t.Helper()
	need(t, "bmaptool")
	run(t, "bmaptool", "create", image, "-o", out)
}

// fixBmapSum recomputes the bmap's own checksum after an edit.
func fixBmapSum(t testing.TB, text, kind, tag string) string {
	t.Helper()
	re := regexp.MustCompile(`<` + tag + `>\s*([0-9a-fA-F]+)\s*</` + tag + `>`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return text
	}
	zeroed := strings.Replace(text, m[1], strings.Repeat("0", len(m[1])), 1)
	h, err := newHash(kind)
	if err != nil {
		t.Fatal(err)
	}
	h.Write([]byte(zeroed))
	return strings.Replace(zeroed, strings.Repeat("0", len(m[1])), hex.EncodeToString(h.Sum(nil)), 1)
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// garbageFile creates a file of n bytes of 0xA5, for a target that must be
// fully overwritten.
func garbageFile(t testing.TB, path string, n int) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xa5}, n), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loopDevice attaches a loop device to a new file of size bytes filled with
// 0xA5 and returns its path; it is detached in cleanup.
func loopDevice(t testing.TB, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("loop devices unavailable: no /dev/loop-control")
	}
	need(t, "losetup")
	back := filepath.Join(t.TempDir(), "loop.img")
	garbageFile(t, back, size)
	out, err := exec.Command("losetup", "-f", "--show", back).CombinedOutput()
	if err != nil {
		t.Skipf("loop devices unavailable: losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func readN(t testing.TB, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// firstDiff describes where a and b differ.
func firstDiff(a, b []byte) string {
	if len(a) != len(b) {
		return "lengths " + strconv.Itoa(len(a)) + " and " + strconv.Itoa(len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return "first difference at byte " + strconv.Itoa(i)
		}
	}
	return "equal"
}

func write(t testing.TB, target string, opts Options) Result {
	t.Helper()
	res, err := Write(context.Background(), target, opts)
	if err != nil {
		t.Fatalf("Write(%s -> %s): %v", opts.Image, target, err)
	}
	return res
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hexs(b []byte) string { return hex.EncodeToString(b) }
