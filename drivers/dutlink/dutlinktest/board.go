package dutlinktest

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
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
type Board struct {
	opts      BoardOptions
	outR, inR *io.PipeReader
	outW, inW *io.PipeWriter
	mu        sync.Mutex // serialises what the board prints

	closeOnce sync.Once
	stop      chan struct{}
}

// NewBoard returns a board, powered off.
func NewBoard(opts BoardOptions) *Board {
	b := &Board{opts: opts, stop: make(chan struct{})}
	b.outR, b.outW = io.Pipe()
	b.inR, b.inW = io.Pipe()
	go b.lineEditor()
	return b
}

// Read is what the board prints (the harness reads it from its UART).
func (b *Board) Read(p []byte) (int, error) { return b.outR.Read(p) }

// Write is what the harness sends to the board's UART.
func (b *Board) Write(p []byte) (int, error) { return b.inW.Write(p) }

// Close stops following the harness and ends the board's UART: the
// simulator's reader of it sees EOF.
func (b *Board) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		b.outW.Close()
		b.inR.Close()
	})
	return nil
}

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
// closed: each power on of the harness boots it.
func (b *Board) Follow(s *Sim) {
	go func() {
		boots := 0
		for {
			select {
			case <-b.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			on := 0
			for _, ev := range s.Events() {
				if ev.What == "power 1" {
					on++
				}
			}
			for ; boots < on; boots++ {
				time.Sleep(bootTime)
				b.print(fmt.Sprintf("\r\nU-Boot 2024.01-sim (boot %d)\r\nboot %d: image %s\r\n%s", boots+1, boots+1, b.image(), BootLoaderPrompt))
			}
		}
	}()
}
