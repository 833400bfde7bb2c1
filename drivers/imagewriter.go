package drivers

import (
	"context"

	"github.com/jsplan/jsplan/internal/flash"
)

// ImageWriter is an optional Storage extension for storage that is not on
// this host (a board served by an agent): the driver writes the image
// itself, wherever the medium is, with internal/flash's options and result
// and its error classes (flash.ErrImage, flash.ErrChecksum, ...). The
// flash step and `jsplan flash --board` use it instead of AttachHost,
// flash.Write and AttachBoard. Fallback: those three, here.
type ImageWriter interface {
	WriteImage(ctx context.Context, opts flash.Options) (flash.Result, error)
}
