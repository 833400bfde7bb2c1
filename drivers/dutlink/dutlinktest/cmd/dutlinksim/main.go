// Command dutlinksim runs a simulated DUTLink harness on a pty, for trying
// the dutlink driver or a terminal program without hardware:
//
//	go run ./drivers/dutlink/dutlinktest/cmd/dutlinksim -disk /tmp/dl/disk -medium /tmp/dl/medium.img
//
// It prints the harness's control port (use it as the driver's `port`) and
// the simulated board's UART, a second pty that a terminal program
// (picocom, screen) can open to play the board. It runs until interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jsplan/jsplan/drivers/dutlink/dutlinktest"
	"github.com/jsplan/jsplan/drivers/internal/ptyutil"
)

func main() {
	disk := flag.String("disk", "", "path where the storage appears for the host (a by-id style link)")
	medium := flag.String("medium", "", "file holding the storage medium (created when missing)")
	delay := flag.Duration("disk-delay", time.Second, "time for the disk to appear after `storage host`")
	flag.Parse()

	board, err := ptyutil.Open()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dutlinksim:", err)
		os.Exit(1)
	}
	defer board.Close()
	sim, err := dutlinktest.New(dutlinktest.Options{
		DUT:        board.Master,
		DiskPath:   *disk,
		MediumPath: *medium,
		DiskDelay:  *delay,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dutlinksim:", err)
		os.Exit(1)
	}
	defer sim.Close()
	fmt.Printf("control port: %s\nboard UART:   %s\n", sim.Path(), board.Path)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
