package cmd

// What `jsplan boards list` shows of a board served by an agent: who holds
// its lease, since when, and who waits.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/remote"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/redact"
	"github.com/jsplan/jsplan/internal/flash"
	"github.com/jsplan/jsplan/internal/lock"
)

// leaseRow is a remote board's lease on its agent.
type leaseRow struct {
	Agent  string    `json:"agent"`
	Holder string    `json:"holder,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Waiting lists the queue, next first.
	Waiting []string `json:"waiting,omitempty"`
	// LocalHolder names a run on the agent's host holding the board's lock.
	LocalHolder string `json:"local_holder,omitempty"`
	Error       string `json:"error,omitempty"`
}

// leaseOf asks the agent of b, when b is a remote board; nil otherwise.
func leaseOf(b *engine.BoardSpec) *leaseRow {
	n := b.Drivers[remote.Name]
	if n == nil {
		return nil
	}
	var d remote.Device
	if err := n.Decode(&d); err != nil {
		return &leaseRow{Error: err.Error()}
	}
	row := &leaseRow{Agent: d.Address}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := remote.Status(ctx, &d, b.Dir)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	row.Holder, row.LocalHolder = st.Holder, st.LocalHolder
	if st.SinceUnixMs != 0 {
		row.Since = time.UnixMilli(st.SinceUnixMs)
	}
	for _, w := range st.Waiting {
		s := w.Holder
		if w.Priority != 0 {
			s += fmt.Sprintf(" (priority %d)", w.Priority)
		}
		row.Waiting = append(row.Waiting, s)
	}
	return row
}

// state is the STATE column of a remote board.
func (r *leaseRow) state(local string) string {
	var s string
	switch {
	case r.Error != "":
		s = "agent " + r.Agent + ": " + r.Error
	case r.Holder != "":
		s = fmt.Sprintf("leased to %s since %s", r.Holder, r.Since.Format(time.RFC3339))
	case r.LocalHolder != "":
		s = "busy on the agent's host: " + r.LocalHolder
	default:
		s = "free"
	}
	if len(r.Waiting) > 0 {
		s += "; waiting: " + strings.Join(r.Waiting, ", ")
	}
	if local != "free" {
		s = local + "; " + s
	}
	return lock.Printable(s)
}

// flashBoard is `jsplan flash IMAGE --board BOARD`: the board's storage,
// under its lock, written here or, for a remote board, by its agent.
func flashBoard(c *cli.Context) error {
	b, err := lookupBoard(c, c.String("board"))
	if err != nil {
		return err
	}
	if err := needCapability(b, drivers.CapStorage); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	say := func(msg string) { fmt.Fprintln(c.App.ErrWriter, "jsplan: "+printable(msg)) }
	lk, _, err := acquireBoard(ctx, c, []string{b.Name}, "jsplan flash", say)
	if err != nil {
		return exit(failureCode(ctx, err), "%v", err)
	}
	defer lk.Release()
	red := &redact.Redactor{}
	board, err := openBoard(ctx, c, b, red, say)
	if err != nil {
		return exit(failureCode(ctx, err), "%v", err)
	}
	defer board.Close()
	st, err := board.Storage()
	if err != nil {
		return exit(3, "%v", err)
	}
	opts := flash.Options{Image: c.Args().Get(0), Bmap: c.String("bmap"), NoBmap: c.Bool("no-bmap"),
		SHA256: c.String("sha256"), Verify: c.Bool("verify")}
	if !c.Bool("quiet") {
		opts.Progress = c.App.ErrWriter
	}
	var res flash.Result
	if iw, ok := st.(drivers.ImageWriter); ok {
		res, err = iw.WriteImage(ctx, opts)
	} else {
		var target string
		if target, err = st.AttachHost(ctx); err == nil {
			res, err = flash.Write(ctx, target, opts)
			if aerr := st.AttachBoard(ctx); aerr != nil && err == nil {
				err = aerr
			}
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, flash.ErrImage), errors.Is(err, flash.ErrBmap), errors.Is(err, flash.ErrChecksum),
		errors.Is(err, flash.ErrVerify):
		return exit(1, "%s", red.String(err.Error()))
	case ctx.Err() != nil:
		return exit(failureCode(ctx, err), "interrupted: %v", err)
	default:
		return exit(3, "%s", red.String(err.Error()))
	}
	if !c.Bool("quiet") {
		msg := fmt.Sprintf("wrote %s image to board %s, %d bytes (%d written) in %s", res.Format, b.Name, res.ImageSize, res.BytesWritten, res.Duration)
		if res.Verified {
			msg += "; verified: the target reads back as the image"
		}
		fmt.Fprintln(c.App.Writer, msg)
	}
	return nil
}

// holdLease opens a remote board for `jsplan lock`: its lease is held
// (and kept alive) while the command runs, and handed to it as
// JSPLAN_LEASE_TOKEN and JSPLAN_LEASE_BOARD, so jsplan commands inside use
// the board at once, as they take the inherited lock. Other boards: nothing.
func holdLease(c *cli.Context, spec *engine.BoardSpec) (env []string, end func(), err error) {
	if spec.Drivers[remote.Name] == nil {
		return nil, func() {}, nil
	}
	ctx, stop := signalContext()
	defer stop()
	say := func(msg string) { fmt.Fprintln(c.App.ErrWriter, "jsplan: "+printable(msg)) }
	board, err := openBoard(ctx, c, spec, &redact.Redactor{}, say)
	if err != nil {
		return nil, nil, err
	}
	for _, cp := range drivers.AllCapabilities {
		var dev any
		switch cp {
		case drivers.CapPower:
			dev, _ = board.Power()
		case drivers.CapConsole:
			dev, _ = board.ConsoleDevice()
		case drivers.CapStorage:
			dev, _ = board.Storage()
		case drivers.CapNetwork:
			dev, _ = board.Network()
		}
		if d, ok := dev.(*remote.Device); ok && d.LeaseToken() != "" {
			return []string{remote.TokenEnv + "=" + d.LeaseToken(), remote.BoardEnv + "=" + d.Board},
				func() { board.Close() }, nil
		}
	}
	return nil, func() { board.Close() }, nil
}
