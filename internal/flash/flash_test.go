package flash

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Every format, regular-file target holding garbage, no bmap: the target
// ends up byte-for-byte the image, and sparse.
func TestFormatsToFile(t *testing.T) {
	dir := t.TempDir()
	want := makeImage(t, filepath.Join(dir, "disk.img"))
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			img := compress(t, filepath.Join(dir, "disk.img"), format)
			target := filepath.Join(t.TempDir(), "target.img")
			garbageFile(t, target, 12*mib)
			res := write(t, target, Options{Image: img, NoBmap: true, Verify: true})
			got, err := os.ReadFile(target)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("target differs from the image: %s", firstDiff(got, want))
			}
			if res.Format != format || res.ImageSize != testImageSize || !res.Verified || res.BlockDevice {
				t.Errorf("result %+v", res)
			}
			if res.BytesWritten >= testImageSize/2 {
				t.Errorf("wrote %d bytes: zero runs were not left as holes", res.BytesWritten)
			}
			var st syscall.Stat_t
			syscall.Stat(target, &st)
			if st.Blocks*512 > 4*mib {
				t.Errorf("target uses %d bytes on disk, want it sparse", st.Blocks*512)
			}
		})
	}
}

// Every format with a bmap made by bmaptool, found next to the image.
func TestFormatsToFileWithBmap(t *testing.T) {
	need(t, "bmaptool")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	makeBmap(t, raw, raw+".bmap")
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			img := compress(t, raw, format)
			target := filepath.Join(t.TempDir(), "target.img")
			garbageFile(t, target, 12*mib)
			res := write(t, target, Options{Image: img, Verify: true})
			if res.UsedBmap != raw+".bmap" {
				t.Fatalf("bmap used: %q, want %q", res.UsedBmap, raw+".bmap")
			}
			got, err := os.ReadFile(target)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("target differs from the image: %s", firstDiff(got, want))
			}
			if !res.Verified || res.Mapped >= res.ImageSize || res.BytesWritten > res.Mapped {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// Block device targets (a loop device): without a bmap every byte is
// written; with one, the mapped ranges are and nothing else is touched.
func TestFormatsToBlockDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("every format onto a loop-like device: skipped under -short")
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	dev := loopDevice(t, 12*mib)
	for _, withBmap := range []bool{false, true} {
		for _, format := range formats {
			name := format
			if withBmap {
				name += "+bmap"
			}
			t.Run(name, func(t *testing.T) {
				img := compress(t, raw, format)
				opts := Options{Image: img, NoBmap: true, Verify: true}
				var bm *Bmap
				if withBmap {
					makeBmap(t, raw, filepath.Join(dir, "disk.bmap"))
					opts = Options{Image: img, Bmap: filepath.Join(dir, "disk.bmap"), Verify: true}
					var err error
					if bm, err = ReadBmap(opts.Bmap); err != nil {
						t.Fatal(err)
					}
				}
				// Garbage first, so nothing passes by luck.
				f, err := os.OpenFile(dev, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write(bytes.Repeat([]byte{0xa5}, 12*mib))
				f.Close()

				res := write(t, dev, opts)
				if !res.BlockDevice || !res.Verified {
					t.Errorf("result %+v", res)
				}
				got := readN(t, dev, 12*mib)
				if bm == nil {
					if !bytes.Equal(got[:testImageSize], want) {
						t.Fatalf("device differs from the image: %s", firstDiff(got[:testImageSize], want))
					}
				} else {
					for i := range want {
						if bm.mapped(int64(i)) && got[i] != want[i] {
							t.Fatalf("mapped byte %d is %#x, want %#x", i, got[i], want[i])
						}
						if !bm.mapped(int64(i)) && got[i] != 0xa5 {
							t.Fatalf("unmapped byte %d was written", i)
						}
					}
				}
				if !bytes.Equal(got[testImageSize:], bytes.Repeat([]byte{0xa5}, 12*mib-testImageSize)) {
					t.Fatal("bytes past the image were written")
				}
			})
		}
	}
}

func (b *Bmap) mapped(off int64) bool {
	i := b.find(off)
	return i < len(b.Ranges) && b.Ranges[i].Off <= off
}

// bmap formats: 2.0 with sha256 (bmaptool's own), md5 and sha1 checksum
// types, 1.3 (sha1 attributes) and 1.2 (no checksums).
func TestBmapVersions(t *testing.T) {
	need(t, "bmaptool")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	makeBmap(t, raw, raw+".bmap")
	orig, _ := os.ReadFile(raw + ".bmap")
	rangeRe := regexp.MustCompile(`<Range chksum="[0-9a-f]+">\s*([0-9]+)(?:-([0-9]+))?\s*</Range>`)
	sumOf := func(kind string, first, last string) string {
		h, _ := newHash(kind)
		a, b := atoi(t, first), atoi(t, last)
		end := min((b+1)*4096, testImageSize)
		h.Write(want[a*4096 : end])
		return hexs(h.Sum(nil))
	}
	variant := func(version, kind, attr, fileTag string) string {
		s := string(orig)
		s = strings.Replace(s, `<bmap version="2.0">`, `<bmap version="`+version+`">`, 1)
		s = rangeRe.ReplaceAllStringFunc(s, func(m string) string {
			g := rangeRe.FindStringSubmatch(m)
			last := g[2]
			if last == "" {
				last = g[1]
			}
			if attr == "" {
				return "<Range> " + g[1] + "-" + last + " </Range>"
			}
			return `<Range ` + attr + `="` + sumOf(kind, g[1], last) + `"> ` + g[1] + "-" + last + " </Range>"
		})
		s = regexp.MustCompile(`<ChecksumType>\s*sha256\s*</ChecksumType>`).ReplaceAllString(s, "<ChecksumType> "+kind+" </ChecksumType>")
		fileSum := regexp.MustCompile(`<BmapFileChecksum>\s*[0-9a-f]+\s*</BmapFileChecksum>`)
		switch fileTag {
		case "":
			s = fileSum.ReplaceAllString(s, "")
			s = regexp.MustCompile(`<ChecksumType>[^<]*</ChecksumType>`).ReplaceAllString(s, "")
		case "BmapFileSHA1":
			s = fileSum.ReplaceAllString(s, "<BmapFileSHA1> "+strings.Repeat("0", 40)+" </BmapFileSHA1>")
			s = regexp.MustCompile(`<ChecksumType>[^<]*</ChecksumType>`).ReplaceAllString(s, "")
		default:
			h, _ := newHash(kind)
			s = fileSum.ReplaceAllString(s, "<BmapFileChecksum> "+strings.Repeat("0", 2*h.Size())+" </BmapFileChecksum>")
		}
		if fileTag != "" {
			s = fixBmapSum(t, s, kind, fileTag)
		}
		return s
	}
	cases := []struct{ name, text, checksum string }{
		{"2.0-sha256", string(orig), "sha256"},
		{"2.0-md5", variant("2.0", "md5", "chksum", "BmapFileChecksum"), "md5"},
		{"2.0-sha1", variant("2.0", "sha1", "chksum", "BmapFileChecksum"), "sha1"},
		{"1.4-sha256", variant("1.4", "sha256", "chksum", "BmapFileChecksum"), "sha256"},
		{"1.3-sha1", variant("1.3", "sha1", "sha1", "BmapFileSHA1"), "sha1"},
		{"1.2-none", variant("1.2", "", "", ""), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bpath := filepath.Join(t.TempDir(), "x.bmap")
			os.WriteFile(bpath, []byte(c.text), 0o644)
			bm, err := ReadBmap(bpath)
			if err != nil {
				t.Fatalf("ReadBmap: %v\n%s", err, c.text)
			}
			if bm.Checksum != c.checksum || bm.ImageSize != testImageSize || len(bm.Ranges) == 0 {
				t.Fatalf("parsed %+v", bm)
			}
			for _, format := range []string{"raw", "xz", "zstd"} {
				img := compress(t, raw, format)
				target := filepath.Join(t.TempDir(), "t.img")
				write(t, target, Options{Image: img, Bmap: bpath, Verify: true})
				if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
					t.Fatalf("%s: target differs: %s", format, firstDiff(got, want))
				}
			}
		})
	}
}

