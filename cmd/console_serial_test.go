package cmd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// TestConsoleSerial attaches to a board on a serial line (a pty standing in
// for a USB-UART): typing reaches the board and its answers show; the board
// has no power driver, which the menu says.
func TestConsoleSerial(t *testing.T) {
	boardSide, uart, err := pty.Open() // the board holds the master; the host opens the slave
	if err != nil {
		t.Fatal(err)
	}
	defer boardSide.Close()
	if _, err := term.MakeRaw(int(uart.Fd())); err != nil {
		t.Fatal(err)
	}
	uartPath := uart.Name()
	defer uart.Close() // held open, as the adapter's line stays up between openers
	go func() {
		var line []byte
		b := make([]byte, 256)
		for {
			n, err := boardSide.Read(b)
			for _, c := range b[:n] {
				switch {
				case c == '\r':
					reply := "\r\n# "
					if s := string(line); strings.HasPrefix(s, "uname") {
						reply = "\r\nLinux serial-board\r\n# "
					}
					_, _ = boardSide.Write([]byte(reply))
					line = line[:0]
				case c >= ' ':
					line = append(line, c)
					_, _ = boardSide.Write([]byte{c})
				}
			}
			if err != nil {
				return
			}
		}
	}()
	e := newEnv(t)
	e.boards = e.write("serial.yaml", fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: uart-1
    drivers:
      serial: {port: %s, baud: 115200}
`, uartPath))
	p := e.startTerm(e.consoleArgs("uart-1")...)
	p.expect("attached to the console of uart-1", consoleWait)
	p.send("uname\r")
	p.expect("Linux serial-board", consoleWait)
	p.send("\r~c")
	p.expect("power cycle: board uart-1 has no power driver", consoleWait)
	p.send("\r~.")
	p.expect("detached from uart-1", consoleWait)
	if code := p.wait(consoleWait); code != 0 {
		t.Fatalf("exit status %d\n%s", code, p.tail())
	}
	p.requireSane()
	e.requireFree("uart-1")
}
