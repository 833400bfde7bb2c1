package serial

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/ptyutil"
	"github.com/jsplan/jsplan/drivers/internal/schematest"
)

func TestSchema(t *testing.T) {
	schematest.Check(t, Name,
		[]string{
			"port: usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0\n",
			"port: /dev/ttyS0\nbaud: 9600\ndata-bits: 7\nparity: even\nstop-bits: 2\nlazy-open: true\nreopen-timeout: 1m\n",
		},
		[]string{
			"{}\n",
			"port: x\nbaud: fast\n",
			"port: x\nparity: sometimes\n",
			"port: x\nstop-bits: 3\n",
			"port: x\ndata-bits: 9\n",
			"port: x\nreopen-timeout: 5\n",
			"port: x\nflow: rts\n",
		})
}

func TestValidate(t *testing.T) {
	for doc, want := range map[string]string{
		"baud: 9600\n":             "port: required",
		"port: dev/ttyUSB0\n":      "must be an absolute path",
		"port: x\nbaud: 10\n":      "not a baud rate",
		"port: x\nstop-bits: 3\n":  "stop-bits",
		"port: x\nparity: maybe\n": "parity",
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

// adapter is a simulated USB-UART adapter: a pty whose slave is reached
// through a by-id style symlink, like udev makes.
type adapter struct {
	t    *testing.T
	pair *ptyutil.Pair
	link string
}

func plugIn(t *testing.T, link string) *adapter {
	t.Helper()
	p, err := ptyutil.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p.Path, link); err != nil {
		p.Close()
		t.Fatal(err)
	}
	a := &adapter{t: t, pair: p, link: link}
	t.Cleanup(a.unplug)
	return a
}

// unplug removes the link and hangs up the port, as a USB unplug does.
func (a *adapter) unplug() {
	os.Remove(a.link)
	a.pair.Close()
}

// readN reads exactly n bytes from r or fails after a generous bound.
func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		ch <- res{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		return string(r.b)
	case <-time.After(20 * time.Second):
		t.Fatalf("no %d bytes within 20s", n)
	}
	return ""
}

func openConsole(t *testing.T, doc string) (*Device, io.ReadWriteCloser) {
	t.Helper()
	dev, err := schematest.Decode(t, Name, doc)
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*Device)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	d.Open(context.Background(), drivers.Env{Board: "b", Log: t.Logf})
	s, err := d.OpenConsole(context.Background())
	if err != nil {
		t.Fatalf("OpenConsole: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return d, s
}

func TestSurvivesReEnumeration(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "usb-FTDI_FT232R_A10K1ABC-if00-port0")
	a := plugIn(t, link)
	_, s := openConsole(t, "port: "+link+"\nbaud: 115200\n")

	a.pair.Master.Write([]byte("U-Boot 2024.01\r\n"))
	if got := readN(t, s, 16); got != "U-Boot 2024.01\r\n" {
		t.Errorf("read %q", got)
	}
	if _, err := s.Write([]byte("root\n")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, a.pair.Master, 5); got != "root\n" {
		t.Errorf("board got %q", got)
	}

	// Power cycle: the adapter vanishes while a read is waiting, then
	// comes back (on a new tty) under the same by-id name.
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, err := s.Read(b)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(b[:n])
	}()
	a.unplug()
	time.Sleep(100 * time.Millisecond) // let the reader see the hang-up
	b := plugIn(t, link)
	b.pair.Master.Write([]byte("Linux version 6.6"))
	select {
	case g := <-got:
		if g != "Linux version 6.6" {
			t.Errorf("after re-enumeration read %q", g)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("read did not resume after the port came back")
	}
	if _, err := s.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, b.pair.Master, 2); got != "ok" {
		t.Errorf("board got %q after re-enumeration", got)
	}
}

func TestWriteWhileAbsentTimesOut(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "usb-X-if00")
	a := plugIn(t, link)
	_, s := openConsole(t, "port: "+link+"\nreopen-timeout: 300ms\n")
	a.unplug()
	// The first write may still land in the dying port's buffer; keep
	// writing until the stream notices the port is gone.
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = s.Write([]byte("x"))
	}
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "did not come back within 300ms") {
		t.Fatalf("write to a vanished port: %v", err)
	}
}

func TestAbsentPort(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "usb-Other-if00"), nil, 0o644)
	dev, _ := schematest.Decode(t, Name, "port: usb-Missing-if00\n")
	d := dev.(*Device)
	d.byIDDir = dir
	_, err := d.OpenConsole(context.Background())
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "usb-Missing-if00 does not exist") || !strings.Contains(err.Error(), "usb-Other-if00") {
		t.Fatalf("OpenConsole of an absent port: %v", err)
	}
}

func TestLazyOpen(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "usb-Board_Powered-if00")
	_, s := openConsole(t, "port: "+link+"\nlazy-open: true\n")
	a := plugIn(t, link)
	a.pair.Master.Write([]byte("hello"))
	if got := readN(t, s, 5); got != "hello" {
		t.Errorf("read %q", got)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "usb-X-if00")
	plugIn(t, link)
	_, s := openConsole(t, "port: "+link+"\n")
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err != io.EOF {
			t.Errorf("Read after Close: %v, want io.EOF", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestCloseUnblocksReadWhileAbsent(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "usb-X-if00")
	_, s := openConsole(t, "port: "+link+"\nlazy-open: true\n")
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	s.Close()
	select {
	case err := <-done:
		if err != io.EOF {
			t.Errorf("Read after Close: %v, want io.EOF", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not unblock a Read waiting for the port")
	}
}

func TestBulkBothWays(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "usb-X-if00")
	a := plugIn(t, link)
	_, s := openConsole(t, "port: "+link+"\n")
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	go a.pair.Master.Write(data)
	if got := readN(t, s, len(data)); got != string(data) {
		t.Error("board-to-host bytes differ")
	}
	go s.Write(data)
	if got := readN(t, a.pair.Master, len(data)); got != string(data) {
		t.Error("host-to-board bytes differ")
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ttyUSB0"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "ttyACM0"), nil, 0o644)
	byID := filepath.Join(dir, "by-id")
	os.Mkdir(byID, 0o755)
	os.Symlink("../ttyUSB0", filepath.Join(byID, "usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0"))
	os.Symlink("../ttyACM0", filepath.Join(byID, "usb-Red_Hat_Inc._Jumpstarter_e6058905-if00"))
	found, err := discover(byID)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].ID != "usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0" ||
		found[0].Config["port"] != found[0].ID || !strings.Contains(found[0].Description, "ttyUSB0") {
		t.Errorf("found %+v", found)
	}
}
