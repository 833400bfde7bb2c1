//go:build linux

package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShareRelativeIsABus checks a relative share is the inventory's
// directory, created when missing, and that the board reaches it at
// /mnt/BASENAME too: what one board writes there, another reads.
func TestShareRelativeIsABus(t *testing.T) {
	if err := sandboxUsable(); err != nil {
		t.Skipf("/mnt is the board's only in its sandbox: %v", err)
	}
	a := newBoard(t, "boot-delay: 0s\nshare: [bus/can0]\n")
	bus := filepath.Join(a.state, "bus", "can0")
	if fi, err := os.Stat(bus); err != nil || !fi.IsDir() {
		t.Fatalf("the share was not created: %v", err)
	}
	a.on()
	a.login()
	a.run("echo frame-42 > /mnt/can0/frame")
	b, err := os.ReadFile(filepath.Join(bus, "frame"))
	if err != nil || string(b) != "frame-42\n" {
		t.Fatalf("the board's write through /mnt/can0 did not reach the shared directory: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(bus, "reply"), []byte("ack-7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := a.run("cat " + bus + "/reply"); !strings.Contains(out, "ack-7") {
		t.Errorf("the board does not see the share at its own path: %q", out)
	}
}

// TestShareValidate checks the paths a share may not be.
func TestShareValidate(t *testing.T) {
	for _, bad := range []string{"/", ".", "", "a:b"} {
		d := decode(t, "share: ["+quote(bad)+"]\n")
		if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "share") {
			t.Errorf("share %q: Validate = %v, want an error on share", bad, err)
		}
	}
}

func quote(s string) string { return `"` + s + `"` }
