package cmd

// jsplan boards resources: the inventory's shared resources, their
// capacity and who holds a share now.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/lock"
)

func boardsResourcesCommand() *cli.Command {
	return &cli.Command{
		Name:  "resources",
		Usage: "show the inventory's shared resources (buses, networks), their capacity and holders",
		Flags: []cli.Flag{boardsFlag, outputFlag,
			&cli.StringFlag{Name: "lock-dir", EnvVars: []string{"JSPLAN_LOCK_DIR"}, Usage: "locks live in `DIR`"}},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c, "text", "json")
			if err != nil {
				return err
			}
			inv, err := validInventory(c)
			if err != nil {
				return err
			}
			rows := resourceRows(inv, lockDirOf(c))
			if format == "json" {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			return writeResources(c.App.Writer, rows)
		},
	}
}

// resourceRow is a shared resource as `boards resources -o json` shows it.
type resourceRow struct {
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	Capacity int           `json:"capacity"`
	Boards   []string      `json:"boards"`
	Held     int           `json:"held"`
	Holders  []lock.Holder `json:"holders"`
}

func resourceRows(inv *engine.Inventory, dir string) []resourceRow {
	rows := []resourceRow{}
	for _, r := range inv.Resources {
		row := resourceRow{Name: r.Name, Kind: r.Kind, Capacity: r.Capacity, Boards: []string{}}
		for _, b := range inv.Boards {
			for _, a := range b.Resources {
				if a == r.Name {
					row.Boards = append(row.Boards, b.Name)
				}
			}
		}
		row.Holders = lock.ResourceHolders(dir, r.Name, r.Capacity)
		if row.Holders == nil {
			row.Holders = []lock.Holder{}
		}
		row.Held = len(row.Holders)
		rows = append(rows, row)
	}
	return rows
}

func writeResources(out io.Writer, rows []resourceRow) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RESOURCE\tKIND\tHELD\tBOARDS\tHOLDERS")
	for _, r := range rows {
		var hs []string
		for _, h := range r.Holders {
			if h.PID == 0 {
				hs = append(hs, "a run")
			} else {
				hs = append(hs, h.String())
			}
		}
		holders := "-"
		if len(hs) > 0 {
			holders = strings.Join(hs, "; ")
		}
		fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\n", r.Name, r.Kind, r.Held, r.Capacity, strings.Join(r.Boards, ","), holders)
	}
	return w.Flush()
}
