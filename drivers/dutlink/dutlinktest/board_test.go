package dutlinktest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lineTerm is a term read up to expected texts.
type lineTerm struct {
	*term
	buf []byte // read and not yet matched
}

// until reads until want arrives and returns what was read up to its end;
// what follows it stays for the next call.
func (c *lineTerm) until(want string) string {
	c.t.Helper()
	b := make([]byte, 4096)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if i := bytes.Index(c.buf, []byte(want)); i >= 0 {
			out := string(c.buf[:i+len(want)])
			c.buf = c.buf[i+len(want):]
			return out
		}
		c.f.SetReadDeadline(deadline)
		n, err := c.f.Read(b)
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			c.t.Fatalf("waiting for %q: %v; got %q", want, err, c.buf)
		}
	}
}

// TestBoardBootsLinux: a Board with a system boots the image on its medium
// at the harness's power on (its boot loader banner names it), offers a
// login prompt on the harness's console, runs a real shell in which
// etc/image-id names the image, and stops at the harness's power off.
func TestBoardBootsLinux(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a simulated board with a shell")
	}
	dir := t.TempDir()
	medium := filepath.Join(dir, "medium.img")
	if err := os.WriteFile(medium, append(make([]byte, 4096), "\nJSPLAN_IMAGE_ID=img-7\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	board, err := NewBoard(BoardOptions{Medium: medium, Linux: &Linux{Dir: filepath.Join(dir, "dut"), Password: "pw-1", BootDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(t, Options{DUT: board, MediumPath: medium, DiskPath: filepath.Join(dir, "disk")})
	board.Follow(s)
	t.Cleanup(func() { board.Close() })
	c := &lineTerm{term: dial(t, s)}

	c.send("power on\r")
	c.expect("power on\r\nDevice powered on\r\n#> ")
	c.send("console\r")
	c.expect("console\r\nEntering console mode, type CTRL+B 5 times to exit\r\n")
	if out := c.until("login: "); !strings.Contains(out, "boot 1: image img-7\r\nStarting kernel ...") {
		t.Errorf("boot log without the boot loader's banner:\n%s", out)
	}
	c.send("root\r")
	c.until("Password: ")
	c.send("pw-1\r")
	c.until("root@sim:~# ")
	c.send("cat etc/image-id; echo rc=$?\r")
	if out := c.until("rc=0"); !strings.Contains(out, "img-7\r\n") {
		t.Errorf("the shell's etc/image-id: %q", out)
	}
	c.until("root@sim:~# ")
	if !board.Booted() {
		t.Error("Booted false with the shell running")
	}
	c.send("\x02\x02\x02\x02\x02")
	c.until("Exiting console mode\r\n#> ")
	c.send("power off\r")
	c.until("#> ")
	waitFor(t, func() bool { return !board.Booted() })
}
