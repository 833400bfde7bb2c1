package cmd

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers/dutlink/dutlinktest"
)

// uartBoard plays a board behind a DUTLink harness: a boot loader that
// echoes what it is typed, answers "hello" and prints its banner each time
// the harness switches the power on.
type uartBoard struct {
	outR, inR *io.PipeReader
	outW, inW *io.PipeWriter
	mu        sync.Mutex // serialises what the board prints
}

func newUARTBoard() *uartBoard {
	b := &uartBoard{}
	b.outR, b.outW = io.Pipe()
	b.inR, b.inW = io.Pipe()
	return b
}

// Read is what the board prints (the harness reads it); Write is what the
// harness sends to it.
func (b *uartBoard) Read(p []byte) (int, error)  { return b.outR.Read(p) }
func (b *uartBoard) Write(p []byte) (int, error) { return b.inW.Write(p) }

func (b *uartBoard) print(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, _ = b.outW.Write([]byte(s))
}

func (b *uartBoard) run(sim *dutlinktest.Sim, stop chan struct{}) {
	go func() {
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
					b.print("\r\nboard says hi\r\n=> ")
				} else {
					b.print("\r\n=> ")
				}
				line = line[:0]
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		boots := 0
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			on := 0
			for _, ev := range sim.Events() {
				if ev.What == "power 1" {
					on++
				}
			}
			for ; boots < on; boots++ {
				// The harness enters console mode again after its power
				// command; a real boot loader takes longer than that.
				time.Sleep(300 * time.Millisecond)
				b.print(fmt.Sprintf("\r\nU-Boot 2024.01-sim (boot %d)\r\n=> ", boots+1))
			}
		}
	}()
}

// TestConsoleDUTLink attaches to a board behind a simulated DUTLink harness
// (its real protocol on a pty): power on and cycle through the harness,
// typing through its console mode, and Ctrl-B five times (the harness's own
// escape) reaching the board without ending the session.
func TestConsoleDUTLink(t *testing.T) {
	board := newUARTBoard()
	sim, err := dutlinktest.New(dutlinktest.Options{DUT: board})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	board.run(sim, stop)
	t.Cleanup(func() {
		close(stop)
		sim.Close()
		board.outW.Close()
		board.inR.Close()
	})
	e := newEnv(t)
	e.boards = e.write("dutlink.yaml", fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: dl-1
    drivers:
      dutlink: {port: %s}
`, sim.Path()))
	p := e.startTerm(e.consoleArgs("dl-1", "--power-on", "--delay", "100ms")...)
	p.expect("attached to the console of dl-1", consoleWait)
	p.expect("U-Boot 2024.01-sim (boot 1)", consoleWait)
	p.expect("=> ", consoleWait)
	p.send("hello\r")
	p.expect("board says hi", consoleWait)
	p.send("\x02\x02\x02\x02\x02\x02hello\r")
	p.expect("board says hi", consoleWait)

	p.send("\r~c")
	p.expect("dl-1: power cycle: done", consoleWait)
	p.expect("U-Boot 2024.01-sim (boot 2)", consoleWait)
	p.send("\r~s")
	p.expect("dl-1: power state: unknown (the power driver cannot tell)", consoleWait)
	p.send("\r~.")
	p.expect("detached from dl-1", consoleWait)
	if code := p.wait(consoleWait); code != 0 {
		t.Fatalf("exit status %d\n%s", code, p.tail())
	}
	p.requireSane()
	e.requireFree("dl-1")
}