// A range checksum that does not match the image fails the write, for the
// sequential, parallel-xz and raw paths, naming the blocks.
func TestBmapWrongChecksum(t *testing.T) {
	need(t, "bmaptool")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	makeBmap(t, raw, raw+".bmap")
	text, _ := os.ReadFile(raw + ".bmap")
	re := regexp.MustCompile(`chksum="([0-9a-f]+)"`)
	all := re.FindAllStringSubmatch(string(text), -1)
	if len(all) < 3 {
		t.Fatalf("bmap has %d ranges", len(all))
	}
	for _, which := range []int{0, 2, len(all) - 1} {
		old := all[which][1]
		bad := strings.Repeat("0", len(old))
		s := fixBmapSum(t, strings.Replace(string(text), old, bad, 1), "sha256", "BmapFileChecksum")
		bpath := filepath.Join(dir, "bad.bmap")
		os.WriteFile(bpath, []byte(s), 0o644)
		for _, format := range formats {
			img := compress(t, raw, format)
			_, err := Write(context.Background(), filepath.Join(t.TempDir(), "t.img"), Options{Image: img, Bmap: bpath})
			if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "blocks") {
				t.Errorf("range %d, %s: got %v, want a checksum mismatch naming the blocks and %s", which, format, err, bad)
			}
		}
	}
}

