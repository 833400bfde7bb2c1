package dutlink

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/dutlink/dutlinktest"
	"github.com/jsplan/jsplan/drivers/internal/ptyutil"
	"github.com/jsplan/jsplan/drivers/internal/schematest"
)

const testSerial = "e6058905"

// bench is a simulated harness attached to a fake sysfs, with a board.
type bench struct {
	t    *testing.T
	dir  string
	sim  *dutlinktest.Sim
	dut  *pipeDUT
	disk string
	dev  *Device
}

// attach creates the simulator and the sysfs entries that make it findable
// by serial number, as the kernel shows a plugged-in harness.
func (b *bench) attach() {
	t := b.t
	sim, err := dutlinktest.New(dutlinktest.Options{
		DUT:        b.dut,
		DiskPath:   b.disk,
		MediumPath: filepath.Join(b.dir, "medium.img"),
		MediumSize: 1 << 20,
		DiskDelay:  150 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	b.sim = sim
	usb := filepath.Join(b.dir, "sys", "bus", "usb", "devices", "1-2.5")
	os.RemoveAll(usb)
	tty := filepath.Join(usb, "1-2.5:1.0", "tty", "ttyACM3")
	must(t, os.MkdirAll(tty, 0o755))
	for name, v := range map[string]string{"idVendor": "2b23", "idProduct": "1012", "serial": testSerial, "bcdDevice": "0008", "product": "Jumpstarter"} {
		must(t, os.WriteFile(filepath.Join(usb, name), []byte(v+"\n"), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(b.dir, "sys", "bus", "usb", "devices", "usb1"), 0o755))
	must(t, os.MkdirAll(filepath.Join(b.dir, "sys", "bus", "usb", "devices", "1-2.5:1.0"), 0o755))
	must(t, os.MkdirAll(filepath.Join(b.dir, "dev"), 0o755))
	link := filepath.Join(b.dir, "dev", "ttyACM3")
	os.Remove(link)
	must(t, os.Symlink(sim.Path(), link))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newBench(t *testing.T) *bench {
	t.Helper()
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "by-id"), 0o755))
	b := &bench{t: t, dir: dir, dut: newPipeDUT(), disk: filepath.Join(dir, "by-id", "usb-DUTLink_Storage_e6058905-0:0")}
	t.Cleanup(b.dut.close)
	b.attach()
	return b
}

// open decodes extra YAML on top of the bench's defaults and opens it.
func (b *bench) open(extra string) *Device {
	t := b.t
	t.Helper()
	d, err := b.decode(extra)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Open(context.Background(), drivers.Env{Board: "bench-1", Log: t.Logf}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	b.dev = d
	return d
}

func (b *bench) decode(extra string) (*Device, error) {
	doc := "serial-number: " + testSerial + "\ndisk: " + b.disk + "\n" + extra
	dev, err := schematest.Decode(b.t, Name, doc)
	if err != nil {
		return nil, err
	}
	d := dev.(*Device)
	if err := d.Validate(); err != nil {
		return nil, err
	}
	d.sysfs = filepath.Join(b.dir, "sys")
	d.devDir = filepath.Join(b.dir, "dev")
	return d, nil
}

func (b *bench) events() string {
	var s []string
	for _, e := range b.sim.Events() {
		s = append(s, e.What)
	}
	return strings.Join(s, ",")
}

// rawTerm types at the harness directly, as a person at a terminal would.
func rawTerm(t *testing.T, sim *dutlinktest.Sim, keys string) {
	t.Helper()
	f, err := os.OpenFile(sim.Path(), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	_, err = f.Write([]byte(keys))
	must(t, err)
	// Wait until the simulator has taken the keys.
	waitFor(t, func() bool { return bytes.HasSuffix(sim.Received(), []byte(keys)) })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSchema(t *testing.T) {
	schematest.Check(t, Name,
		[]string{
			"serial-number: e6058905\n",
			"port: /dev/ttyACM0\n",
			"port: usb-Red_Hat_Inc._Jumpstarter_e6058905-if00\n",
			"serial-number: e6058905\ndisk: /dev/disk/by-id/usb-X-0:0\ndisk-wait: 20s\nconsole-port: usb-FTDI-if00\nconsole-baud: 921600\nreply-timeout: 3s\npower-timeout: 1m\nreset-hold: 500ms\npower-on: rescue\npower-off: force-off\nfirmware-config: {power_on: 'p1,bL,w5,bZ', name: bench-3}\n",
		},
		[]string{
			"serial-number: e6058905\nbogus: 1\n",
			"serial-number: e6058905\ndisk: sdb\n",
			"serial-number: e6058905\npower-on: maybe\n",
			"serial-number: e6058905\nfirmware-config: {color: red}\n",
			"serial-number: e6058905\nfirmware-config: {name: 'has space'}\n",
			"serial-number: e6058905\nreply-timeout: 2\n",
		})
}

func TestValidate(t *testing.T) {
	for doc, want := range map[string]string{
		"disk: /dev/x\n":                         "one is required",
		"serial-number: a\nport: /dev/ttyACM0\n": "give only one",
		"port: dev/ttyACM0\n":                    "absolute",
		"serial-number: a\ndisk: sdb\n":          "disk",
		"serial-number: a\npower-off: rescue\n":  "power-off",
		"serial-number: a\nfirmware-config: {power_on: '" + strings.Repeat("w1,", 11) + "'}\n": "keeps 32",
		"serial-number: a\nfirmware-config: {colour: x}\n":                                     "unknown key",
	} {
		dev, err := schematest.Decode(t, Name, doc)
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if err := dev.(*Device).Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want %q", doc, err, want)
		}
	}
	dev, _ := schematest.Decode(t, Name, "serial-number: a\n")
	caps := dev.(*Device).Capabilities()
	if len(caps) != 2 {
		t.Errorf("without disk: capabilities %v, want power and console", caps)
	}
}

// TestOpenSyncsFromConsoleMode leaves the harness in console mode with
// the monitor on and a half-typed line, as a person might; Open must
// bring it back to a clean shell.
func TestOpenSyncsFromConsoleMode(t *testing.T) {
	b := newBench(t)
	rawTerm(t, b.sim, "monitor on\r")
	rawTerm(t, b.sim, "console\r")
	if !b.sim.State().ConsoleMode {
		t.Fatal("setup: the simulator is not in console mode")
	}
	b.open("")
	st := b.sim.State()
	if st.ConsoleMode || st.Monitor {
		t.Errorf("after Open: console %v, monitor %v; want both off", st.ConsoleMode, st.Monitor)
	}

	// A half-typed command line is flushed too.
	b2 := newBench(t)
	rawTerm(t, b2.sim, "pow")
	b2.open("")
	if err := b2.dev.On(context.Background()); err != nil {
		t.Fatalf("On after a half-typed line: %v", err)
	}
}

func TestPower(t *testing.T) {
	b := newBench(t)
	d := b.open("")
	ctx := context.Background()
	must(t, d.On(ctx))
	if !b.sim.State().Power {
		t.Error("On: the switch is off")
	}
	must(t, d.Off(ctx))
	if b.sim.State().Power {
		t.Error("Off: the switch is on")
	}
	// rescue runs the stored power_rescue sequence.
	b.sim.SetConfig("power_rescue", "p1,aL,w1,aZ")
	must(t, d.Rescue(ctx))
	if got, want := b.events(), "power 1,power 0,power 1,a L,a Z"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestPowerModes(t *testing.T) {
	b := newBench(t)
	b.sim.SetConfig("power_on", "p1,bL,w1,bZ")
	b.sim.SetConfig("power_off", "bL,w2,bZ,p0")
	d := b.open("power-on: force-on\npower-off: force-off\n")
	ctx := context.Background()
	must(t, d.On(ctx))
	must(t, d.Off(ctx))
	if got, want := b.events(), "power 1,power 0"; got != want {
		t.Errorf("force-on/force-off ran sequences: events %q, want %q", got, want)
	}
	d2 := newBench(t)
	d2.sim.SetConfig("power_on", "p1,bL,w1,bZ")
	dev := d2.open("")
	must(t, dev.On(ctx))
	if got, want := d2.events(), "power 1,b L,b Z"; got != want {
		t.Errorf("power on sequence: events %q, want %q", got, want)
	}
}

func TestSlowPowerWithinPowerTimeout(t *testing.T) {
	b := newBench(t)
	d := b.open("reply-timeout: 300ms\npower-timeout: 10s\n")
	b.sim.SetPowerDelay(time.Second)
	if err := d.On(context.Background()); err != nil {
		t.Fatalf("a power command slower than the reply timeout but within power-timeout: %v", err)
	}
}

func TestReset(t *testing.T) {
	b := newBench(t)
	d := b.open("reset-hold: 300ms\n")
	must(t, d.On(context.Background()))
	must(t, d.Reset(context.Background()))
	ev := b.sim.Events()
	var low, release time.Time
	var seq []string
	for _, e := range ev {
		seq = append(seq, e.What)
		switch e.What {
		case "r L":
			low = e.At
		case "r Z":
			release = e.At
		}
	}
	if got := strings.Join(seq, ","); got != "power 1,r L,r Z" {
		t.Fatalf("events %q, want power 1,r L,r Z", got)
	}
	if held := release.Sub(low); held < 300*time.Millisecond {
		t.Errorf("reset held %s, want at least 300ms", held)
	}
}

func TestResetReleasedWhenCancelled(t *testing.T) {
	b := newBench(t)
	d := b.open("reset-hold: 1h\n")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, func() bool { return b.sim.State().Pins['r'] == 'L' })
		cancel()
	}()
	err := d.Reset(ctx)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Reset cancelled during the hold: %v", err)
	}
	if p := b.sim.State().Pins['r']; p != 'Z' {
		t.Errorf("reset line left at %c after a cancelled reset", p)
	}
}

func TestStorage(t *testing.T) {
	b := newBench(t)
	d := b.open("disk-wait: 10s\n")
	ctx := context.Background()
	path, err := d.AttachHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if path != b.disk {
		t.Fatalf("AttachHost = %q, want %q", path, b.disk)
	}
	if st := b.sim.State().Storage; st != "host" {
		t.Errorf("storage %q after AttachHost", st)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("bootable image"), 512)
	must(t, err)
	must(t, f.Close())
	must(t, d.AttachBoard(ctx))
	if st := b.sim.State().Storage; st != "dut" {
		t.Errorf("storage %q after AttachBoard", st)
	}
	if _, err := os.Lstat(b.disk); !os.IsNotExist(err) {
		t.Errorf("the disk is still visible to the host: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(b.dir, "medium.img"))
	if !bytes.Equal(data[512:526], []byte("bootable image")) {
		t.Error("written data did not reach the medium")
	}
	if got := b.events(); got != "storage off,storage host,storage off,storage dut" {
		t.Errorf("events %q", got)
	}
	// Attaching again works from the board side too (the link comes back).
	if _, err := d.AttachHost(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStorageWrongDisk(t *testing.T) {
	b := newBench(t)
	other := filepath.Join(b.dir, "by-id", "usb-Some_Other_Disk-0:0")
	must(t, os.WriteFile(other, nil, 0o644))
	d, err := b.decode("disk-wait: 300ms\n")
	must(t, err)
	d.Disk = other
	must(t, d.Open(context.Background(), drivers.Env{Log: t.Logf}))
	defer d.Close()
	_, err = d.AttachHost(context.Background())
	if err == nil || !strings.Contains(err.Error(), "still present") {
		t.Fatalf("AttachHost with a disk the harness does not switch: %v", err)
	}
	if _, err := (&Device{}).AttachHost(context.Background()); err == nil {
		t.Error("AttachHost without a disk succeeded")
	}
}

func TestConsolePassThrough(t *testing.T) {
	b := newBench(t)
	d := b.open("")
	ctx := context.Background()
	con, err := d.OpenConsole(ctx)
	must(t, err)
	defer con.Close()
	r := newReader(con)

	b.dut.print("U-Boot 2024.01\r\nlogin: ")
	r.expect(t, "U-Boot 2024.01\r\nlogin: ")
	_, err = con.Write([]byte("root\n"))
	must(t, err)
	if got := b.dut.read(t, 5); got != "root\n" {
		t.Errorf("board got %q", got)
	}

	// A power command while the console is open: the driver leaves console
	// mode, runs it, and the console continues afterwards.
	must(t, d.Off(ctx))
	must(t, d.On(ctx))
	if !b.sim.State().ConsoleMode {
		t.Error("console mode not re-entered after the power commands")
	}
	// The escapes went to the board, as the firmware passes them on.
	if got := b.dut.read(t, 10); got != strings.Repeat("\x02", 10) {
		t.Errorf("board got %q, want the two escapes", got)
	}
	b.dut.print("Linux version 6.6\r\n")
	r.expect(t, "Linux version 6.6\r\n")
	_, err = con.Write([]byte("uname -a\n"))
	must(t, err)
	if got := b.dut.read(t, 9); got != "uname -a\n" {
		t.Errorf("board got %q", got)
	}
	if strings.Contains(r.all(), "#>") || strings.Contains(r.all(), "Device powered") {
		t.Errorf("shell replies leaked into the console: %q", r.all())
	}

	// Five Ctrl-B in a row from the console user would drop the board out
	// of console mode: the fifth is withheld.
	_, err = con.Write(bytes.Repeat([]byte{0x02}, 6))
	must(t, err)
	_, err = con.Write([]byte("x"))
	must(t, err)
	if got := b.dut.read(t, 5); got != "\x02\x02\x02\x02x" {
		t.Errorf("board got %q", got)
	}
	if !b.sim.State().ConsoleMode {
		t.Error("the console user's Ctrl-Bs left console mode")
	}

	// Closing the console leaves console mode.
	must(t, con.Close())
	if b.sim.State().ConsoleMode {
		t.Error("console mode still on after Close")
	}
	if _, err := con.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("Read after Close: %v", err)
	}
}

func TestConsoleSurvivesResetAndStorage(t *testing.T) {
	b := newBench(t)
	d := b.open("reset-hold: 200ms\n")
	ctx := context.Background()
	con, err := d.OpenConsole(ctx)
	must(t, err)
	defer con.Close()
	r := newReader(con)
	must(t, d.Reset(ctx))
	_, err = d.AttachHost(ctx)
	must(t, err)
	must(t, d.AttachBoard(ctx))
	b.dut.print("still here\r\n")
	r.expect(t, "still here\r\n")
	// Closing the device takes the harness out of console mode and ends
	// the stream.
	must(t, d.Close())
	if b.sim.State().ConsoleMode {
		t.Error("console mode still on after the device closed")
	}
	if _, err := con.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("console Read after the device closed: %v", err)
	}
}

func TestHangingBoardTimesOut(t *testing.T) {
	b := newBench(t)
	d := b.open("reply-timeout: 300ms\npower-timeout: 500ms\n")
	b.sim.SetHang(true)
	err := d.On(context.Background())
	var de *drivers.Error
	if !errors.As(err, &de) || !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no reply to \"power on\" within 500ms") {
		t.Fatalf("On with a hung board: %v", err)
	}
	err = d.Reset(context.Background())
	if !errors.As(err, &de) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Reset with a hung board: %v", err)
	}
	// When it answers again, the driver resynchronizes and goes on.
	b.sim.SetHang(false)
	must(t, d.On(context.Background()))
	if !b.sim.State().Power {
		t.Error("not powered after recovery")
	}
}

func TestHangingBoardAtOpen(t *testing.T) {
	b := newBench(t)
	b.sim.SetHang(true)
	d, err := b.decode("reply-timeout: 200ms\n")
	must(t, err)
	err = d.Open(context.Background(), drivers.Env{Log: t.Logf})
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("Open with a hung board: %v", err)
	}
}

