package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// flashAction writes an image to the board's storage.
type flashAction struct {
	Image  string `yaml:"image"`
	Bmap   string `yaml:"bmap,omitempty"`
	SHA256 string `yaml:"sha256,omitempty"`
	Verify bool   `yaml:"verify,omitempty"`
}

func init() {
	engine.Register(engine.StepType{
		Name:    "flash",
		Summary: "Write an image (raw or compressed, optionally with a bmap) to the board's storage, checked and verified.",
		Schema: shortOr(obj{"type": "string"}, object(obj{
			"image":  str("Path of the image on the host (relative to the plan); gzip, xz, zstd and bzip2 are detected by content."),
			"bmap":   str("Path of a bmaptool block map (default: found next to the image)."),
			"sha256": obj{"type": "string", "pattern": "^([0-9a-fA-F]{64}|\\s*\\$\\{\\{[^}]*\\}\\}\\s*)$", "description": "Expected SHA-256 of the image file."},
			"verify": described(ref("bool"), "Read the storage back after writing and compare."),
		}, "image")),
		Needs:          []drivers.Capability{drivers.CapStorage},
		DefaultTimeout: time.Hour,
		Decode: func(dc *engine.DecodeContext, n *yaml.Node) engine.Action {
			a := &flashAction{}
			if !scalarOr(dc, n, &a.Image, a) {
				return nil
			}
			a.Image = dc.LocalPath(a.Image)
			a.Bmap = dc.LocalPath(a.Bmap)
			if dc.Mode() == engine.ModeRun && !dc.Pending(a.Image) {
				if _, err := os.Stat(a.Image); err != nil {
					node := n
					if c := dc.Child(n, "image"); c != nil {
						node = c
					}
					dc.Errorf(node, "image", "image %s: %v", a.Image, cleanErr(err))
					return nil
				}
			}
			return a
		},
	})
}

func cleanErr(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

func (a *flashAction) Run(ctx context.Context, r *engine.Run) error {
	st, err := r.Board().Storage()
	if err != nil {
		return err
	}
	target, err := st.AttachHost(ctx)
	if err != nil {
		return infra(err)
	}
	r.Logf(ctx, "writing %s to %s", a.Image, target)
	res, werr := writeImage(ctx, target, a)
	if err := st.AttachBoard(ctx); err != nil && werr == nil {
		werr = infra(err)
	}
	if werr != nil {
		return werr
	}
	r.Logf(ctx, "%s", res)
	return nil
}

// writeImage streams the image to the target, checking its SHA-256.
func writeImage(ctx context.Context, target string, a *flashAction) (string, error) {
	start := time.Now()
	in, err := os.Open(a.Image)
	if err != nil {
		return "", diag.Infraf("image: %v", err)
	}
	defer in.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return "", diag.Infraf("storage: %v", err)
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(out, io.TeeReader(&ctxReader{ctx, in}, h), make([]byte, 4<<20))
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", target, err)
	}
	if err := out.Truncate(n); err != nil {
		if st, _ := out.Stat(); st == nil || st.Mode().IsRegular() {
			return "", diag.Infraf("storage: %v", err)
		}
	}
	if err := out.Sync(); err != nil {
		return "", diag.Infraf("storage: sync: %v", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if a.SHA256 != "" && !strings.EqualFold(sum, a.SHA256) {
		return "", diag.Failf("image checksum mismatch: expected sha256 %s, got %s", strings.ToLower(a.SHA256), sum)
	}
	d := time.Since(start)
	return fmt.Sprintf("wrote %d bytes in %s (%.1f MB/s)", n, d.Round(time.Millisecond), float64(n)/1e6/d.Seconds()), nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// Title implements engine.Titler.
func (a *flashAction) Title() string { return filepath.Base(a.Image) }