// A bmap edited without updating its own checksum, or not XML, or missing,
// is refused before anything is written.
func TestBadBmap(t *testing.T) {
	need(t, "bmaptool")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	makeBmap(t, raw, raw+".bmap")
	text, _ := os.ReadFile(raw + ".bmap")
	cases := map[string]string{
		"edited":    strings.Replace(string(text), "<BlockSize> 4096 </BlockSize>", "<BlockSize> 4096 </BlockSize><!-- x -->", 1),
		"not-xml":   "this is not a bmap",
		"truncated": string(text[:len(text)/2]),
		"version-3": strings.Replace(string(text), `version="2.0"`, `version="3.0"`, 1),
		"bad-range": fixBmapSum(t, regexp.MustCompile(`> [0-9]+-[0-9]+ </Range>`).ReplaceAllString(string(text), "> 9-2 </Range>"), "sha256", "BmapFileChecksum"),
		"past-end":  fixBmapSum(t, regexp.MustCompile(`> [0-9]+-[0-9]+ </Range>`).ReplaceAllString(string(text), "> 9-99999 </Range>"), "sha256", "BmapFileChecksum"),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			bpath := filepath.Join(t.TempDir(), "x.bmap")
			os.WriteFile(bpath, []byte(s), 0o644)
			target := filepath.Join(t.TempDir(), "t.img")
			_, err := Write(context.Background(), target, Options{Image: raw, Bmap: bpath})
			if !errors.Is(err, ErrBmap) {
				t.Fatalf("got %v, want ErrBmap", err)
			}
			if _, err := os.Stat(target); err == nil {
				t.Error("target was created for a bad bmap")
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, err := Write(context.Background(), filepath.Join(t.TempDir(), "t"), Options{Image: raw, Bmap: filepath.Join(dir, "nope.bmap")})
		if !errors.Is(err, ErrBmap) || !strings.Contains(err.Error(), "nope.bmap") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("other-image", func(t *testing.T) {
		other := filepath.Join(dir, "other.img")
		os.WriteFile(other, make([]byte, 4096), 0o644)
		_, err := Write(context.Background(), filepath.Join(t.TempDir(), "t"), Options{Image: other, Bmap: raw + ".bmap"})
		if !errors.Is(err, ErrBmap) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestFindBmap(t *testing.T) {
	dir := t.TempDir()
	touch := func(n string) string {
		p := filepath.Join(dir, n)
		os.WriteFile(p, nil, 0o644)
		return p
	}
	img := touch("foo.wic.zst")
	if got := findBmap(img); got != "" {
		t.Fatalf("found %q with no bmap around", got)
	}
	b1 := touch("foo.bmap")
	if got := findBmap(img); got != b1 {
		t.Fatalf("got %q, want %q", got, b1)
	}
	b2 := touch("foo.wic.bmap")
	if got := findBmap(img); got != b2 {
		t.Fatalf("got %q, want %q", got, b2)
	}
	b3 := touch("foo.wic.zst.bmap")
	if got := findBmap(img); got != b3 {
		t.Fatalf("got %q, want %q", got, b3)
	}
	// NoBmap wins over a bmap found next to the image.
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	os.WriteFile(raw+".bmap", []byte("garbage"), 0o644)
	res := write(t, filepath.Join(dir, "t.img"), Options{Image: raw, NoBmap: true})
	if res.UsedBmap != "" {
		t.Fatalf("used %q", res.UsedBmap)
	}
}

func TestSHA256(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	for _, format := range []string{"raw", "xz", "zstd"} {
		img := compress(t, raw, format)
		sum := sha256File(t, img)
		res := write(t, filepath.Join(t.TempDir(), "t"), Options{Image: img, SHA256: strings.ToUpper(sum), NoBmap: true})
		if res.SHA256 != sum {
			t.Errorf("%s: Result.SHA256 %q, want %q", format, res.SHA256, sum)
		}
		wrong := strings.Repeat("ab", 32)
		_, err := Write(context.Background(), filepath.Join(t.TempDir(), "t"), Options{Image: img, SHA256: wrong, NoBmap: true})
		if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), sum) {
			t.Errorf("%s: got %v, want a mismatch naming expected %s and got %s", format, err, wrong, sum)
		}
	}
	_, err := Write(context.Background(), filepath.Join(dir, "t"), Options{Image: raw, SHA256: "xyz"})
	if err == nil || !strings.Contains(err.Error(), "64 hex") {
		t.Errorf("bad sha256 accepted: %v", err)
	}
}

// Truncated compressed images fail with ErrImage, with and without bmap.
func TestTruncated(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	for _, format := range []string{"gzip", "xz", "zstd", "bzip2"} {
		img := compress(t, raw, format)
		data, _ := os.ReadFile(img)
		for _, frac := range []int{2, 10} {
			cut := filepath.Join(dir, "cut")
			os.WriteFile(cut, data[:len(data)*(frac-1)/frac], 0o644)
			_, err := Write(context.Background(), filepath.Join(t.TempDir(), "t"), Options{Image: cut, NoBmap: true})
			if !errors.Is(err, ErrImage) {
				t.Errorf("%s cut to %d/%d: got %v, want ErrImage", format, frac-1, frac, err)
			} else {
				t.Logf("%s: %v", format, err)
			}
		}
	}
	// Corruption in the middle of an xz block (not the index).
	img := compress(t, raw, "xz")
	data, _ := os.ReadFile(img)
	bad := bytes.Clone(data)
	for i := 200; i < 260; i++ {
		bad[i] ^= 0x55
	}
	p := filepath.Join(dir, "bad.xz")
	os.WriteFile(p, bad, 0o644)
	if _, err := Write(context.Background(), filepath.Join(t.TempDir(), "t"), Options{Image: p, NoBmap: true}); !errors.Is(err, ErrImage) {
		t.Errorf("corrupt xz: got %v, want ErrImage", err)
	}
}

// Concatenated xz streams with stream padding decode as one image.
func TestXZMultiStream(t *testing.T) {
	need(t, "xz")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	a := want[:3*mib+12345]
	b := want[3*mib+12345:]
	os.WriteFile(filepath.Join(dir, "a"), a, 0o644)
	os.WriteFile(filepath.Join(dir, "b"), b, 0o644)
	run(t, "xz", "-T2", "--block-size=1MiB", filepath.Join(dir, "a"))
	run(t, "xz", "-T2", "--block-size=1MiB", filepath.Join(dir, "b"))
	xa, _ := os.ReadFile(filepath.Join(dir, "a.xz"))
	xb, _ := os.ReadFile(filepath.Join(dir, "b.xz"))
	img := filepath.Join(dir, "ab.xz")
	os.WriteFile(img, append(append(append(xa, make([]byte, 8)...), xb...), make([]byte, 4)...), 0o644)
	target := filepath.Join(dir, "t")
	res := write(t, target, Options{Image: img, NoBmap: true})
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
		t.Fatalf("differs: %s", firstDiff(got, want))
	}
	if !strings.Contains(res.Decoder, "blocks") {
		t.Errorf("decoder %q: the parallel path was not used", res.Decoder)
	}
}

// An image coming through a pipe (no seeking) works for every format:
// with its checksum (we read the pipe and hash it), without (a decoder
// program may read the pipe itself, its first bytes only peeked at), and
// when the first bytes come in a short write of their own (read, then
// given back to the decoder).
func TestPipeImage(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	for _, format := range formats {
		img := compress(t, raw, format)
		data, _ := os.ReadFile(img)
		for _, c := range []struct {
			name  string
			sum   string
			split int // bytes written alone first
		}{
			{"sha256", sha256File(t, img), 0},
			{"plain", "", 0},
			{"short-start", "", 3},
		} {
			fifo := filepath.Join(dir, "fifo-"+format+"-"+c.name)
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			go func() {
				f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					return
				}
				defer f.Close()
				if c.split > 0 {
					f.Write(data[:c.split])
					time.Sleep(50 * time.Millisecond)
				}
				f.Write(data[c.split:])
			}()
			target := filepath.Join(dir, "t-"+format+"-"+c.name)
			res := write(t, target, Options{Image: fifo, SHA256: c.sum})
			if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
				t.Fatalf("%s, %s: differs: %s", format, c.name, firstDiff(got, want))
			}
			if res.Format != format {
				t.Errorf("%s: format %q, want %q", c.name, res.Format, format)
			}
			if c.sum != "" && res.SHA256 != c.sum {
				t.Errorf("%s: sha256 %q, want %q", c.name, res.SHA256, c.sum)
			}
			if direct := strings.Contains(res.Decoder, "reads the pipe"); direct != (c.name == "plain" && tool(format) != "" && (format == "zstd" || format == "xz")) {
				t.Errorf("%s, %s: decoder %q", format, c.name, res.Decoder)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	cases := map[string]string{
		dir:         "directory",
		"/dev/null": "character device",
		raw:         "the image itself",
	}
	for target, want := range cases {
		_, err := Write(context.Background(), target, Options{Image: raw})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("target %s: got %v, want a refusal mentioning %q", target, err, want)
		}
	}
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	if _, err := Write(context.Background(), fifo, Options{Image: raw}); !errors.Is(err, ErrRefused) {
		t.Errorf("fifo target: %v", err)
	}
	if _, err := Write(context.Background(), filepath.Join(dir, "no", "such", "dir"), Options{Image: raw}); !errors.Is(err, ErrRefused) {
		t.Errorf("target in a missing directory: %v", err)
	}
	if _, err := Write(context.Background(), filepath.Join(dir, "x"), Options{Image: filepath.Join(dir, "missing.img")}); !errors.Is(err, ErrImage) {
		t.Errorf("missing image: %v", err)
	}
}

// The disk of the running system's root file system is refused (checked
// without ever calling Write on it).
func TestRefuseRootDisk(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	if _, err := sysBlock(st.Dev); err != nil {
		t.Skipf("root file system is not on a block device here (dev %#x)", st.Dev)
	}
	// Find the device node of the root's disk.
	disk, err := diskDir(st.Dev)
	if err != nil {
		t.Fatal(err)
	}
	devNode := "/dev/" + filepath.Base(disk)
	if _, err := os.Stat(devNode); err != nil {
		t.Skipf("no device node %s", devNode)
	}
	dev, _ := readDev(disk)
	err = checkBlockDevice(devNode, dev)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "root") {
		t.Fatalf("checkBlockDevice(%s): %v, want a refusal naming the root file system", devNode, err)
	}
}

// A loop device with a mounted file system is refused and left untouched.
func TestRefuseMounted(t *testing.T) {
	need(t, "mkfs.ext4")
	dev := loopDevice(t, 16*mib)
	run(t, "mkfs.ext4", "-q", "-F", dev)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	before := readN(t, dev, 4*mib)
	raw := filepath.Join(t.TempDir(), "disk.img")
	makeImage(t, raw)
	_, err := Write(context.Background(), dev, Options{Image: raw})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "mounted") || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("got %v, want a refusal saying it is mounted at %s", err, mnt)
	}
	if after := readN(t, dev, 4*mib); !bytes.Equal(before, after) {
		t.Fatal("the mounted device was written")
	}
}

