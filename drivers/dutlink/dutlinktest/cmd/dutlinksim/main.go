// Command dutlinksim runs a simulated DUTLink harness on a pty, for trying
// the dutlink driver or a terminal program without hardware:
//
//	go run ./drivers/dutlink/dutlinktest/cmd/dutlinksim -disk /tmp/dl/disk -medium /tmp/dl/medium.img
//
// It prints the harness's control port (use it as the driver's `port`) and
// the simulated board's UART, a second pty that a terminal program
// (picocom, screen) can open to play the board. With -boot DIR a built-in
// board plays it instead (dutlinktest.Board with a system in DIR): it
// boots the image on the medium at each power on, with a login prompt
// (root and -password) and a real shell. With -link the control port also
// gets that name (a /dev/serial/by-id style link). Each thing the
// simulated hardware does is printed as a line "event: <what>" (see
// dutlinktest.Event). It runs until interrupted.
package main

import (
	"flag"
	"fmt"
	"io"
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
	boot := flag.String("boot", "", "state directory of a built-in board that boots the medium's image (instead of a UART pty)")
	password := flag.String("password", "demo-password", "root's password on the built-in board (-boot)")
	link := flag.String("link", "", "symbolic link to make to the control port")
	flag.Parse()
	if err := run(*disk, *medium, *delay, *boot, *password, *link); err != nil {
		fmt.Fprintln(os.Stderr, "dutlinksim:", err)
		os.Exit(1)
	}
}

func run(disk, medium string, delay time.Duration, boot, password, link string) error {
	var dut io.ReadWriter
	var uart string
	var board *dutlinktest.Board
	if boot != "" {
		var err error
		board, err = dutlinktest.NewBoard(dutlinktest.BoardOptions{Medium: medium,
			Linux: &dutlinktest.Linux{Dir: boot, Password: password}})
		if err != nil {
			return err
		}
		defer board.Close()
		dut, uart = board, "built in, state in "+boot
	} else {
		p, err := ptyutil.Open()
		if err != nil {
			return err
		}
		defer p.Close()
		dut, uart = p.Master, p.Path
	}
	sim, err := dutlinktest.New(dutlinktest.Options{
		DUT:        dut,
		DiskPath:   disk,
		MediumPath: medium,
		DiskDelay:  delay,
	})
	if err != nil {
		return err
	}
	defer sim.Close()
	if board != nil {
		board.Follow(sim)
	}
	if link != "" {
		_ = os.Remove(link)
		if err := os.Symlink(sim.Path(), link); err != nil {
			return err
		}
		defer os.Remove(link)
	}
	fmt.Printf("control port: %s\nboard UART:   %s\n", sim.Path(), uart)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	seen := 0
	for {
		select {
		case <-sig:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
		evs := sim.Events()
		for ; seen < len(evs); seen++ {
			fmt.Printf("event: %s\n", evs[seen].What)
		}
	}
}
