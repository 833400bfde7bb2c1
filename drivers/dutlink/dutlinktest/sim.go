// Package dutlinktest is test equipment, like net/http/httptest: it
// simulates a DUTLink board's firmware on a pseudo-terminal, for testing the
// dutlink driver (and jsplan end to end) without hardware. Nothing in a
// jsplan binary imports it.
//
// The simulator owns the pty's master side; a driver opens Path() as its
// serial port. It behaves like the firmware's text shell byte for byte
// where a driver can tell: the line editor echoes typed characters (with
// backspace, cursor keys, history and tab completion), replies are framed
// "\r\n<reply>\r\n" and followed by the prompt "#> ", commands with bad
// arguments answer "usage: ...", unknown ones "unsupported command", and
// the `console` command passes bytes to and from a simulated board UART
// until Ctrl-B arrives five times in a row. Power sequences, the control
// pins, the storage switch and the flash-backed configuration are modelled
// too; informational texts (help, about) are our own wording.
//
// Fault knobs make it hang, garble replies or answer power commands late.
//
// Board plays the device under test behind the harness: it follows the
// harness's power switch, boots the image flashed through its storage mux
// and prints a boot loader's banner, and with BoardOptions.Linux goes on to
// a login prompt and a real shell (drivers/sim's virtual board).
package dutlinktest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jsplan/jsplan/drivers/internal/ptyutil"
)

// Prompt is the firmware shell's prompt.
const Prompt = "#> "

// Options configure a simulator.
type Options struct {
	// DUT is the simulated board's UART. Bytes the board prints are read
	// from it and passed to the host in console (or monitor) mode; bytes
	// typed in console mode, and `send` strings, are written to it. Nil
	// means a board that prints nothing and ignores input.
	DUT io.ReadWriter
	// DiskPath is where the storage device appears for the host while the
	// switch is on "host": a symlink to MediumPath, as udev makes
	// /dev/disk/by-id links. Empty: no storage device appears.
	DiskPath string
	// MediumPath is the file that holds the storage medium's data. It is
	// created with MediumSize bytes when missing.
	MediumPath string
	// MediumSize is the size of a newly created medium (default 8 MiB).
	MediumSize int64
	// DiskDelay is how long after `storage host` the disk appears, like
	// USB enumeration (default: at once).
	DiskDelay time.Duration
	// Version is the firmware version (default "0.08"); GitRef its git
	// reference (default "sim").
	Version, GitRef string
}

// Event is something the simulated hardware did, for tests to check.
type Event struct {
	At time.Time
	// What is "power 1", "power 0", "<pin> <L|H|Z>" with pin one of
	// r, a, b, c, d (a physical pin change), or "storage <host|dut|off>".
	What string
}

// State is a snapshot of the simulated hardware.
type State struct {
	// Power is the power switch; On is the firmware's flag that the board
	// is on (set by power on even when its sequence leaves the switch).
	Power, On   bool
	Storage     string // "off", "host" or "dut"
	ConsoleMode bool
	Monitor     bool
	Meter       bool
	// Dropped counts the bytes the board printed while neither console
	// nor monitor mode was on: the firmware drops them.
	Dropped int
	// Pins holds the physical state of r, a, b, c, d: 'L', 'H' or 'Z'.
	Pins map[byte]byte
}

// Sim is a running DUTLink simulator.
type Sim struct {
	opts Options
	pty  *ptyutil.Pair

	closeOnce sync.Once
	done      chan struct{}

	mu     sync.Mutex // guards everything below and writes to the host
	closed bool

	// shell line editor
	line       []byte
	cursor     int
	escape     bool
	control    bool
	history    []string // most recently used first, as ushell's LRU history
	histCursor int

	consoleMode bool
	monitor     bool
	meter       bool
	escCount    int

	power    bool          // the power switch
	on       bool          // the firmware's idea of the board being on
	stored   map[byte]byte // pin states asked for
	phys     map[byte]byte // pin states applied
	storage  string
	diskGen  int
	config   map[string][]byte
	events   []Event
	received []byte
	dropped  int

	hang       bool
	garble     bool
	powerDelay time.Duration

	dutQ    chan dutItem
	wg      sync.WaitGroup
	writeTo io.Writer // the host side (pty master)
}

