package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/internal/flash"
)

func flashCommand() *cli.Command {
	return &cli.Command{
		Name:      "flash",
		Usage:     "write an image to a file or block device (the pipeline the flash step uses)",
		ArgsUsage: "IMAGE TARGET | IMAGE --board BOARD",
		Description: "Raw, gzip, xz, zstd and bzip2 images (detected by content) are streamed, never\n" +
			"unpacked to disk; with a bmap (found next to the image, or --bmap) only mapped blocks\n" +
			"are written and checked. Refuses mounted devices and the running system's disk.\n\n" +
			"Exit status: 0 written, 1 bad image or checksum, 2 usage, 3 target error.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bmap", Usage: "bmaptool block map `FILE`"},
			&cli.BoolFlag{Name: "no-bmap", Usage: "ignore any bmap; write every block"},
			&cli.StringFlag{Name: "sha256", Usage: "expected SHA-256 of the image file (`HEX`)"},
			&cli.BoolFlag{Name: "verify", Usage: "read the target back and compare"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors (the exit status tells)"},
			&cli.StringFlag{Name: "board", Usage: "write the storage of `BOARD` (under its lock; a remote board's agent writes it)"},
			boardsFlag, lockDirFlag, lockWaitFlag, stateDirFlag,
		},
		Action: func(c *cli.Context) error {
			if c.String("board") != "" && c.NArg() == 1 {
				return flashBoard(c)
			}
			if c.NArg() != 2 {
				return exit(2, "flash needs IMAGE and TARGET\nRun 'jsplan flash --help' for usage.")
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			opts := flash.Options{Image: c.Args().Get(0), Bmap: c.String("bmap"), NoBmap: c.Bool("no-bmap"),
				SHA256: c.String("sha256"), Verify: c.Bool("verify")}
			if !c.Bool("quiet") {
				opts.Progress = os.Stderr
			}
			res, err := flash.Write(ctx, c.Args().Get(1), opts)
			switch {
			case err == nil:
			case errors.Is(err, flash.ErrImage), errors.Is(err, flash.ErrBmap), errors.Is(err, flash.ErrChecksum),
				errors.Is(err, flash.ErrVerify):
				return exit(1, "%v", err)
			case ctx.Err() != nil:
				return exit(130, "interrupted: %v", err)
			default:
				return exit(3, "%v", err)
			}
			if c.Bool("quiet") {
				return nil
			}
			msg := fmt.Sprintf("wrote %s image, %d bytes (%d written) in %s", res.Format, res.ImageSize, res.BytesWritten, res.Duration)
			if opts.SHA256 != "" {
				msg += "; sha256 matches"
			}
			if res.Verified {
				msg += "; verified: the target reads back as the image"
			}
			fmt.Fprintln(c.App.Writer, msg)
			return nil
		},
	}
}
