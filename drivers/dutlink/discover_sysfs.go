//go:build !usb

package dutlink

import (
	"context"

	"github.com/jsplan/jsplan/drivers"
)

// discover lists attached harnesses. This build reads sysfs (pure Go);
// build with -tags usb to enumerate through libusb instead.
func discover(ctx context.Context) ([]drivers.Found, error) { return discoverSysfs(ctx) }