// A device smaller than the image is refused up front.
func TestBlockDeviceTooSmall(t *testing.T) {
	dev := loopDevice(t, 4*mib)
	raw := filepath.Join(t.TempDir(), "disk.img")
	makeImage(t, raw)
	_, err := Write(context.Background(), dev, Options{Image: raw})
	if !errors.Is(err, ErrTargetFull) {
		t.Fatalf("got %v, want ErrTargetFull", err)
	}
	// Compressed, size unknown until the end: the write past the end fails.
	zst := compress(t, raw, "zstd")
	_, err = Write(context.Background(), dev, Options{Image: zst, NoBmap: true})
	if !errors.Is(err, ErrTargetFull) {
		t.Fatalf("zstd: got %v, want ErrTargetFull", err)
	}
}

// tmpfsDir mounts a small tmpfs for the test.
func tmpfsDir(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// A file system that fills up mid-write gives ErrTargetFull.
func TestTargetFull(t *testing.T) {
	small := tmpfsDir(t, "1m")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	for _, format := range []string{"raw", "zstd", "xz", "gzip"} {
		img := compress(t, raw, format)
		target := filepath.Join(small, "t-"+format)
		_, err := Write(context.Background(), target, Options{Image: img, NoBmap: true})
		if !errors.Is(err, ErrTargetFull) {
			t.Errorf("%s: got %v, want ErrTargetFull", format, err)
		}
		os.Remove(target)
	}
	// With a bmap the free space is checked before writing.
	need(t, "bmaptool")
	makeBmap(t, raw, raw+".bmap")
	_, err := Write(context.Background(), filepath.Join(small, "t"), Options{Image: raw})
	if !errors.Is(err, ErrTargetFull) || !strings.Contains(err.Error(), "free") {
		t.Errorf("bmap: got %v, want ErrTargetFull about free space", err)
	}
}

// A loop device whose backing file system fills up: the error surfaces
// from the writes or the final sync.
func TestBlockDeviceBackingFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("loop devices unavailable")
	}
	small := tmpfsDir(t, "2m")
	back := filepath.Join(small, "back")
	f, _ := os.Create(back)
	f.Truncate(16 * mib) // sparse: the tmpfs holds only 2 MiB of it
	f.Close()
	out, err := exec.Command("losetup", "-f", "--show", back).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	raw := filepath.Join(t.TempDir(), "rand.img")
	data := make([]byte, 6*mib)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	os.WriteFile(raw, data, 0o644)
	_, err = Write(context.Background(), dev, Options{Image: raw})
	if err == nil || !(errors.Is(err, ErrTarget) || errors.Is(err, ErrTargetFull)) {
		t.Fatalf("got %v, want a target error", err)
	}
	t.Logf("error: %v", err)
}

