package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/internal/htmlreport"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "(re)build report.html from a run's artifacts, or a trends page of several runs",
		ArgsUsage: "ARTIFACTS_DIR | --history DIR...",
		Description: "jsplan apply writes report.html into the artifacts at the end of every run. 'jsplan report\n" +
			"ARTIFACTS_DIR' builds it again from report.json and console.log (e.g. after a newer jsplan).\n" +
			"The page is one file with nothing loaded from the network.\n\n" +
			"With --history, each DIR is a run's artifacts directory, or a directory whose subdirectories\n" +
			"are. The page shows first what got worse: for every step and test case the last pass and the\n" +
			"first failure after it (with links to both runs' report.html), and the flaky ones (flipping\n" +
			"between pass and fail without a change of image); then every step's duration across the runs.\n" +
			"--output json prints the same analysis for dashboards.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "history", Usage: "draw per-step durations across the runs in DIR..."},
			&cli.StringFlag{Name: "out", Usage: "write the page to `FILE` (default: ARTIFACTS_DIR/report.html; with --history, history.html)",
				EnvVars: []string{"JSPLAN_REPORT_OUT"}},
			outputFlag,
		},
		Action: reportAction,
	}
}

func reportAction(c *cli.Context) error {
	out := c.String("out")
	if c.Bool("history") {
		if c.NArg() == 0 {
			return exit(2, "report --history needs at least one artifacts directory\nRun 'jsplan report --help' for usage.")
		}
		if out == "" {
			out = "history.html"
		}
		format, err := outputFormat(c, "text", "json")
		if err != nil {
			return err
		}
		reg, n, err := htmlreport.WriteHistoryAnalysis(out, c.Args().Slice())
		if err != nil {
			return exit(2, "%v", err)
		}
		if format == "json" {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(reg)
		}
		fmt.Fprintf(c.App.Writer, "%s: %d runs; %d regressed, %d flaky\n", out, n, reg.Counts[htmlreport.Regressed], reg.Counts[htmlreport.Flaky])
		return nil
	}
	if c.NArg() != 1 {
		return exit(2, "report needs exactly one artifacts directory\nRun 'jsplan report --help' for usage.")
	}
	dir := c.Args().First()
	if err := htmlreport.Rebuild(dir, out, htmlreport.Options{}); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return exit(2, "%s is not a run's artifacts directory: %v", dir, err)
		}
		return exit(3, "%v", err)
	}
	if out == "" {
		out = filepath.Join(dir, htmlreport.ReportFile)
	}
	fmt.Fprintln(c.App.Writer, out)
	return nil
}
