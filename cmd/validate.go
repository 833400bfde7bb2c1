package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check plans and inventories: every mistake at once, as file:line:col",
		ArgsUsage: "FILE|DIR...",
		Description: "Checks each Plan and Boards document against the schema and beyond it: references,\n" +
			"used plans and their inputs, durations, regexes, step ids and timeouts. Directories are\n" +
			"searched for *.yaml and *.yml; YAML files found there that are not jsplan documents are\n" +
			"skipped, and so is a directory below one given that holds a jsplan.schema.json other than\n" +
			"this jsplan's (`jsplan schema`): its documents are for a jsplan built with other step types\n" +
			"or drivers. A file named on the command line must be a jsplan document (--skip-foreign:\n" +
			"skip named files too, unless they look meant for jsplan; the pre-commit hook uses it).\n" +
			"With --boards (or Boards documents among the files), plans are also checked against\n" +
			"the inventory: the board they ask for must exist and have what their steps need.\n\n" +
			"Exit status: 0 valid, 2 invalid.",
		Flags: []cli.Flag{boardsFlag, outputFlag,
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing when everything is valid"},
			&cli.BoolFlag{Name: "skip-foreign", EnvVars: []string{"JSPLAN_SKIP_FOREIGN"},
				Usage: "skip named YAML files that are not jsplan documents, unless their apiVersion or kind looks meant for jsplan (for pre-commit)"}},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c, "text", "json")
			if err != nil {
				return err
			}
			if c.NArg() == 0 {
				return exit(2, "validate needs at least one file or directory\nRun 'jsplan validate --help' for usage.")
			}
			files, named, others, err := expandArgs(c.Args().Slice())
			if err != nil {
				return exit(2, "%v", err)
			}
			l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
			inv := &engine.Inventory{}
			haveInv := false
			// An inventory is read once, however often it is named (--boards
			// and inside a directory given too).
			seen := map[string]bool{}
			for _, f := range c.StringSlice("boards") {
				for _, part := range filepath.SplitList(f) {
					if seen[fileKey(part)] {
						continue
					}
					seen[fileKey(part)] = true
					l.LoadBoards(part, inv)
					haveInv = true
				}
			}
			kept := files[:0]
			for _, f := range files {
				if !seen[fileKey(f)] {
					kept = append(kept, f)
				}
			}
			files = kept
			// parse and schema-check on every CPU
			l.Preload(files)
			kinds := map[string]string{}
			for _, f := range files {
				switch k := l.Kind(f); k {
				case "Boards":
					l.LoadBoards(f, inv)
					haveInv = true
					kinds[f] = k
				default:
					kinds[f] = k
				}
			}
			checked := 0
			var skipped []string
			for _, f := range files {
				k := kinds[f]
				if k == "Boards" {
					checked++
					continue
				}
				if k == "" {
					if named[f] && l.ReportForeign(f, c.Bool("skip-foreign")) {
						checked++
					} else {
						skipped = append(skipped, f)
					}
					continue
				}
				checked++
				p := l.LoadPlan(f)
				if p != nil && haveInv {
					l.CheckBoard(p, inv, engine.BoardSelector{})
				}
			}
			ds := l.Diagnostics()
			if format == "json" {
				out := map[string]any{"valid": !ds.HasErrors(), "files": checked, "skipped": skipped, "diagnostics": ds.JSON()}
				if len(others) > 0 {
					out["skipped_other_jsplan"] = others
				}
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				_ = enc.Encode(out)
			} else {
				printDiags(c.App.ErrWriter, ds, l.Sources())
				if ds.HasErrors() {
					fmt.Fprintf(c.App.ErrWriter, "%s in %s\n", diag.Summary(ds), plural(checked, "file"))
				} else if !c.Bool("quiet") {
					msg := fmt.Sprintf("%s valid", plural(checked, "file"))
					if len(skipped) > 0 {
						msg += fmt.Sprintf(" (%d skipped: not jsplan documents)", len(skipped))
					}
					if len(others) > 0 {
						msg += fmt.Sprintf(" (%d skipped: for another jsplan, per the jsplan.schema.json beside them)", len(others))
					}
					fmt.Fprintln(c.App.Writer, msg)
				}
			}
			if ds.HasErrors() {
				return exit(2, "")
			}
			return nil
		},
	}
}

func plural(n int, w string) string {
	if n == 1 {
		return "1 " + w
	}
	return fmt.Sprintf("%d %ss", n, w)
}

// expandArgs turns files and directories into a list of YAML files, and
// tells which were named themselves rather than found in a directory. The
// YAML files of a directory found below one given that holds another
// jsplan's schema (otherJsplan) are listed in others, not checked.
func expandArgs(args []string) (files []string, named map[string]bool, others []string, err error) {
	named = map[string]bool{}
	seen := map[string]bool{}
	defer func() {
		// a file named and also found in a directory is checked once
		kept := files[:0]
		for _, f := range files {
			if k := fileKey(f); !seen[k] {
				seen[k] = true
				kept = append(kept, f)
			}
		}
		files = kept
	}()
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, nil, nil, fmt.Errorf("%s: %v", a, err)
		}
		if !st.IsDir() {
			files = append(files, a)
			named[a] = true
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && p != a && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if d.IsDir() && p != a && otherJsplan(p) {
				others = append(others, yamlFiles(p)...)
				return filepath.SkipDir
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	return files, named, others, nil
}

// otherJsplan reports whether dir holds the schema of a jsplan other than
// this one: the documents there are written for a custom build with more
// step types or drivers (plans/examples/custom-build), which this jsplan
// would reject as unknown keys.
func otherJsplan(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "jsplan.schema.json"))
	return err == nil && !bytes.Equal(b, engine.Schema())
}

// yamlFiles lists the YAML files under dir.
func yamlFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// fileKey identifies a file however its path is written (relative, with ..
// or through a symbolic link).
func fileKey(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return p
}
