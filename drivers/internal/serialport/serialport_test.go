package serialport

import "testing"

func TestResolvePort(t *testing.T) {
	if got := ResolvePort("usb-X-if00", "/dev/serial/by-id"); got != "/dev/serial/by-id/usb-X-if00" {
		t.Errorf("bare name: %q", got)
	}
	if got := ResolvePort("/dev/ttyACM0", "/dev/serial/by-id"); got != "/dev/ttyACM0" {
		t.Errorf("path: %q", got)
	}
}
