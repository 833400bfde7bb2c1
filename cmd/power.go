package cmd

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine/redact"
)

var powerActions = []string{"on", "off", "cycle", "reset", "status"}

func powerCommand() *cli.Command {
	return &cli.Command{
		Name:      "power",
		Usage:     "switch a board's power (on, off, cycle, reset) or show it (status), holding the board's lock",
		ArgsUsage: "BOARD on|off|cycle|reset|status",
		Description: "Takes the board's lock (waiting while it is busy, --lock-wait), opens its drivers and\n" +
			"switches its power through its power driver: cycle is off, --delay, on (or the driver's own\n" +
			"cycle); reset is the driver's reset, or a power cycle when it has none; status prints on,\n" +
			"off or unknown (the driver cannot tell). A virtual board (sim, qemu) lives inside jsplan,\n" +
			"so it is off again when the command ends; real power drivers keep the state.\n\n" +
			"Exit status: 0 done, 2 usage (unknown board or action, no power driver), 3 the board is\n" +
			"busy past --lock-wait or the driver failed, 129/130/143 after SIGHUP/SIGINT/SIGTERM.",
		Flags:  []cli.Flag{boardsFlag, lockDirFlag, lockWaitFlag, stateDirFlag, delayFlag, outputFlag},
		Action: powerAction,
	}
}

func powerAction(c *cli.Context) error {
	format, err := outputFormat(c, "text", "json")
	if err != nil {
		return err
	}
	if c.NArg() != 2 {
		return exit(2, "power needs a board and one of %s\nRun 'jsplan power --help' for usage.", strings.Join(powerActions, ", "))
	}
	action := c.Args().Get(1)
	known := false
	for _, a := range powerActions {
		known = known || a == action
	}
	if !known {
		return exit(2, "unknown power action %q: want one of %s", action, strings.Join(powerActions, ", "))
	}
	spec, err := lookupBoard(c, c.Args().First())
	if err != nil {
		return err
	}
	if err := needCapability(spec, drivers.CapPower); err != nil {
		return err
	}
	errw := c.App.ErrWriter
	ctx, stop := signalContext()
	defer stop()
	lk, _, err := acquireBoard(ctx, c, []string{spec.Name}, "jsplan power "+action, func(msg string) {
		fmt.Fprintln(errw, "jsplan: "+msg)
	})
	if err != nil {
		return exit(failureCode(ctx, err), "%v", err)
	}
	defer lk.Release()
	red := &redact.Redactor{}
	board, err := openBoard(ctx, c, spec, red, func(msg string) { fmt.Fprintln(errw, "jsplan: "+msg) })
	if err != nil {
		return exit(failureCode(ctx, err), "%v", err)
	}
	defer board.Close()
	p, err := board.Power()
	if err != nil {
		return exit(3, "%v", err)
	}
	note := ""
	switch action {
	case "on":
		err = p.On(ctx)
	case "off":
		err = p.Off(ctx)
	case "cycle":
		err = drivers.CyclePower(ctx, p, c.Duration("delay"))
	case "reset":
		var cycled bool
		if cycled, err = drivers.ResetPower(ctx, p, c.Duration("delay")); cycled {
			note = "the power driver cannot reset; cycled the power instead"
		}
	}
	if err != nil {
		return exit(failureCode(ctx, err), "power %s on %s: %s", action, spec.Name, red.String(err.Error()))
	}
	state := powerState(ctx, p)
	if transient(board, drivers.CapPower) {
		switch action {
		case "on", "cycle", "reset":
			note = strings.TrimPrefix(note+"; ", "; ") + fmt.Sprintf("%s is a virtual board inside jsplan: it goes off again as this command ends "+
				"(jsplan console %s --power-on keeps it running while attached)", spec.Name, spec.Name)
		case "status":
			note = fmt.Sprintf("%s is a virtual board inside jsplan: it is on only while a jsplan command (apply, console) has it open", spec.Name)
		}
	}
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		return enc.Encode(struct {
			Board  string `json:"board"`
			Action string `json:"action"`
			Power  string `json:"power"`
			Note   string `json:"note,omitempty"`
		}{spec.Name, action, strings.Fields(state)[0], note})
	}
	if note != "" {
		fmt.Fprintln(errw, "jsplan: "+note)
	}
	if action == "status" {
		fmt.Fprintln(c.App.Writer, state)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "%s: %s done (power %s)\n", spec.Name, action, state)
	return nil
}