// feedFIFO makes a named pipe image and returns it with a writer for it.
func feedFIFO(t *testing.T) (string, chan []byte) {
	fifo := filepath.Join(t.TempDir(), "img")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ch := make(chan []byte)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		for b := range ch {
			if _, err := f.Write(b); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		defer func() { recover() }()
		close(ch)
	})
	return fifo, ch
}

func waitSize(t *testing.T, path string, n int64) {
	t.Helper()
	for i := 0; i < 3000; i++ {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never reached %d bytes", path, n)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(12345)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// Cancelling the context mid-write makes Write return the context's error.
func TestCancel(t *testing.T) {
	fifo, ch := feedFIFO(t)
	target := filepath.Join(t.TempDir(), "t")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := Write(ctx, target, Options{Image: fifo})
		errc <- err
	}()
	ch <- randomBytes(9 * mib) // two chunks and a bit; then the pipe stays open
	// Two chunks written: the reader now waits on the empty pipe, and the
	// cancel must interrupt that read.
	waitSize(t, target, 8*mib)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	// Cancelled before starting.
	if _, err := Write(ctx, target, Options{Image: fifo}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// Cancelling during a parallel xz decode returns the context's error.
func TestCancelXZ(t *testing.T) {
	need(t, "xz")
	dir := t.TempDir()
	raw := filepath.Join(dir, "big.img")
	os.WriteFile(raw, make([]byte, 64*mib), 0o644)
	run(t, "xz", "-0", "-T2", "--block-size=4MiB", raw)
	defer func() { afterXZBlock = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	afterXZBlock = cancel // cancel once the first block is written
	_, err := Write(ctx, filepath.Join(dir, "t"), Options{Image: raw + ".xz", NoBmap: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	// No xz process is left behind.
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(os.Getpid()), "-x", "xz").Output()
	if len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("xz processes left running: %s", out)
	}
}

// A target file removed while it is written is reported.
func TestTargetDisappears(t *testing.T) {
	fifo, ch := feedFIFO(t)
	target := filepath.Join(t.TempDir(), "t")
	errc := make(chan error, 1)
	go func() {
		_, err := Write(context.Background(), target, Options{Image: fifo})
		errc <- err
	}()
	ch <- randomBytes(9 * mib)
	waitSize(t, target, 4*mib)
	os.Remove(target)
	ch <- randomBytes(1 * mib)
	close(ch)
	if err := <-errc; !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "disappeared") {
		t.Fatalf("got %v, want an error saying the target disappeared", err)
	}
}

// Progress to a non-terminal ends with one summary line and does not flood.
func TestProgressPlain(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	var buf bytes.Buffer
	write(t, filepath.Join(dir, "t"), Options{Image: raw, Progress: &buf})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) > 5 || !strings.HasPrefix(lines[len(lines)-1], "flash: wrote ") {
		t.Fatalf("progress output:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "\r") {
		t.Fatal("terminal control characters sent to a non-terminal")
	}
}

// A decoder writing faster than we consume is paused and resumed; the
// result is still exact (memfd limits made tiny for the test).
func TestDecoderBackpressure(t *testing.T) {
	need(t, "zstd")
	hi, lo := memHigh, memLow
	memHigh, memLow = 64<<10, 16<<10
	defer func() { memHigh, memLow = hi, lo }()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	img := compress(t, raw, "zstd")
	for _, withBmap := range []bool{false, true} {
		opts := Options{Image: img, NoBmap: true}
		if withBmap {
			makeBmap(t, raw, raw+".bmap")
			opts = Options{Image: img, Bmap: raw + ".bmap"}
		}
		target := filepath.Join(dir, "t")
		res := write(t, target, opts)
		if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
			t.Fatalf("bmap %v: differs: %s", withBmap, firstDiff(got, want))
		}
		if !strings.Contains(res.Decoder, "memfd") {
			t.Errorf("decoder %q", res.Decoder)
		}
	}
}

// xz files decode in process block by block, and (with filters the
// in-process decoder does not know, like BCJ) through the xz program as a
// stream; all give the image, with and without bmap, with every check type.
func TestXZPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("every xz path on a large image: skipped under -short")
	}
	need(t, "xz", "bmaptool")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	makeBmap(t, raw, raw+".bmap")
	variants := map[string][]string{
		"crc64":  {"-T2", "--block-size=1MiB"},
		"crc32":  {"-T2", "--block-size=1MiB", "--check=crc32"},
		"sha256": {"-T2", "--block-size=1MiB", "--check=sha256"},
		"none":   {"-T2", "--block-size=1MiB", "--check=none"},
		"x86":    {"--x86", "--lzma2=preset=6", "--block-size=2MiB"},
		"single": {"-T1", "-0"},
	}
	for name, args := range variants {
		img := filepath.Join(dir, name+".xz")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command("xz", append(append([]string{"-c"}, args...), raw)...)
		cmd.Stdout, cmd.Stderr = f, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("xz %v: %v %s", args, err, stderr.String())
		}
		f.Close()
		for _, bmap := range []bool{false, true} {
			target := filepath.Join(dir, "t")
			opts := Options{Image: img, NoBmap: true, Verify: true}
			if bmap {
				opts = Options{Image: img, Bmap: raw + ".bmap", Verify: true}
			}
			res, err := Write(context.Background(), target, opts)
			if err != nil {
				t.Fatalf("%s bmap=%v: %v", name, bmap, err)
			}
			if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
				t.Fatalf("%s bmap=%v: differs: %s", name, bmap, firstDiff(got, want))
			}
			// BCJ (x86) goes to the xz program as a stream; LZMA2 to the
			// in-process decoder, block by block.
			if wantDec := map[bool]string{true: "stream", false: "in-process"}[name == "x86"]; !strings.Contains(res.Decoder, wantDec) {
				t.Errorf("%s: decoder %q, want %s", name, res.Decoder, wantDec)
			}
		}
	}
}

