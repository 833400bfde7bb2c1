package dutlinktest

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// term is a raw terminal on the simulator's port.
type term struct {
	t *testing.T
	f *os.File
}

func dial(t *testing.T, s *Sim) *term {
	t.Helper()
	f, err := os.OpenFile(s.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &term{t: t, f: f}
}

func (c *term) send(s string) {
	c.t.Helper()
	if _, err := c.f.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads exactly len(want) bytes and compares them.
func (c *term) expect(want string) {
	c.t.Helper()
	c.f.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	n, err := io.ReadFull(c.f, got)
	if err != nil || string(got) != want {
		c.t.Fatalf("got %q (%v), want %q", got[:n], err, want)
	}
}

// quiet checks nothing more arrives for a moment.
func (c *term) quiet() {
	c.t.Helper()
	c.f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	b := make([]byte, 64)
	if n, _ := c.f.Read(b); n > 0 {
		c.t.Fatalf("unexpected output %q", b[:n])
	}
}

func newSim(t *testing.T, o Options) *Sim {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestFraming checks replies byte for byte as the firmware frames them.
func TestFraming(t *testing.T) {
	s := newSim(t, Options{})
	c := dial(t, s)
	for _, tc := range []struct{ in, out string }{
		{"version\r\n", "version\r\n0.08 git-ref: sim\r\n#> "},
		{"power on\r\n", "power on\r\nDevice powered on\r\n#> "},
		{"power rescue\r", "power rescue\r\nDevice powered on to rescue\r\n#> "},
		{"power force-off\r", "power force-off\r\nDevice forced off\r\n#> "},
		{"power sideways\r", "power sideways\r\nusage: power on|off|force-on|force-off|rescue\r\n#> "},
		{"power  on\r", "power  on\r\nusage: power on|off|force-on|force-off|rescue\r\n#> "},
		{"bogus\r", "bogus\r\nunsupported command\r\n\r\n#> "},
		{"\r", "\r\n#> "},
		{"storage host\r", "storage host\r\nstorage connected to host\r\n#> "},
		{"storage dut\r", "storage dut\r\nstorage connected to device under test\r\n#> "},
		{"storage off\r", "storage off\r\nstorage disconnected\r\n#> "},
		{"storage\r", "storage\r\nusage: storage dut|host|off\r\n#> "},
		{"set r l\r", "set r l\r\nSet /RESET to LOW\r\n#> "},
		{"set a h\r", "set a h\r\nSet CTL_A to HIGH\r\n#> "},
		{"set d z\r", "set d z\r\nSet CTL_D to HIGH IMPEDANCE\r\n#> "},
		{"set x l\r", "set x l\r\nusage: set r|a|b|c|d l|h|z\r\n#> "},
		{"monitor off\r", "monitor off\r\nMonitor disabled\r\n#> "},
		{"status\r", "status\r\nMonitor: false, Meter: false\r\n#> "},
		{"set-config name bench-3\r", "set-config name bench-3\r\nSet name to bench-3\r\n#> "},
		{"set-config power_on p1,bL,w1,bZ\r", "set-config power_on p1,bL,w1,bZ\r\nSet power_on to p1,bL,w1,bZ\r\n#> "},
		{"set-config color red\r", "set-config color red\r\nusage: set-config name|tags|storage|usb_storage value\r\n#> "},
		{"get-config name\r", "get-config name\r\nbench-3\r\n#> "},
		{"get-config tags\r", "get-config tags\r\n#> "},
		{"get-config\r", "get-config\r\nname: bench-3\r\ntags: \r\njson: \r\nusb_console: \r\npower_on: p1,bL,w1,bZ\r\npower_off: \r\npower_rescue: \r\n#> "},
		{"set-config name\r", "set-config name\r\nSet name to \r\n#> "},
		{"meter read\r", "meter read\r\n0.00A 0.00V 0.00W\r\n#> "},
		{"power force-on\r", "power force-on\r\nDevice forced on\r\n#> "},
		{"meter read\r", "meter read\r\n0.50A 5.00V 2.50W\r\n#> "},
	} {
		c.send(tc.in)
		c.expect(tc.out)
	}
	c.quiet()
}

func TestLineEditor(t *testing.T) {
	s := newSim(t, Options{})
	c := dial(t, s)
	c.send("verx\x7f")
	c.expect("verx\x08 \x08")
	c.send("\t")
	c.expect("\x1b[Ksion")
	c.send("\r")
	c.expect("\r\n0.08 git-ref: sim\r\n#> ")
	c.send("\x7f") // nothing to delete
	c.expect("\x07")
	c.send("\x1b[A") // history: the last command
	c.expect("\x1b[Kversion")
	c.send("\x1b[D\x1b[D") // cursor left twice, then insert
	c.expect("\x1b[D\x1b[D")
	c.send("X")
	c.expect("X\x1b[s\x1b[Kon\x1b[u")
	c.send("\r")
	c.expect("\r\nunsupported command\r\n\r\n#> ")
	c.send("\x02\x02\n") // control characters are ignored in the shell
	c.quiet()
}

func TestConsoleMode(t *testing.T) {
	dut := newPipeDUT()
	s := newSim(t, Options{DUT: dut})
	c := dial(t, s)
	lost := "lost while not in console mode\r\n"
	dut.print(lost)
	waitFor(t, func() bool { return s.State().Dropped == len(lost) })
	c.send("console\r")
	c.expect("console\r\nEntering console mode, type CTRL+B 5 times to exit\r\n")
	dut.print("login: ")
	c.expect("login: ")
	c.send("root\r")
	if got := dut.read(t, 5); got != "root\r" {
		t.Errorf("board got %q", got)
	}
	c.send("\x02\x02\x02\x02\x02")
	c.expect("\r\nExiting console mode\r\n#> ")
	if got := dut.read(t, 5); got != "\x02\x02\x02\x02\x02" {
		t.Errorf("board got %q (the escape is passed through too)", got)
	}
	dut.print("dropped again\r\n")
	waitFor(t, func() bool { return s.State().Dropped == len(lost)+15 })
	c.send("monitor on\r")
	c.expect("monitor on\r\nMonitor enabled\r\n#> ")
	dut.print("seen with monitor\r\n")
	c.expect("seen with monitor\r\n")
	if st := s.State(); !st.Monitor || st.ConsoleMode {
		t.Errorf("state %+v", st)
	}
	c.send("send ls\\n\r")
	c.expect("send ls\\n\r\n#> ")
	if got := dut.read(t, 3); got != "ls\n" {
		t.Errorf("send: board got %q", got)
	}
}

func TestPowerSequencesAndPins(t *testing.T) {
	s := newSim(t, Options{})
	c := dial(t, s)
	// A pin set high while the board is off is held floating until power on.
	c.send("set b h\r")
	c.expect("set b h\r\nSet CTL_B to HIGH\r\n#> ")
	if p := s.State().Pins['b']; p != 'Z' {
		t.Errorf("b while off = %c, want Z", p)
	}
	s.SetConfig("power_on", "p1,aL,rL,w1,rZ")
	c.send("power on\r")
	c.expect("power on\r\nDevice powered on\r\n#> ")
	var got []string
	for _, e := range s.Events() {
		got = append(got, e.What)
	}
	want := "b H,power 1,a L,r L,r Z"
	if strings.Join(got, ",") != want {
		t.Errorf("events %q, want %q", strings.Join(got, ","), want)
	}
	c.send("power off\r")
	c.expect("power off\r\nDevice powered off\r\n#> ")
	st := s.State()
	if st.Power || st.Pins['b'] != 'Z' || st.Pins['a'] != 'L' {
		t.Errorf("after off: %+v", st)
	}
}

func TestStorageDisk(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "usb-DUTLink_Storage-0:0")
	s := newSim(t, Options{DiskPath: disk, MediumPath: filepath.Join(dir, "medium.img"), MediumSize: 1 << 20})
	c := dial(t, s)
	c.send("storage host\r")
	c.expect("storage host\r\nstorage connected to host\r\n#> ")
	if fi, err := os.Stat(disk); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("disk after storage host: %v %v", fi, err)
	}
	c.send("storage dut\r")
	c.expect("storage dut\r\nstorage connected to device under test\r\n#> ")
	if _, err := os.Lstat(disk); !os.IsNotExist(err) {
		t.Errorf("disk still there after storage dut: %v", err)
	}
}

func TestFaults(t *testing.T) {
	s := newSim(t, Options{})
	c := dial(t, s)
	s.SetGarble(true)
	c.send("power on\r")
	c.expect("power on\r\nQrivpr cbjrerq ba\r\n#> ")
	s.SetGarble(false)
	s.SetHang(true)
	c.send("power off\r")
	c.quiet()
	if !s.State().Power {
		t.Error("a hung board acted on a command")
	}
	s.SetHang(false)
	c.send("\r")
	c.expect("\r\n#> ")
}

// pipeDUT is a simulated board UART made of two pipes.
type pipeDUT struct {
	outR *io.PipeReader // what the board prints, read by the sim
	outW *io.PipeWriter
	inR  *io.PipeReader // what the board receives
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
	case <-time.After(10 * time.Second):
		t.Fatalf("board received nothing")
	}
	return ""
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
