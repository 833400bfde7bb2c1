// Command flashcmd writes an image with flash.Write; the bench script times
// it. Usage: flashcmd [-bmap F] [-no-bmap] [-sha256 H] [-verify] [-q] IMAGE TARGET
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/jsplan/jsplan/internal/flash"
)

func main() {
	var opts flash.Options
	quiet := flag.Bool("q", false, "no progress output")
	flag.StringVar(&opts.Bmap, "bmap", "", "bmap file (default: found next to the image)")
	flag.BoolVar(&opts.NoBmap, "no-bmap", false, "ignore any bmap")
	flag.StringVar(&opts.SHA256, "sha256", "", "expected sha256 of the image file")
	flag.BoolVar(&opts.Verify, "verify", false, "read back and compare")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: flashcmd [flags] IMAGE TARGET")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	opts.Image = flag.Arg(0)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flashcmd:", err)
			os.Exit(2)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if !*quiet {
		opts.Progress = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := flash.Write(ctx, flag.Arg(1), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashcmd:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "format %s, decoder %s, bmap %q, image %d, mapped %d, written %d, %v\n",
			res.Format, res.Decoder, res.UsedBmap, res.ImageSize, res.Mapped, res.BytesWritten, res.Duration)
	}
}