func TestGarbledReply(t *testing.T) {
	b := newBench(t)
	d := b.open("")
	b.sim.SetGarble(true)
	err := d.On(context.Background())
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), `unexpected reply to "power on": "Qrivpr cbjrerq ba"`) {
		t.Fatalf("On with a garbled reply: %v", err)
	}
	b.sim.SetGarble(false)
	must(t, d.On(context.Background()))
}

func TestRejectedCommands(t *testing.T) {
	b := newBench(t)
	d := b.open("")
	ctx := context.Background()
	c, err := d.Client(ctx)
	must(t, err)
	_, err = c.Command(ctx, "power", "power sideways", "Device", 0)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "usage: power on|off|force-on|force-off|rescue") {
		t.Errorf("bad argument: %v", err)
	}
	_, err = c.Command(ctx, "frob", "frobnicate", "", 0)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "unsupported command") {
		t.Errorf("unknown command: %v", err)
	}
	if err := c.SetConfig(ctx, "name", "has space"); err == nil {
		t.Error("SetConfig with a space succeeded")
	}
	// The shell is still usable.
	must(t, c.SetPin(ctx, 'a', 'l'))
}

func TestFirmwareConfig(t *testing.T) {
	b := newBench(t)
	b.open("firmware-config: {power_on: 'p1,bL,w1,bZ', name: bench-3}\n")
	if got := b.sim.Config("power_on"); got != "p1,bL,w1,bZ" {
		t.Errorf("power_on %q", got)
	}
	c, err := b.dev.Client(context.Background())
	must(t, err)
	cfg, err := c.GetConfig(context.Background())
	must(t, err)
	if cfg["name"] != "bench-3" || cfg["tags"] != "" || len(cfg) != 7 {
		t.Errorf("GetConfig = %v", cfg)
	}
	v, err := c.GetConfigKey(context.Background(), "name")
	if err != nil || v != "bench-3" {
		t.Errorf("GetConfigKey = %q, %v", v, err)
	}
	b.dev.Close()
	// Opening again does not rewrite values that are already stored.
	before := bytes.Count(b.sim.Received(), []byte("set-config"))
	b.open("firmware-config: {power_on: 'p1,bL,w1,bZ', name: bench-3}\n")
	if after := bytes.Count(b.sim.Received(), []byte("set-config")); after != before {
		t.Errorf("set-config sent again (%d -> %d)", before, after)
	}
}

