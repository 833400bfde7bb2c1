package cmd

import (
	"fmt"
	"testing"

	"github.com/jsplan/jsplan/drivers/dutlink/dutlinktest"
)

// TestConsoleDUTLink attaches to a board behind a simulated DUTLink harness
// (its real protocol on a pty): power on and cycle through the harness,
// typing through its console mode, and Ctrl-B five times (the harness's own
// escape) reaching the board without ending the session.
func TestConsoleDUTLink(t *testing.T) {
	board, err := dutlinktest.NewBoard(dutlinktest.BoardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := dutlinktest.New(dutlinktest.Options{DUT: board})
	if err != nil {
		t.Fatal(err)
	}
	board.Follow(sim)
	t.Cleanup(func() {
		sim.Close()
		board.Close()
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
