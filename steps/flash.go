package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/internal/flash"
)

// flashAction writes an image to the board's storage.
type flashAction struct {
	Image  string      `yaml:"image"`
	Bmap   string      `yaml:"bmap,omitempty"`
	SHA256 string      `yaml:"sha256,omitempty"`
	Verify engine.Bool `yaml:"verify,omitempty"`
}

func init() {
	engine.Register(engine.StepType{
		Name:    "flash",
		Config:  flashAction{},
		Summary: "Write an image (raw or compressed, optionally with a bmap) to the board's storage, checked and verified.",
		Schema: shortOr(obj{"type": "string"}, object(obj{
			"image":  str("Path of the image on the host (relative to the plan); gzip, xz, zstd and bzip2 are detected by content."),
			"bmap":   str("Path of a bmaptool block map (default: found next to the image; none: write every block)."),
			"sha256": obj{"type": "string", "pattern": "^([0-9a-fA-F]{64}|\\s*\\$\\{\\{[^}]*\\}\\}\\s*)$", "description": "the SHA-256 of the image file as 64 hex digits (or a reference)"},
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
			if a.Bmap != "none" {
				a.Bmap = dc.LocalPath(a.Bmap)
			}
			if sum := strings.TrimSpace(a.SHA256); sum != "" && !dc.Pending(sum) {
				// a reference resolved to something that is no checksum: a
				// plan error, before anything runs
				if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
					dc.Errorf(dc.Child(n, "sha256"), "sha256", "sha256 %q is not 64 hex digits", a.SHA256).
						WithDetail("give the SHA-256 of the image file, as sha256sum prints it, or leave it empty to skip the check")
					return nil
				}
			}
			if !dc.CheckFile(n, "image", a.Image) {
				return nil
			}
			return a
		},
	})
}

func (a *flashAction) Run(ctx context.Context, r *engine.StepRun) error {
	st, err := r.Board().Storage()
	if err != nil {
		return err
	}
	if iw, ok := st.(drivers.ImageWriter); ok {
		r.Logf("writing %s to the board's storage through its driver", a.Image)
		res, err := writeImage(ctx, r, "the board's storage", a, iw.WriteImage)
		if err != nil {
			return err
		}
		r.Output(res)
		return nil
	}
	target, err := st.AttachHost(ctx)
	if err != nil {
		return infra(err)
	}
	r.Logf("writing %s to %s", a.Image, target)
	res, werr := writeImage(ctx, r, target, a, func(ctx context.Context, opts flash.Options) (flash.Result, error) {
		return flash.Write(ctx, target, opts)
	})
	if err := st.AttachBoard(ctx); err != nil && werr == nil {
		werr = infra(err)
	}
	if werr != nil {
		return werr
	}
	r.Output(res)
	return nil
}

// writeImage writes the image through the flash pipeline and maps its
// errors to classes: a bad image or checksum fails the test; a target that
// cannot be written is infrastructure.
func writeImage(ctx context.Context, r *engine.StepRun, target string, a *flashAction, write func(context.Context, flash.Options) (flash.Result, error)) (string, error) {
	opts := flash.Options{Image: a.Image, Bmap: a.Bmap, SHA256: a.SHA256, Verify: a.Verify.Value,
		Progress: &logLines{r: r}}
	if a.Bmap == "none" {
		opts.Bmap, opts.NoBmap = "", true
	}
	res, err := write(ctx, opts)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return "", context.Cause(ctx)
		case errors.Is(err, flash.ErrImage), errors.Is(err, flash.ErrBmap), errors.Is(err, flash.ErrChecksum),
			errors.Is(err, flash.ErrVerify):
			return "", diag.Fail(err)
		}
		return "", &diag.ClassError{C: diag.Infra, Err: err}
	}
	r.Image(engine.Image{Path: a.Image, Format: res.Format, Size: res.ImageSize, SHA256: res.SHA256})
	msg := fmt.Sprintf("wrote %s image (%s) to %s: %d of %d bytes in %s (%.0f MB/s)", res.Format,
		humanBytes(res.ImageSize), target, res.BytesWritten, res.ImageSize, res.Duration.Round(time.Millisecond),
		float64(res.ImageSize)/1e6/max(res.Duration.Seconds(), 1e-6))
	if res.UsedBmap != "" {
		msg += ", bmap " + filepath.Base(res.UsedBmap)
	}
	if res.Verified {
		msg += ", verified"
	}
	return msg, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// logLines turns progress lines into run log lines.
type logLines struct {
	r    *engine.StepRun
	part []byte
}

func (w *logLines) Write(p []byte) (int, error) {
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexAny(w.part, "\r\n")
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.part[:i])); line != "" {
			w.r.Logf("%s", line)
		}
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

// Title implements engine.Titler.
func (a *flashAction) Title() string { return filepath.Base(a.Image) }
