//go:build usb

package dutlink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/gousb"

	"github.com/jsplan/jsplan/drivers"
)

// discover lists attached harnesses through libusb (this build has cgo and
// the usb tag). Control ports are still looked up in sysfs, which libusb
// does not know about.
func discover(ctx context.Context) ([]drivers.Found, error) {
	boards, err := scanLibusb("/sys", "/dev")
	if err != nil {
		return nil, drivers.Errorf(Name, "discover", "%w", err)
	}
	return foundBoards(boards), nil
}

// scanLibusb enumerates devices 2b23:1012 with libusb and reads their
// serial numbers (which needs opening them; reading descriptors does not
// change the device's state).
func scanLibusb(sysRoot, devDir string) (boards []usbBoard, err error) {
	defer func() {
		// gousb panics when libusb cannot start (no usbfs, e.g. in a
		// container).
		if r := recover(); r != nil {
			err = fmt.Errorf("libusb: %v", r)
		}
	}()
	uctx := gousb.NewContext()
	defer uctx.Close()
	vid, _ := strconv.ParseUint(usbVendor, 16, 16)
	pid, _ := strconv.ParseUint(usbProduct, 16, 16)
	devs, openErr := uctx.OpenDevices(func(desc *gousb.DeviceDesc) bool {
		return uint64(desc.Vendor) == vid && uint64(desc.Product) == pid
	})
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	for _, d := range devs {
		sn, err := d.SerialNumber()
		if err != nil {
			sn = "?"
		}
		b := usbBoard{Serial: sn, Version: d.Desc.Device.String()}
		b.SysPath = filepath.Join(sysRoot, "bus", "usb", "devices", sysfsName(d.Desc))
		base := filepath.Base(b.SysPath)
		ttys, _ := os.ReadDir(filepath.Join(b.SysPath, base+":1.0", "tty"))
		for _, t := range ttys {
			if strings.HasPrefix(t.Name(), "tty") {
				b.TTY = filepath.Join(devDir, t.Name())
				break
			}
		}
		boards = append(boards, b)
	}
	if openErr != nil && len(boards) == 0 {
		return nil, fmt.Errorf("libusb: %w (permissions on /dev/bus/usb?)", openErr)
	}
	sort.Slice(boards, func(i, j int) bool { return boards[i].Serial < boards[j].Serial })
	return boards, nil
}

// sysfsName is the kernel's name of a USB device: bus, then the port path
// joined with dots (e.g. 1-2.5).
func sysfsName(desc *gousb.DeviceDesc) string {
	parts := make([]string, len(desc.Path))
	for i, p := range desc.Path {
		parts[i] = strconv.Itoa(p)
	}
	return fmt.Sprintf("%d-%s", desc.Bus, strings.Join(parts, "."))
}
