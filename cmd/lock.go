package cmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/jsplan/jsplan/internal/procguard"
)

func lockCommand() *cli.Command {
	return &cli.Command{
		Name:      "lock",
		Usage:     "hold a board's lock while a command runs",
		ArgsUsage: "BOARD -- COMMAND [ARG...]",
		Description: "Takes the board's lock (waiting while it is busy, --lock-wait), runs the command with\n" +
			"JSPLAN_BOARD set to the board, and releases the lock when the command ends, so a script\n" +
			"never races a pipeline for the board. The command inherits the lock: jsplan apply, power\n" +
			"and console run inside it take the board at once (JSPLAN_LOCK_HELD names the inherited\n" +
			"descriptor). SIGTERM and SIGHUP are passed to the command; SIGINT too unless it came from\n" +
			"the terminal, which already sent it to the command. Put -- before the command.\n\n" +
			"Exit status: the command's (128+N when signal N killed it), 2 usage, 3 the board is busy\n" +
			"past --lock-wait, 126 the command cannot run, 127 it was not found, 130/143 when\n" +
			"interrupted while waiting for the lock.",
		Flags:  []cli.Flag{boardsFlag, lockDirFlag, lockWaitFlag, stateDirFlag},
		Action: lockAction,
	}
}

func lockAction(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return exit(2, "lock needs a board and a command\nRun 'jsplan lock --help' for usage.")
	}
	name, argv := args[0], args[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return exit(2, "lock needs a command to run after the board: jsplan lock %s -- COMMAND [ARG...]", name)
	}
	spec, err := lookupBoard(c, name)
	if err != nil {
		return err
	}
	errw := c.App.ErrWriter
	ctx, stop := signalContext()
	lk, _, err := acquireBoard(ctx, c, []string{spec.Name}, "jsplan lock: "+argv[0], func(msg string) {
		fmt.Fprintln(errw, "jsplan: "+msg)
	})
	if err != nil {
		code := failureCode(ctx, err) // before stop, which cancels ctx
		stop()
		return exit(code, "%v", err)
	}
	stop()
	defer lk.Release()
	leaseEnv, endLease, err := holdLease(c, spec)
	if err != nil {
		return exit(3, "%v", err)
	}
	defer endLease()

	path, err := exec.LookPath(argv[0])
	if err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		return exit(code, "%v", err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.App.Writer, errw
	cmd.Env = append(append(os.Environ(), "JSPLAN_BOARD="+spec.Name), leaseEnv...)
	lk.Pass(cmd)
	// The command's descendants inherit the lock's descriptor: one left
	// running would keep the board locked after the command. They are
	// ended with it, wherever they moved (procguard.Tag), and if jsplan
	// dies, by the guardian.
	tag := procguard.Tag(cmd)

	// The command stays in our process group, so that it can use the
	// terminal; the terminal's signals reach it directly.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return exit(126, "%v", err)
	}
	_ = procguard.Watch(cmd.Process.Pid)
	fromTTY := foregroundOfTerminal()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGINT && fromTTY {
					continue
				}
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	procguard.KillTagged(tag)
	procguard.Forget(cmd.Process.Pid)
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exit(128+int(ws.Signal()), "")
		}
		return exit(ee.ExitCode(), "")
	}
	return exit(3, "%v", err)
}

// foregroundOfTerminal reports whether this process is in the foreground
// process group of the terminal on stdin: then a Ctrl-C at the terminal
// reaches every process of the group, the command included.
func foregroundOfTerminal() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}
