package driver

import (
	"os"
	"syscall"
	"testing"
)

// The container's device node keeps the host node's group and mode: a
// runtime creates it owned by root otherwise, and the run's user (in
// dialout, plugdev or disk) could not open its own board's device.
func TestCDIDeviceNodeKeepsGroupAndMode(t *testing.T) {
	for _, p := range []string{"/dev/null", "/dev/tty"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Skip(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := cdiDeviceNode(DeviceNode{Path: "/dev/serial/by-id/x", HostPath: p})
		if n.Path != "/dev/serial/by-id/x" || n.HostPath != p {
			t.Errorf("%s: paths %q %q", p, n.Path, n.HostPath)
		}
		if n.GID == nil || *n.GID != st.Gid {
			t.Errorf("%s: GID %v, want %d", p, n.GID, st.Gid)
		}
		if n.FileMode == nil || *n.FileMode != os.FileMode(st.Mode&0o7777) {
			t.Errorf("%s: mode %v, want %o", p, n.FileMode, st.Mode&0o7777)
		}
	}
	if n := cdiDeviceNode(DeviceNode{Path: "/dev/gone", HostPath: "/nonexistent"}); n.GID != nil || n.FileMode != nil {
		t.Errorf("a node that is gone got %v %v", n.GID, n.FileMode)
	}
}

// A pseudo-terminal is never put into a CDI spec: runc cannot create it in
// the container's own devpts and the container would not start.
func TestPseudoTerminalsStayOutOfContainers(t *testing.T) {
	for p, want := range map[string]bool{"/dev/pts/3": true, "/dev/ptmx": true, "/dev/ttyUSB0": false, "/dev/loop0": false, "/dev/bus/usb/001/004": false} {
		if got := containerless(DeviceNode{Path: "/dev/serial/by-id/x", HostPath: p}); got != want {
			t.Errorf("%s: containerless %v, want %v", p, got, want)
		}
	}
}