func TestNotFound(t *testing.T) {
	b := newBench(t)
	d, err := b.decode("")
	must(t, err)
	d.SerialNumber = "deadbeef"
	err = d.Open(context.Background(), drivers.Env{})
	if err == nil || !strings.Contains(err.Error(), "deadbeef not found; attached: "+testSerial) {
		t.Fatalf("Open of an absent harness: %v", err)
	}
	d.sysfs = filepath.Join(b.dir, "nothing")
	err = d.Open(context.Background(), drivers.Env{})
	if err == nil || !strings.Contains(err.Error(), "no DUTLink") {
		t.Fatalf("Open with no harness attached: %v", err)
	}
}

func TestExplicitPort(t *testing.T) {
	b := newBench(t)
	dev, err := schematest.Decode(t, Name, "port: "+b.sim.Path()+"\n")
	must(t, err)
	d := dev.(*Device)
	must(t, d.Validate())
	must(t, d.Open(context.Background(), drivers.Env{Log: t.Logf}))
	defer d.Close()
	must(t, d.On(context.Background()))
}

// TestReconnect unplugs the harness and plugs it back in (a new tty); the
// next command finds it again by serial number.
func TestReconnect(t *testing.T) {
	b := newBench(t)
	d := b.open("")
	must(t, d.On(context.Background()))
	b.sim.Close()
	b.attach()
	c := d.client
	waitFor(t, func() bool { return c.Err() != nil })
	must(t, d.Off(context.Background()))
	if got := b.events(); got != "power 0" && got != "" {
		t.Logf("events on the new harness: %q", got)
	}
	if b.sim.State().Power {
		t.Error("the new harness is powered")
	}
}

