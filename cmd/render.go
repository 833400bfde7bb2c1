package cmd

import (
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/redact"
)

func renderCommand() *cli.Command {
	return &cli.Command{
		Name:      "render",
		Usage:     "print the fully resolved plan: the dry run to read before apply",
		ArgsUsage: "PLAN",
		Description: "Parameters are substituted, used plans inlined, defaults filled and, with an\n" +
			"inventory, the board resolved. Secret values are masked.",
		Flags: []cli.Flag{setFlag, paramsFileFlag, boardsFlag, boardFlag, roleFlag, selectorFlag,
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "yaml", Usage: "output `FORMAT`: yaml or json"}},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c, "yaml", "json")
			if err != nil {
				return err
			}
			if c.NArg() != 1 {
				return exit(2, "render needs exactly one plan\nRun 'jsplan render --help' for usage.")
			}
			values, ds := paramValues(c)
			if ds.HasErrors() {
				printDiags(c.App.ErrWriter, ds, nil)
				return exit(2, "")
			}
			res, l := resolve(c, values, "")
			if res == nil {
				printDiags(c.App.ErrWriter, l.Diagnostics(), l.Sources())
				return exit(2, "")
			}
			red := &redact.Redactor{}
			red.Add(l.Secrets()...)
			n := maskNode(renderResolved(res), red)
			out := engine.YAML(n)
			if format == "json" {
				out = engine.JSON(n)
			}
			_, err = c.App.Writer.Write(out)
			return err
		},
	}
}

// maskNode replaces secrets in every scalar of n, before it is encoded:
// masking the encoded text would miss a secret the encoder escaped, and
// would turn a plain YAML scalar into ***, which YAML reads as an alias.
func maskNode(n *yaml.Node, red *redact.Redactor) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		if v := red.String(n.Value); v != n.Value {
			n.Value, n.Tag, n.Style = v, "!!str", 0
		}
	}
	for _, c := range n.Content {
		maskNode(c, red)
	}
	return n
}

// resolved is a plan loaded for a run, with its board.
type resolved struct {
	plan       *engine.Plan
	board      *engine.BoardSpec
	candidates []*engine.BoardSpec
	inv        *engine.Inventory
	// assigns are the ways a plan on several boards (or with shared
	// resources) can run, first choice first; assign is the chosen one
	// (applymulti.go).
	assigns []*engine.Assignment
	assign  *engine.Assignment
}

// resolve loads the plan twice: once to learn which boards it can run on,
// then for the run with the first candidate's values. It returns nil after
// errors; the loader holds the diagnostics.
func resolve(c *cli.Context, values map[string]engine.Value, artifacts string) (*resolved, *engine.Loader) {
	file := c.Args().First()
	pre := engine.NewLoader(engine.Options{Mode: engine.ModeValidate, Values: values})
	inv, _ := loadInventory(c, pre)
	p := pre.LoadPlan(file)
	if p == nil || pre.Diagnostics().HasErrors() {
		return nil, pre
	}
	sel, err := selector(c)
	if err != nil {
		pre.Report(err)
		return nil, pre
	}
	pins, derr := rolePins(c, p)
	if derr != nil {
		pre.Report(derr)
		return nil, pre
	}
	if p.Multi() {
		return resolveMulti(pre, p, inv, sel, pins, file, values, artifacts)
	}
	cands := pre.CheckBoard(p, inv, sel)
	if pre.Diagnostics().HasErrors() || len(cands) == 0 {
		return nil, pre
	}
	r := &resolved{candidates: cands, inv: inv}
	if l := r.loadFor(file, values, cands[0], artifacts); l.Diagnostics().HasErrors() {
		return nil, l
	} else {
		return r, l
	}
}

// loadFor loads the plan for a run on board b.
func (r *resolved) loadFor(file string, values map[string]engine.Value, b *engine.BoardSpec, artifacts string) *engine.Loader {
	l := engine.NewLoader(engine.Options{Mode: engine.ModeRun, Values: values, Board: b.Info(), Artifacts: artifacts})
	r.board = b
	r.plan = l.LoadPlan(file)
	return l
}
