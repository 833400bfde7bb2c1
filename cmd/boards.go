package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/internal/lock"
)

func boardsCommand() *cli.Command {
	return &cli.Command{
		Name:  "boards",
		Usage: "list the inventory, or discover attached hardware",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "show the boards of the inventory with their lock state",
				Flags: []cli.Flag{boardsFlag, outputFlag,
					&cli.StringFlag{Name: "lock-dir", EnvVars: []string{"JSPLAN_LOCK_DIR"}, Usage: "board locks live in `DIR`"},
					&cli.StringFlag{Name: "state-dir", EnvVars: []string{"JSPLAN_STATE_DIR"}, Usage: "driver state under `DIR`"},
					&cli.BoolFlag{Name: "check", Usage: "open each free board's drivers: power state, does the console answer"}},
				Action: boardsList,
			},
			boardsResourcesCommand(),
			boardsHealthCommand(),
			{
				Name:   "discover",
				Usage:  "list attached devices the drivers recognise and print an inventory to start from",
				Flags:  []cli.Flag{outputFlag},
				Action: boardsDiscover,
			},
			{
				Name:  "drivers",
				Usage: "list the drivers built into this jsplan and what each serves with its default configuration",
				Flags: []cli.Flag{outputFlag},
				Action: func(c *cli.Context) error {
					format, err := outputFormat(c, "text", "json")
					if err != nil {
						return err
					}
					if format == "json" {
						type driverRow struct {
							Name     string   `json:"name"`
							Provides []string `json:"provides"`
							Summary  string   `json:"summary"`
						}
						rows := []driverRow{}
						for _, n := range drivers.Names() {
							info, _ := drivers.Lookup(n)
							row := driverRow{Name: n, Provides: []string{}, Summary: info.Summary}
							for _, p := range defaultCapabilities(info) {
								row.Provides = append(row.Provides, string(p))
							}
							rows = append(rows, row)
						}
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return enc.Encode(rows)
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "DRIVER\tPROVIDES\tSUMMARY")
					for _, n := range drivers.Names() {
						info, _ := drivers.Lookup(n)
						var caps []string
						for _, p := range defaultCapabilities(info) {
							caps = append(caps, string(p))
						}
						fmt.Fprintf(w, "%s\t%s\t%s\n", n, strings.Join(caps, ","), info.Summary)
					}
					return w.Flush()
				},
			},
		},
	}
}

type boardRow struct {
	Name         string            `json:"name"`
	Labels       map[string]string `json:"labels,omitempty"`
	Capabilities []string          `json:"capabilities"`
	Drivers      []string          `json:"drivers"`
	// Resources are the shared resources the board is attached to.
	Resources []string     `json:"resources,omitempty"`
	Locked    bool         `json:"locked"`
	Holder    *lock.Holder `json:"holder,omitempty"`
	Check     string       `json:"check,omitempty"`
	// Healthy is the check's verdict (nil: no check, or a run holds the
	// board).
	Healthy *bool `json:"healthy,omitempty"`
	labRow
	// Lease is a remote board's lease on its agent.
	Lease *leaseRow `json:"lease,omitempty"`
}

// healthOf reads a check: a board is unhealthy when its lock cannot be
// taken for a reason other than a run holding it, its drivers do not open,
// or its console cannot be opened. A silent console is healthy (the board
// may be off; a plan powers it on). The DRA driver applies the same rules
// to the JSON output (tekton/dra/driver.Classify).
func healthOf(check string) *bool {
	var healthy bool
	switch {
	case check == "" || strings.HasPrefix(check, "busy"):
		return nil
	case strings.HasPrefix(check, "cannot open"), strings.HasPrefix(check, "lock:"),
		strings.Contains(check, "console cannot open"), strings.Contains(check, "console error"):
		healthy = false
	default:
		healthy = true
	}
	return &healthy
}

