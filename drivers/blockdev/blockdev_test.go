package blockdev

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/schematest"
)

func TestSchema(t *testing.T) {
	schematest.Check(t, Name,
		[]string{
			"path: /dev/disk/by-id/usb-Generic_SD_0001-0:0\n",
			"path: /dev/disk/by-id/x\nhost-command: [usbsdmux, /dev/sg1, host]\nboard-command: usbsdmux /dev/sg1 dut\nwait: 10s\ntimeout: 5s\n",
		},
		[]string{
			"{}\n",
			"path: disk.img\n",
			"path: /dev/x\nwait: 10\n",
			"path: /dev/x\nextra: 1\n",
		})
}

func TestValidate(t *testing.T) {
	for doc, want := range map[string]string{
		"path: sdb\n":               "must be absolute",
		"path: /dev/disk/../sdb\n":  "not clean",
		"host-command: echo\n":      "path: required",
		"path: /dev/x\nwait: 1ns\n": "too short",
	} {
		dev, err := schematest.Decode(t, Name, doc)
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if err := dev.(*Device).Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want %q", doc, err, want)
		}
	}
}

func newDevice(t *testing.T, doc, dir string) *Device {
	t.Helper()
	dev, err := schematest.Decode(t, Name, doc)
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*Device)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := d.Open(context.Background(), drivers.Env{Board: "b1", BaseDir: dir, Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestMuxCommandsAndPolling uses commands that act like an SD mux: the host
// link appears a little after the switch command returned, as udev makes it
// (here the test plays udev: a command leaves no process behind).
func TestMuxCommandsAndPolling(t *testing.T) {
	dir := t.TempDir()
	medium := filepath.Join(dir, "medium.img")
	if err := os.WriteFile(medium, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "by-id", "usb-Mux_SD-0:0")
	os.Mkdir(filepath.Dir(link), 0o755)
	d := newDevice(t, `
path: `+link+`
host-command: "touch switched; echo switched to host"
board-command: ["/bin/sh", "-c", "rm -f by-id/usb-Mux_SD-0:0"]
wait: 20s
`, dir)
	// udev: the link appears 300ms after the switch
	udev := make(chan error, 1)
	go func() {
		for i := 0; i < 2000; i++ {
			if _, err := os.Stat(filepath.Join(dir, "switched")); err == nil {
				time.Sleep(300 * time.Millisecond)
				udev <- os.Symlink("../medium.img", link)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		udev <- errors.New("the switch command never ran")
	}()
	ctx := context.Background()
	got, err := d.AttachHost(ctx)
	if uerr := <-udev; uerr != nil {
		t.Fatal(uerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got != link {
		t.Fatalf("AttachHost = %q, want %q", got, link)
	}
	f, err := os.OpenFile(got, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("IMAGE"), 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := d.AttachBoard(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("board-command did not run: link still there (%v)", err)
	}
	b, _ := os.ReadFile(medium)
	if !bytes.Equal(b[4096:4101], []byte("IMAGE")) {
		t.Errorf("data did not reach the medium")
	}
}

func TestPathNeverAppears(t *testing.T) {
	dir := t.TempDir()
	d := newDevice(t, "path: "+filepath.Join(dir, "absent")+"\nwait: 200ms\n", dir)
	_, err := d.AttachHost(context.Background())
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "did not become ready within 200ms") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("AttachHost: %v", err)
	}
}

func TestHostCommandFails(t *testing.T) {
	dir := t.TempDir()
	d := newDevice(t, "path: /dev/null\nhost-command: \"echo 'mux not found' >&2; exit 2\"\n", dir)
	_, err := d.AttachHost(context.Background())
	if err == nil || !strings.Contains(err.Error(), "status 2") || !strings.Contains(err.Error(), "mux not found") {
		t.Fatalf("AttachHost: %v", err)
	}
}

// TestLoopDevice attaches a real block device (a loop device over a file).
func TestLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "sd.img")
	if err := os.WriteFile(img, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skipf("losetup unavailable: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	d := newDevice(t, "path: "+loop+"\n", dir)
	got, err := d.AttachHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(got, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := d.AttachBoard(context.Background()); err != nil {
		t.Fatal(err)
	}
	exec.Command("losetup", "-d", loop).Run()
	b, _ := os.ReadFile(img)
	if b[0] != 0xA5 || b[4095] != 0xA5 {
		t.Errorf("write through %s did not reach the image", loop)
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	byID := filepath.Join(dir, "by-id")
	sys := filepath.Join(dir, "sys")
	os.MkdirAll(byID, 0o755)
	os.MkdirAll(filepath.Join(sys, "sdb"), 0o755)
	os.WriteFile(filepath.Join(dir, "sdb"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "sdb1"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "nvme0n1"), nil, 0o644)
	os.WriteFile(filepath.Join(sys, "sdb", "size"), []byte("62333952\n"), 0o644)
	os.Symlink("../sdb", filepath.Join(byID, "usb-Generic_SD_Reader_0001-0:0"))
	os.Symlink("../sdb1", filepath.Join(byID, "usb-Generic_SD_Reader_0001-0:0-part1"))
	os.Symlink("../nvme0n1", filepath.Join(byID, "nvme-Samsung_SSD_970"))
	os.Symlink("../gone", filepath.Join(byID, "usb-Dangling-0:0"))

	found, err := discover(byID, sys)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("found %+v, want the one whole USB disk", found)
	}
	f := found[0]
	if f.Driver != Name || f.ID != "usb-Generic_SD_Reader_0001-0:0" || f.Config["path"] != filepath.Join(byID, f.ID) {
		t.Errorf("found %+v", f)
	}
	if !strings.Contains(f.Description, "sdb") || !strings.Contains(f.Description, "31.9 GB") {
		t.Errorf("description %q", f.Description)
	}
	if found, err := discover(filepath.Join(dir, "none"), sys); err != nil || len(found) != 0 {
		t.Errorf("missing by-id dir: %v, %v", found, err)
	}
}