func TestConsolePort(t *testing.T) {
	b := newBench(t)
	p, err := ptyutil.Open()
	must(t, err)
	defer p.Close()
	d := b.open("console-port: " + p.Path + "\n")
	con, err := d.OpenConsole(context.Background())
	must(t, err)
	defer con.Close()
	p.Master.Write([]byte("UEFI console\r\n"))
	newReader(con).expect(t, "UEFI console\r\n")
	if b.sim.State().ConsoleMode {
		t.Error("the harness's pass-through was used despite console-port")
	}
}

func TestScanSysfsAndDiscover(t *testing.T) {
	b := newBench(t)
	boards, err := scanSysfs(filepath.Join(b.dir, "sys"), "/dev")
	must(t, err)
	if len(boards) != 1 || boards[0].Serial != testSerial || boards[0].Version != "0.08" || boards[0].TTY != "/dev/ttyACM3" {
		t.Fatalf("scanSysfs = %+v", boards)
	}
	found := foundBoards(boards)
	if len(found) != 1 || found[0].ID != testSerial || found[0].Config["serial-number"] != testSerial ||
		!strings.Contains(found[0].Description, "firmware 0.08") {
		t.Errorf("found %+v", found)
	}
	for in, want := range map[string]string{"0008": "0.08", "0104": "1.04", "1210": "12.10", "x": "x"} {
		if got := bcdVersion(in); got != want {
			t.Errorf("bcdVersion(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := discover(context.Background()); err != nil {
		t.Errorf("discover on this host: %v", err)
	}
}

// reader collects what a console stream yields.
type reader struct {
	mu  sync.Mutex
	buf []byte
	ch  chan struct{}
}

func newReader(r io.Reader) *reader {
	rd := &reader{ch: make(chan struct{}, 1)}
	go func() {
		b := make([]byte, 1024)
		for {
			n, err := r.Read(b)
			rd.mu.Lock()
			rd.buf = append(rd.buf, b[:n]...)
			rd.mu.Unlock()
			select {
			case rd.ch <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return rd
}

func (r *reader) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.buf)
}

func (r *reader) expect(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(r.all(), want) {
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("console: no %q in %q", want, r.all())
		}
	}
}

// pipeDUT is a simulated board UART made of two pipes.
type pipeDUT struct {
	outR *io.PipeReader
	outW *io.PipeWriter
	inR  *io.PipeReader
	inW  *io.PipeWriter
}

func newPipeDUT() *pipeDUT {
	d := &pipeDUT{}
	d.outR, d.outW = io.Pipe()
	d.inR, d.inW = io.Pipe()
	return d
}

func (d *pipeDUT) Read(b []byte) (int, error)  { return d.outR.Read(b) }
func (d *pipeDUT) Write(b []byte) (int, error) { return d.inW.Write(b) }
func (d *pipeDUT) print(s string)              { d.outW.Write([]byte(s)) }
func (d *pipeDUT) close() {
	d.outW.Close()
	d.inR.Close()
}

func (d *pipeDUT) read(t *testing.T, n int) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		b := make([]byte, n)
		io.ReadFull(d.inR, b)
		ch <- string(b)
	}()
	select {
	case s := <-ch:
		return s
	case <-time.After(15 * time.Second):
		t.Fatalf("board received nothing")
	}
	return ""
}