// dutItem is a chunk for the board's UART, or a pause (the send
// command's \w escape).
type dutItem struct {
	data []byte
	wait time.Duration
}

// config fields and their flash sizes, in get-config order.
var configKeys = []struct {
	key  string
	size int
}{
	{"name", 64}, {"tags", 256}, {"json", 512}, {"usb_console", 64},
	{"power_on", 32}, {"power_off", 32}, {"power_rescue", 32},
}

// New starts a simulator on a new pty.
func New(opts Options) (*Sim, error) {
	if opts.Version == "" {
		opts.Version = "0.08"
	}
	if opts.GitRef == "" {
		opts.GitRef = "sim"
	}
	if opts.MediumSize == 0 {
		opts.MediumSize = 8 << 20
	}
	if opts.DiskPath != "" {
		if opts.MediumPath == "" {
			return nil, errors.New("dutlinktest: DiskPath needs MediumPath")
		}
		if _, err := os.Stat(opts.MediumPath); errors.Is(err, os.ErrNotExist) {
			f, err := os.Create(opts.MediumPath)
			if err != nil {
				return nil, err
			}
			err = f.Truncate(opts.MediumSize)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
		os.Remove(opts.DiskPath)
	}
	p, err := ptyutil.Open()
	if err != nil {
		return nil, err
	}
	s := &Sim{
		opts:    opts,
		pty:     p,
		writeTo: p.Master,
		done:    make(chan struct{}),
		storage: "off",
		stored:  map[byte]byte{'r': 'Z', 'a': 'Z', 'b': 'Z', 'c': 'Z', 'd': 'Z'},
		phys:    map[byte]byte{'r': 'Z', 'a': 'Z', 'b': 'Z', 'c': 'Z', 'd': 'Z'},
		config:  map[string][]byte{},
		dutQ:    make(chan dutItem, 1024),
	}
	for _, k := range configKeys {
		s.config[k.key] = make([]byte, k.size)
	}
	s.wg.Add(1)
	go s.hostLoop()
	// The DUT goroutines are not waited for by Close: a write to or read
	// from the board's side can block until that side is closed.
	go s.dutWriter()
	if opts.DUT != nil {
		go s.dutReader()
	}
	return s, nil
}

// Path is the serial port a driver opens (the pty's slave).
func (s *Sim) Path() string { return s.pty.Path }

// Close stops the simulator and removes the disk link. The goroutine
// reading the DUT side ends when that side is closed.
func (s *Sim) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		// Closing the pty first unblocks a write to a host that stopped
		// reading, which holds s.mu.
		err = s.pty.Close()
		s.mu.Lock()
		s.closed = true
		s.diskGen++
		s.mu.Unlock()
		s.wg.Wait()
		if s.opts.DiskPath != "" {
			os.Remove(s.opts.DiskPath)
		}
	})
	return err
}

// SetHang makes the firmware stop answering (input is swallowed, nothing
// is done) or answer again.
func (s *Sim) SetHang(on bool) { s.mu.Lock(); s.hang = on; s.mu.Unlock() }

// SetGarble corrupts the text of every reply (the echo and the prompt stay
// intact), as line noise would; the commands still take effect.
func (s *Sim) SetGarble(on bool) { s.mu.Lock(); s.garble = on; s.mu.Unlock() }

// SetPowerDelay makes power commands take d longer before they answer,
// like a long power sequence.
func (s *Sim) SetPowerDelay(d time.Duration) { s.mu.Lock(); s.powerDelay = d; s.mu.Unlock() }