// Random damage to xz data is reported, never a panic, whichever decoder
// sees it.
func TestXZCorruptNoPanic(t *testing.T) {
	need(t, "xz")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	img := compress(t, raw, "xz")
	data, _ := os.ReadFile(img)
	rng := randomBytes(4096)
	for i := 0; i < 40; i++ {
		bad := bytes.Clone(data)
		// Damage inside the first block's data, keeping headers and index.
		at := 64 + int(rng[i])*int(rng[i+100])%max(1, len(data)/3)
		for k := 0; k < 1+i%5; k++ {
			bad[(at+k*97)%(len(data)-200)+32] ^= rng[i+k+200] | 1
		}
		p := filepath.Join(dir, "bad.xz")
		os.WriteFile(p, bad, 0o644)
		_, err := Write(context.Background(), filepath.Join(dir, "t"), Options{Image: p, NoBmap: true})
		if err == nil {
			t.Errorf("damage %d at %d: no error", i, at)
		} else if !errors.Is(err, ErrImage) {
			t.Errorf("damage %d: %v, want ErrImage", i, err)
		}
	}
}

// withoutTools makes the named programs look missing for the test.
func withoutTools(t *testing.T, names ...string) {
	toolMu.Lock()
	saved := map[string]string{}
	for _, n := range names {
		saved[n] = toolPaths[n]
		toolPaths[n] = ""
	}
	toolMu.Unlock()
	t.Cleanup(func() {
		toolMu.Lock()
		for n := range saved {
			delete(toolPaths, n)
		}
		toolMu.Unlock()
	})
}

