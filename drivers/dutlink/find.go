package dutlink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/jsplan/jsplan/drivers"
)

// USB identity of the harness (the firmware's main.rs).
const (
	usbVendor  = "2b23"
	usbProduct = "1012"
)

// usbBoard is a harness seen on the USB bus.
type usbBoard struct {
	Serial  string
	Version string // firmware version from bcdDevice, e.g. "0.08"
	TTY     string // control port, e.g. /dev/ttyACM0 ("" when none yet)
	SysPath string
}

// scanSysfs lists the harnesses under sysRoot/bus/usb/devices, reading the
// attributes the kernel exports (no libusb, no cgo). The control port is
// the tty of the CDC-ACM interface <dev>:1.0.
func scanSysfs(sysRoot, devDir string) ([]usbBoard, error) {
	dir := filepath.Join(sysRoot, "bus", "usb", "devices")
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []usbBoard
	for _, de := range des {
		name := de.Name()
		if strings.Contains(name, ":") {
			continue // an interface, not a device
		}
		p := filepath.Join(dir, name)
		if attr(p, "idVendor") != usbVendor || attr(p, "idProduct") != usbProduct {
			continue
		}
		b := usbBoard{Serial: attr(p, "serial"), Version: bcdVersion(attr(p, "bcdDevice")), SysPath: p}
		ttys, _ := os.ReadDir(filepath.Join(p, name+":1.0", "tty"))
		for _, t := range ttys {
			if strings.HasPrefix(t.Name(), "tty") {
				b.TTY = filepath.Join(devDir, t.Name())
				break
			}
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return out, nil
}

func attr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// bcdVersion turns bcdDevice ("0008": major 0x00, minor 0x08 in BCD, as
// the firmware's version.rs encodes "0.08") into "0.08".
func bcdVersion(bcd string) string {
	if len(bcd) != 4 {
		return bcd
	}
	major, err := strconv.ParseUint(bcd[:2], 16, 8)
	if err != nil {
		return bcd
	}
	return fmt.Sprintf("%x.%s", major, bcd[2:])
}

// foundBoards turns scanned boards into inventory entries.
func foundBoards(boards []usbBoard) []drivers.Found {
	var found []drivers.Found
	for _, b := range boards {
		desc := "DUTLink harness, firmware " + b.Version
		if b.TTY != "" {
			desc += ", control port " + b.TTY
		}
		found = append(found, drivers.Found{
			Driver:      Name,
			ID:          b.Serial,
			Description: desc,
			Config:      map[string]any{"serial-number": b.Serial},
		})
	}
	return found
}

// discoverSysfs lists the attached harnesses through sysfs.
func discoverSysfs(ctx context.Context) ([]drivers.Found, error) {
	boards, err := scanSysfs("/sys", "/dev")
	if err != nil {
		return nil, drivers.Errorf(Name, "discover", "%w", err)
	}
	return foundBoards(boards), nil
}