func boardsList(c *cli.Context) error {
	format, err := outputFormat(c, "text", "json")
	if err != nil {
		return err
	}
	inv, err := validInventory(c)
	if err != nil {
		return err
	}
	dir := c.String("lock-dir")
	if dir == "" {
		dir = lock.DefaultDir()
	}
	rows := make([]boardRow, 0, len(inv.Boards)) // not reallocated: checks write to its rows
	var checks sync.WaitGroup
	for _, b := range inv.Boards {
		row := boardRow{Name: b.Name, Labels: b.Labels, Drivers: b.DriverNames(), Resources: b.Resources}
		for _, cp := range b.Capabilities() {
			row.Capabilities = append(row.Capabilities, string(cp))
		}
		lk, h, err := lock.TryAcquire(dir, b.Name, lock.Holder{Plan: "jsplan boards list", PID: os.Getpid(), Since: time.Now()})
		if err == nil && lk == nil {
			row.Locked, row.Holder = true, h
		}
		if lk.Inherited() { // held by the jsplan lock this command runs under
			row.Locked, row.Holder = true, lock.ReadHolder(dir, b.Name)
		}
		lk.Release()
		row.labRow = labRowOf(dir, b)
		row.Lease = leaseOf(b)
		rows = append(rows, row)
		if c.Bool("check") && !row.Locked && (row.Lease == nil || (row.Lease.Holder == "" && row.Lease.LocalHolder == "")) {
			// every board at once: a farm's check takes as long as its
			// slowest board
			stateDir := c.String("state-dir")
			if stateDir == "" {
				stateDir = defaultStateDir()
			}
			checks.Add(1)
			go func(row *boardRow) {
				defer checks.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				row.Check = checkBoard(ctx, b, dir, stateDir, 3*time.Second)
				row.Healthy = healthOf(row.Check)
			}(&rows[len(rows)-1])
		}
	}
	checks.Wait()
	unhealthy := 0
	for _, r := range rows {
		if r.Healthy != nil && !*r.Healthy {
			unhealthy++
		}
	}
	if format == "json" {
		// exit 0: the rows carry each verdict (healthy), which the DRA
		// driver reads
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	head := "BOARD\tCAPABILITIES\tDRIVERS\tLABELS\tSTATE\tCONDITION\tLAST CHECK"
	if c.Bool("check") {
		head += "\tHEALTH"
	}
	fmt.Fprintln(w, head)
	for _, r := range rows {
		var labels []string
		for k, v := range r.Labels {
			labels = append(labels, k+"="+v)
		}
		state := "free"
		if r.Locked {
			state = "busy"
			if r.Holder != nil {
				state = "busy: " + r.Holder.String()
			}
		}
		if r.Lease != nil {
			state = r.Lease.state(state)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", r.Name, strings.Join(r.Capabilities, ","), strings.Join(r.Drivers, ","), strings.Join(sortStrings(labels), ","), state, r.labRow.text())
		if c.Bool("check") {
			switch {
			case r.Healthy == nil && r.Check != "":
				line += "\t- (" + r.Check + ")"
			case r.Healthy == nil:
				line += "\t- (held by a run: not checked)"
			case *r.Healthy:
				line += "\tok (" + r.Check + ")"
			default:
				line += "\tUNHEALTHY: " + r.Check
			}
		}
		fmt.Fprintln(w, line)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(inv.Resources) > 0 {
		fmt.Fprintln(c.App.Writer)
		if err := writeResources(c.App.Writer, resourceRows(inv, dir)); err != nil {
			return err
		}
	}
	if unhealthy > 0 {
		return exit(1, "%s unhealthy", plural(unhealthy, "board"))
	}
	return nil
}

func sortStrings(s []string) []string {
	sort.Strings(s)
	return s
}

func boardsDiscover(c *cli.Context) error {
	format, err := outputFormat(c, "text", "json")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	found := []drivers.Found{} // -o json: [] when nothing is attached, not null
	for _, n := range drivers.Names() {
		info, _ := drivers.Lookup(n)
		if info.Discover == nil {
			continue
		}
		f, err := info.Discover(ctx)
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "jsplan: %s: discovery failed: %v\n", n, err)
			continue
		}
		found = append(found, f...)
	}
	if format == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(found)
	}
	if len(found) == 0 {
		fmt.Fprintln(c.App.Writer, "# no attached devices recognised by the drivers")
		return nil
	}
	_, err = c.App.Writer.Write(drivers.InventorySnippet(found))
	return err
}

// defaultCapabilities is what a driver's device serves with the default
// configuration (some serve more when configured: the sim board network
// with an ssh: endpoint).
func defaultCapabilities(info drivers.Info) []drivers.Capability {
	dev := info.New()
	if d, ok := dev.(drivers.Defaulter); ok {
		d.SetDefaults()
	}
	return dev.Capabilities()
}