// Without the zstd and xz programs the pure-Go decoders take over, from a
// file and from a pipe; an xz block with a BCJ filter then gets a clear
// error.
func TestWithoutDecoderPrograms(t *testing.T) {
	need(t, "zstd", "xz")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	want := makeImage(t, raw)
	zst := compress(t, raw, "zstd")
	xzf := compress(t, raw, "xz")
	bcj := filepath.Join(dir, "bcj.xz")
	f, _ := os.Create(bcj)
	cmd := exec.Command("xz", "-c", "--x86", "--lzma2", raw)
	cmd.Stdout = f
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	withoutTools(t, "zstd", "xz")
	for _, img := range []string{zst, xzf} {
		target := filepath.Join(dir, "t")
		res := write(t, target, Options{Image: img, NoBmap: true, Verify: true})
		if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
			t.Fatalf("%s: differs: %s", img, firstDiff(got, want))
		}
		t.Logf("%s: %s", filepath.Base(img), res.Decoder)
		data, _ := os.ReadFile(img)
		fifo := filepath.Join(dir, "fifo"+filepath.Ext(img))
		syscall.Mkfifo(fifo, 0o600)
		go func() {
			if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				f.Write(data)
				f.Close()
			}
		}()
		res = write(t, target, Options{Image: fifo})
		if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
			t.Fatalf("%s from a pipe: differs: %s", img, firstDiff(got, want))
		}
		t.Logf("%s from a pipe: %s", filepath.Base(img), res.Decoder)
	}
	_, err := Write(context.Background(), filepath.Join(dir, "t"), Options{Image: bcj})
	if !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), "xz-utils") {
		t.Fatalf("BCJ without xz: got %v", err)
	}
}

// Progress lines while writing (ticks made fast): no data races, no
// flood, and the last line is the summary.
func TestProgressTicks(t *testing.T) {
	saved := progressEvery
	progressEvery = time.Millisecond
	defer func() { progressEvery = saved }()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	makeImage(t, raw)
	for _, format := range []string{"raw", "zstd", "xz", "gzip"} {
		img := compress(t, raw, format)
		var buf safeBuffer
		write(t, filepath.Join(dir, "t"), Options{Image: img, NoBmap: true, Progress: &buf})
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if !strings.HasPrefix(lines[len(lines)-1], "flash: wrote ") {
			t.Fatalf("%s: progress output:\n%s", format, buf.String())
		}
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
