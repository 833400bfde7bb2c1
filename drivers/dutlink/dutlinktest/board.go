package dutlinktest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
	"github.com/jsplan/jsplan/drivers/sim"
)

// BootLoaderPrompt is the prompt of a Board's boot loader.
const BootLoaderPrompt = "=> "

// bootTime is how long a Board takes from power on to its banner: the
// harness enters console mode again after its power command, and a real
// boot loader takes longer than that.
const bootTime = 300 * time.Millisecond

// BoardOptions configure a Board.
type BoardOptions struct {
	// Medium is the file that holds the board's storage medium: the
	// harness's Options.MediumPath. At each power on the board reads the
	// image id from it (the token after JSPLAN_IMAGE_ID=). Empty: the
	// board has no storage and its image is "none".
	Medium string
	// Linux, when set, makes the boot loader boot the image on the
	// medium instead of prompting: a Linux-like system with a boot log, a
	// login prompt and a real shell (drivers/sim's virtual board).
	Linux *Linux
}

// Linux is the system a Board boots: drivers/sim's virtual board, whose
// storage is the Board's medium. Its boot log names the image (the token
// after JSPLAN_IMAGE_ID=, or a hash of the medium), it offers a login
// prompt, and a correct login starts /bin/sh on the console, in a root file
// system of its own where etc/image-id names the booted image (see package
// sim). Power off kills the shell.
type Linux struct {
	// Dir is the system's state directory: root/ (its root file system)
	// and disk.img (a link to the Board's Medium). It is created.
	Dir string
	// Hostname, Username and Password are the login prompt's (defaults:
	// drivers/sim's, "sim", "root" and "demo-password").
	Hostname, Username, Password string
	// BootDelay is the pause between boot log lines (default
	// drivers/sim's).
	BootDelay time.Duration
}

// Board is the device under test behind a simulated harness: pass it as
// Options.DUT, then call Follow with the simulator, so that it powers on
// and off with the harness's power switch.
//
// At each power on it prints the banner of a boot loader,
//
//	U-Boot 2024.01-sim (boot N)
//	boot N: image ID
//	=>
//
// where N counts the power-ons and ID is the image on its medium (what
// was flashed through the harness's storage mux). The boot loader's line
// editor echoes what it is typed (control keys are ignored, Enter is '\r'),
// answers the line "hello" with "board says hi", and prompts again.
//
// With BoardOptions.Linux the banner's last line is "Starting kernel ..."
// instead of the prompt, and the system boots (see Linux); what the harness
// sends while the board is off or in its boot loader is lost.
type Board struct {
	opts      BoardOptions
	outR, inR *io.PipeReader
	outW, inW *io.PipeWriter
	mu        sync.Mutex // serialises what the board prints

	linux   *sim.Device        // the booted system (Linux mode)
	con     io.ReadWriteCloser // its console
	running atomic.Bool        // the system runs: input goes to it

	closeOnce sync.Once
	stop      chan struct{}
	done      sync.WaitGroup
}

// NewBoard returns a board, powered off.
func NewBoard(opts BoardOptions) (*Board, error) {
	b := &Board{opts: opts, stop: make(chan struct{})}
	if l := opts.Linux; l != nil {
		if err := b.openLinux(l); err != nil {
			return nil, err
		}
	}
	b.outR, b.outW = io.Pipe()
	b.inR, b.inW = io.Pipe()
	go b.lineEditor()
	if b.con != nil {
		b.done.Add(1)
		go b.relay()
	}
	return b, nil
}

// openLinux prepares the system the board boots.
func (b *Board) openLinux(l *Linux) error {
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return err
	}
	if b.opts.Medium != "" {
		medium, err := filepath.Abs(b.opts.Medium)
		if err != nil {
			return err
		}
		disk := filepath.Join(l.Dir, "disk.img")
		_ = os.Remove(disk)
		if err := os.Symlink(medium, disk); err != nil {
			return err
		}
	}
	d := &sim.Device{Hostname: l.Hostname, Username: l.Username, Password: l.Password}
	if l.BootDelay > 0 {
		bd := cfg.Duration(l.BootDelay)
		d.BootDelay = &bd
	}
	ctx := context.Background()
	if err := d.Open(ctx, drivers.Env{Board: "dutlinktest", StateDir: l.Dir}); err != nil {
		return err
	}
	con, err := d.OpenConsole(ctx)
	if err != nil {
		d.Close()
		return err
	}
	b.linux, b.con = d, con
	return nil
}