// State returns a snapshot of the hardware state.
func (s *Sim) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	pins := map[byte]byte{}
	for k, v := range s.phys {
		pins[k] = v
	}
	return State{Dropped: s.dropped, Power: s.power, On: s.on, Storage: s.storage, ConsoleMode: s.consoleMode, Monitor: s.monitor, Meter: s.meter, Pins: pins}
}

// Events returns what the hardware did so far.
func (s *Sim) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Received returns every byte the host sent.
func (s *Sim) Received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.received...)
}

// Config returns a configuration value as get-config prints it.
func (s *Sim) Config(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cString(s.config[key])
}

// SetConfig stores a configuration value, as if written earlier.
func (s *Sim) SetConfig(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.config[key]; ok {
		setField(f, value)
	}
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func setField(f []byte, v string) {
	n := copy(f, v)
	for i := n; i < len(f); i++ {
		f[i] = 0
	}
}

func (s *Sim) event(what string) {
	s.events = append(s.events, Event{At: time.Now(), What: what})
}

// write sends b to the host. The caller holds s.mu.
func (s *Sim) write(b []byte) {
	if len(b) > 0 && !s.closed {
		s.writeTo.Write(b)
	}
}

func (s *Sim) writeString(str string) { s.write([]byte(str)) }

// sleep pauses for d, or until Close. The caller holds s.mu, as the
// firmware blocks its USB task during power sequences.
func (s *Sim) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

func (s *Sim) hostLoop() {
	defer s.wg.Done()
	buf := make([]byte, 1024)
	for {
		n, err := s.pty.Master.Read(buf)
		if n > 0 {
			s.mu.Lock()
			s.received = append(s.received, buf[:n]...)
			if !s.hang && !s.closed {
				s.chunk(buf[:n])
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// chunk handles one read from the host. As in the firmware, a chunk that
// starts in shell mode is parsed by the shell to its end, even after a
// `console` command in it; a chunk in console mode goes to the board
// whole, Ctrl-B escape included.
func (s *Sim) chunk(b []byte) {
	if s.consoleMode {
		s.toDUT(dutItem{data: append([]byte(nil), b...)})
		for _, c := range b {
			if c != 0x02 {
				s.escCount = 0
				continue
			}
			s.escCount++
			if s.escCount == 5 {
				s.consoleMode = false
				s.monitor = false
				s.writeString("\r\nExiting console mode\r\n" + Prompt)
				s.escCount = 0
			}
		}
		return
	}
	var out []byte
	for _, c := range b {
		out = s.key(c, out)
	}
	s.write(out)
}

func (s *Sim) toDUT(it dutItem) {
	select {
	case s.dutQ <- it:
	case <-s.done:
	}
}

func (s *Sim) dutWriter() {
	for {
		select {
		case <-s.done:
			return
		case it := <-s.dutQ:
			if it.wait > 0 {
				select {
				case <-time.After(it.wait):
				case <-s.done:
					return
				}
			}
			if s.opts.DUT != nil && len(it.data) > 0 {
				s.opts.DUT.Write(it.data)
			}
		}
	}
}

func (s *Sim) dutReader() {
	buf := make([]byte, 1024)
	for {
		n, err := s.opts.DUT.Read(buf)
		if n > 0 {
			s.mu.Lock()
			if !s.closed && !s.hang && (s.consoleMode || s.monitor) {
				out := make([]byte, 0, n)
				for _, c := range buf[:n] {
					out = append(out, c)
					if s.meter && c == '\r' {
						out = append(out, fmt.Sprintf("%.2fW> ", s.watts())...)
					}
				}
				s.write(out)
			}
			if !s.consoleMode && !s.monitor {
				// The firmware drops what the board prints then.
				s.dropped += n
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
		select {
		case <-s.done:
			return
		default:
		}
	}
}

// Line editor, after the ushell crate the firmware uses.

const (
	maxLine = 512
	bell    = 0x07
)

var commands = []string{"help", "about", "get-config", "version", "meter", "storage", "send",
	"set", "set-config", "monitor", "power", "console", "status", "clear"}

// key feeds one byte to the line editor and returns out with the bytes
// to send back appended.
func (s *Sim) key(c byte, out []byte) []byte {
	switch {
	case c == '[' && s.escape:
		s.control = true
	case c == 0x1b:
		s.escape = true
	case s.control:
		s.escape, s.control = false, false
		switch c {
		case 'D':
			if s.cursor > 0 {
				s.cursor--
				out = append(out, "\x1b[D"...)
			} else {
				out = append(out, bell)
			}
		case 'C':
			if s.cursor < len(s.line) {
				s.cursor++
				out = append(out, "\x1b[C"...)
			} else {
				out = append(out, bell)
			}
		case 'A':
			out = s.historyBack(out)
		case 'B':
			out = s.historyForward(out)
		}
	case s.escape:
		s.escape, s.control = false, false
	case c == '\t':
		out = s.suggest(out)
	case c == 0x7f || c == 0x08:
		out = s.backspace(out)
	case c == '\r':
		if !utf8.Valid(s.line) {
			return out // the shell refuses the line and keeps it
		}
		line := string(s.line)
		s.pushHistory(line)
		s.line, s.cursor = s.line[:0], 0
		// Write the echo before acting, as the firmware's echo is sent
		// before the command runs.
		s.write(out)
		s.run(line)
		return nil
	case c < 0x20 || c == 0x7f:
		// Other control characters (LF, Ctrl-B, ...) are ignored.
	default:
		out = s.insert(c, out)
	}
	return out
}

func (s *Sim) insert(c byte, out []byte) []byte {
	switch {
	case s.cursor == maxLine:
		return append(out, bell)
	case s.cursor < len(s.line):
		out = append(out, c)
		s.line = append(s.line[:s.cursor], append([]byte{c}, s.line[s.cursor:]...)...)
		s.cursor++
		out = append(out, "\x1b[s\x1b[K"...)
		out = append(out, s.line[s.cursor:]...)
		return append(out, "\x1b[u"...)
	default:
		s.line = append(s.line, c)
		s.cursor++
		return append(out, c)
	}
}

func (s *Sim) backspace(out []byte) []byte {
	switch {
	case s.cursor == 0:
		return append(out, bell)
	case s.cursor < len(s.line):
		s.line = append(s.line[:s.cursor-1], s.line[s.cursor:]...)
		s.cursor--
		out = append(out, "\x1b[D\x1b[s\x1b[K"...)
		out = append(out, s.line[s.cursor:]...)
		return append(out, "\x1b[u"...)
	default:
		s.line = s.line[:len(s.line)-1]
		s.cursor--
		return append(out, "\x08 \x08"...)
	}
}

func (s *Sim) suggest(out []byte) []byte {
	prefix := string(s.line[:s.cursor])
	if prefix == "" {
		return append(out, bell)
	}
	for _, cmd := range commands {
		if strings.HasPrefix(cmd, prefix) {
			suffix := cmd[len(prefix):]
			s.line = append(s.line[:s.cursor], suffix...)
			s.cursor = len(s.line)
			out = append(out, "\x1b[K"...)
			return append(out, suffix...)
		}
	}
	return append(out, bell)
}

func (s *Sim) pushHistory(line string) {
	if line != "" {
		found := -1
		for i, h := range s.history {
			if h == line {
				found = i
				break
			}
		}
		if found >= 0 {
			s.history = append(s.history[:found], s.history[found+1:]...)
		}
		s.history = append([]string{line}, s.history...)
		if len(s.history) > 10 {
			s.history = s.history[:10]
		}
	}
	s.histCursor = 0
}

func (s *Sim) historyBack(out []byte) []byte {
	if s.cursor != len(s.line) || len(s.history) == 0 || s.histCursor == len(s.history) {
		return append(out, bell)
	}
	line := s.history[s.histCursor]
	s.histCursor++
	return s.replaceLine(line, out)
}

func (s *Sim) historyForward(out []byte) []byte {
	if s.cursor != len(s.line) || len(s.history) == 0 || s.histCursor == 0 {
		return append(out, bell)
	}
	s.histCursor--
	return s.replaceLine(s.history[s.histCursor], out)
}

func (s *Sim) replaceLine(line string, out []byte) []byte {
	if s.cursor > 0 {
		out = append(out, fmt.Sprintf("\x1b[%dD", s.cursor)...)
	}
	s.line = append(s.line[:0], line...)
	s.cursor = len(s.line)
	out = append(out, "\x1b[K"...)
	return append(out, line...)
}

// Commands.

// run executes one command line and writes its reply.
func (s *Sim) run(line string) {
	cmd, args, _ := strings.Cut(line, " ")
	var reply string
	switch cmd {
	case "about":
		reply = "\r\nDUTLink simulator (jsplan), firmware version: " + s.opts.Version + " git-ref: " + s.opts.GitRef +
			"\r\n\r\nA software stand-in for the DUTLink test harness.\r\n"
	case "help":
		s.writeString(helpText)
	case "clear":
		s.writeString("\x1b[H\x1b[2J")
	case "console":
		if args == "" {
			s.consoleMode = true
			reply = "Entering console mode, type CTRL+B 5 times to exit"
		} else {
			reply = "usage: console"
		}
	case "monitor":
		switch args {
		case "on":
			s.monitor = true
			reply = "Monitor enabled"
		case "off":
			s.monitor = false
			reply = "Monitor disabled"
		default:
			reply = "usage: monitor on|off"
		}
	case "meter":
		switch args {
		case "on":
			s.meter = true
			reply = "Power meter monitoring enabled"
		case "read":
			reply = s.meterReading()
		case "off":
			s.meter = false
			reply = "Power monitor disabled"
		default:
			reply = "usage: meter on|read|off"
		}
	case "storage":
		reply = s.storageCmd(args)
	case "power":
		reply = s.powerCmd(args)
	case "send":
		if args == "" {
			reply = "usage: send string"
		} else {
			s.send(args)
		}
	case "set":
		reply = s.setCmd(args)
	case "set-config":
		reply = s.setConfig(args)
	case "get-config":
		reply = s.getConfig(args)
	case "status":
		if args == "" {
			reply = fmt.Sprintf("Monitor: %v, Meter: %v", s.monitor, s.meter)
		} else {
			reply = "usage: status"
		}
	case "version":
		reply = s.opts.Version + " git-ref: " + s.opts.GitRef
	case "":
	default:
		s.writeString("\r\nunsupported command\r\n")
	}
	if s.garble {
		reply = garble(reply)
	}
	resp := "\r\n" + reply
	if len(resp) > 2 {
		resp += "\r\n"
	}
	if !s.consoleMode {
		resp += Prompt
	}
	s.writeString(resp)
}

const helpText = "\r\n" +
	"about                : about this board\r\n" +
	"clear                : clear the screen\r\n" +
	"console              : pass the board's serial console through; leave with CTRL+B x5\r\n" +
	"get-config [key]     : show the configuration\r\n" +
	"help                 : this list\r\n" +
	"meter on|read|off    : power meter\r\n" +
	"monitor on|off       : show the board's console between commands\r\n" +
	"power on|off|force-on|force-off|rescue : switch the board's power\r\n" +
	"send string          : send a string to the board's console\r\n" +
	"set r|a|b|c|d l|h|z  : drive the reset or a control pin\r\n" +
	"set-config key value : store a configuration value\r\n" +
	"status               : show the monitor and meter state\r\n" +
	"storage dut|host|off : switch the storage device\r\n" +
	"version              : firmware version\r\n"

// garble corrupts reply text as line noise would (ROT13 of the letters).
func garble(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = 'a' + (c-'a'+13)%26
		case c >= 'A' && c <= 'Z':
			b[i] = 'A' + (c-'A'+13)%26
		}
	}
	return string(b)
}

func (s *Sim) watts() float64 {
	if s.power {
		return 2.5
	}
	return 0
}

func (s *Sim) meterReading() string {
	if s.power {
		return fmt.Sprintf("%.2fA %.2fV %.2fW", 0.5, 5.0, s.watts())
	}
	return fmt.Sprintf("%.2fA %.2fV %.2fW", 0.0, 0.0, 0.0)
}

func (s *Sim) powerCmd(args string) string {
	var reply string
	switch args {
	case "on":
		s.powerOn(s.config["power_on"])
		reply = "Device powered on"
	case "off":
		s.powerOff(s.config["power_off"])
		reply = "Device powered off"
	case "force-off":
		s.powerOff(nil)
		reply = "Device forced off"
	case "force-on":
		s.powerOn(nil)
		reply = "Device forced on"
	case "rescue":
		s.powerOn(s.config["power_rescue"])
		reply = "Device powered on to rescue"
	default:
		return "usage: power on|off|force-on|force-off|rescue"
	}
	s.sleep(s.powerDelay)
	return reply
}

func (s *Sim) storageCmd(args string) string {
	switch args {
	case "dut":
		s.setStorage("dut")
		return "storage connected to device under test"
	case "host":
		s.setStorage("host")
		return "storage connected to host"
	case "off":
		s.setStorage("off")
		return "storage disconnected"
	}
	return "usage: storage dut|host|off"
}

// setStorage moves the switch; the host's disk link goes away at once and
// appears DiskDelay after a switch to the host.
func (s *Sim) setStorage(to string) {
	s.storage = to
	s.event("storage " + to)
	s.diskGen++
	if s.opts.DiskPath == "" {
		return
	}
	os.Remove(s.opts.DiskPath)
	if to != "host" {
		return
	}
	gen := s.diskGen
	appear := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.diskGen != gen || s.closed {
			return
		}
		target, err := filepath.Abs(s.opts.MediumPath)
		if err == nil {
			os.Symlink(target, s.opts.DiskPath)
		}
	}
	if s.opts.DiskDelay <= 0 {
		target, err := filepath.Abs(s.opts.MediumPath)
		if err == nil {
			os.Symlink(target, s.opts.DiskPath)
		}
		return
	}
	time.AfterFunc(s.opts.DiskDelay, appear)
}

// send queues a string for the board, with the firmware's backslash
// escapes (\n \r \t \a \b \e \c \d \\, and \w for a pause of about 1 s).
func (s *Sim) send(args string) {
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			s.toDUT(dutItem{data: cur})
			cur = nil
		}
	}
	esc := false
	for i := 0; i < len(args); i++ {
		c := args[i]
		if !esc {
			if c == '\\' {
				esc = true
				continue
			}
			cur = append(cur, c)
			continue
		}
		esc = false
		switch c {
		case 'n':
			cur = append(cur, '\n')
		case 'r':
			cur = append(cur, '\r')
		case 't':
			cur = append(cur, '\t')
		case 'a':
			cur = append(cur, 0x07)
		case 'b':
			cur = append(cur, 0x08)
		case 'e':
			cur = append(cur, 0x1b)
		case 'c':
			cur = append(cur, 0x03)
		case 'd':
			cur = append(cur, 0x04)
		case 'w':
			flush()
			s.toDUT(dutItem{wait: time.Second})
		default:
			cur = append(cur, c)
		}
	}
	flush()
}

var pinNames = map[byte]string{'r': "/RESET", 'a': "CTL_A", 'b': "CTL_B", 'c': "CTL_C", 'd': "CTL_D"}
var stateNames = map[byte]string{'l': "LOW", 'h': "HIGH", 'z': "HIGH IMPEDANCE"}

func (s *Sim) setCmd(args string) string {
	const usage = "usage: set r|a|b|c|d l|h|z"
	if len(args) != 3 || args[1] != ' ' {
		return usage
	}
	pin, val := args[0], args[2]
	if pinNames[pin] == "" || stateNames[val] == "" {
		return usage
	}
	st := upper(val)
	s.stored[pin] = st
	if s.on || offTolerant(st) {
		s.apply(pin, st)
	}
	return "Set " + pinNames[pin] + " to " + stateNames[val]
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 32
	}
	return c
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// offTolerant: driving a pin high into an unpowered board would feed it
// through the pin, so only low and floating apply while it is off.
func offTolerant(st byte) bool { return st == 'L' || st == 'Z' }

func (s *Sim) apply(pin, st byte) {
	if s.phys[pin] != st {
		s.phys[pin] = st
		s.event(fmt.Sprintf("%c %c", pin, st))
	}
}

func (s *Sim) setPower(on bool) {
	if s.power != on {
		s.power = on
		if on {
			s.event("power 1")
		} else {
			s.event("power 0")
		}
	}
}

func (s *Sim) applyStored() {
	for _, p := range []byte("abcdr") {
		s.apply(p, s.stored[p])
	}
}

func (s *Sim) floatNotOffTolerant() {
	for _, p := range []byte("abcdr") {
		if !offTolerant(s.stored[p]) {
			s.apply(p, 'Z')
		}
	}
}

func empty(seq []byte) bool { return len(seq) == 0 || seq[0] == 0 }

// powerOn applies the stored pins, then runs seq (or just closes the power
// switch when seq is empty), and marks the board on.
func (s *Sim) powerOn(seq []byte) {
	s.applyStored()
	if empty(seq) {
		s.setPower(true)
	} else {
		s.runSequence(seq)
	}
	s.on = true
}

// powerOff runs seq (or just opens the power switch when seq is empty),
// floats the pins that must not drive an unpowered board, and marks the
// board off.
func (s *Sim) powerOff(seq []byte) {
	if empty(seq) {
		s.floatNotOffTolerant()
		s.setPower(false)
	} else {
		s.runSequence(seq)
		s.floatNotOffTolerant()
	}
	s.on = false
}

// runSequence runs a power sequence as the firmware reads it from its
// fixed-size, NUL-padded config field: comma-separated ops p1/p0 (power
// switch), <pin><l|h|z> (pins a-d, r), wN (wait N x 100 ms); letters in
// any case, unknown ops skipped.
func (s *Sim) runSequence(seq []byte) {
	p := 0
	for p+1 < len(seq) {
		ch := lower(seq[p])
		p++
		switch ch {
		case 0:
			return
		case 'a', 'b', 'c', 'd', 'r':
			s.apply(ch, pinState(seq[p]))
			p++
		case 'w':
			n := 0
			for p < len(seq) && seq[p] >= '0' && seq[p] <= '9' {
				n = n*10 + int(seq[p]-'0')
				p++
			}
			s.sleep(time.Duration(n) * 100 * time.Millisecond)
		case 'p':
			pw := seq[p]
			p++
			if pw == '1' {
				s.powerOn(nil)
			} else {
				s.powerOff(nil)
			}
		}
	}
}

func pinState(c byte) byte {
	switch lower(c) {
	case 'h':
		return 'H'
	case 'l':
		return 'L'
	}
	return 'Z'
}

func (s *Sim) setConfig(args string) string {
	const usage = "usage: set-config name|tags|storage|usb_storage value"
	// Split on ASCII white space only, as the firmware does.
	f := strings.FieldsFunc(args, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f'
	})
	if len(f) == 0 {
		return usage
	}
	key, val := f[0], ""
	if len(f) > 1 {
		val = f[1]
	}
	field, ok := s.config[key]
	if !ok {
		return usage
	}
	setField(field, val)
	return "Set " + key + " to " + val
}

func (s *Sim) getConfig(args string) string {
	if args == "" {
		var b strings.Builder
		for i, k := range configKeys {
			if i > 0 {
				b.WriteString("\r\n")
			}
			b.WriteString(k.key + ": " + cString(s.config[k.key]))
		}
		return b.String()
	}
	if f, ok := s.config[args]; ok {
		return cString(f)
	}
	return "usage: get-config [name|tags|json|usb_console|power_on|power_off|power_rescue]"
}