// relay passes what the system prints to the board's UART.
func (b *Board) relay() {
	defer b.done.Done()
	buf := make([]byte, 4096)
	for {
		n, err := b.con.Read(buf)
		if n > 0 {
			b.print(string(buf[:n]))
		}
		if err != nil {
			return
		}
	}
}

// Read is what the board prints (the harness reads it from its UART).
func (b *Board) Read(p []byte) (int, error) { return b.outR.Read(p) }

// Write is what the harness sends to the board's UART.
func (b *Board) Write(p []byte) (int, error) {
	if b.linux == nil {
		return b.inW.Write(p)
	}
	if b.running.Load() {
		if _, err := b.con.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Close stops following the harness, powers the system off and ends the
// board's UART: the simulator's reader of it sees EOF.
func (b *Board) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		if b.linux != nil {
			b.running.Store(false)
			b.linux.Close()
			b.con.Close()
		}
		b.done.Wait()
		b.outW.Close()
		b.inR.Close()
	})
	return nil
}

// Booted reports whether the system (Linux mode) runs: the board was
// powered on and has not been powered off since.
func (b *Board) Booted() bool { return b.running.Load() }

func (b *Board) print(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, _ = b.outW.Write([]byte(s))
}

var imageIDToken = regexp.MustCompile(`JSPLAN_IMAGE_ID=(\S+)`)

// image is the id of the image on the board's medium, or "none".
func (b *Board) image() string {
	if b.opts.Medium == "" {
		return "none"
	}
	data, err := os.ReadFile(b.opts.Medium)
	if err != nil {
		return "none"
	}
	if m := imageIDToken.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return "none"
}

// lineEditor is the boot loader's line editor.
func (b *Board) lineEditor() {
	var line []byte
	buf := make([]byte, 256)
	for {
		n, err := b.inR.Read(buf)
		for _, c := range buf[:n] {
			if c < ' ' && c != '\r' {
				continue // control keys: ignored, as a boot loader's line editor does
			}
			if c != '\r' {
				line = append(line, c)
				b.print(string(c))
				continue
			}
			if strings.TrimSpace(string(line)) == "hello" {
				b.print("\r\nboard says hi\r\n" + BootLoaderPrompt)
			} else {
				b.print("\r\n" + BootLoaderPrompt)
			}
			line = line[:0]
		}
		if err != nil {
			return
		}
	}
}

// Follow makes the board follow s's power switch until the board is
// closed: each power on of the harness boots it, each power off stops the
// system (Linux mode).
func (b *Board) Follow(s *Sim) {
	b.done.Add(1)
	go func() {
		defer b.done.Done()
		seen, boots := 0, 0
		for {
			select {
			case <-b.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			evs := s.Events()
			for ; seen < len(evs); seen++ {
				switch evs[seen].What {
				case "power 1":
					boots++
					b.boot(boots)
				case "power 0":
					if b.linux != nil {
						b.running.Store(false)
						_ = b.linux.Off(context.Background())
					}
				}
			}
		}
	}()
}

// boot is power on number n.
func (b *Board) boot(n int) {
	select {
	case <-b.stop:
		return
	case <-time.After(bootTime):
	}
	banner := fmt.Sprintf("\r\nU-Boot 2024.01-sim (boot %d)\r\nboot %d: image %s\r\n", n, n, b.image())
	if b.linux == nil {
		b.print(banner + BootLoaderPrompt)
		return
	}
	b.print(banner + "Starting kernel ...\r\n")
	if err := b.linux.On(context.Background()); err != nil {
		b.print(fmt.Sprintf("boot failed: %v\r\n", err))
		return
	}
	b.running.Store(true)
}
