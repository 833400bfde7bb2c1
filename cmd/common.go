package cmd

import (
	_ "embed"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/internal/boardenv"
	"github.com/jsplan/jsplan/internal/yamlerr"
)

// builtinBoards is the inventory used when none is given: the virtual
// board, so `jsplan apply` works with no hardware.
//
//go:embed boards.default.yaml
var builtinBoards []byte

const builtinName = "<built-in inventory>"

var (
	setFlag = &cli.GenericFlag{Name: "set", Value: &wholeValues{},
		Usage: "set a plan parameter, `NAME=VALUE` (repeatable; the value is taken whole, commas included)"}
	paramsFileFlag = &cli.StringFlag{Name: "params-file", Usage: "read parameter values from a YAML `FILE` (name: value)",
		EnvVars: []string{"JSPLAN_PARAMS_FILE"}}
	boardsFlag = &cli.StringSliceFlag{Name: "boards", Usage: "board inventory `FILE` (repeatable; default: the built-in virtual board)",
		EnvVars: []string{"JSPLAN_BOARDS"}}
	boardFlag = &cli.StringFlag{Name: "board", Usage: "run on the board `NAME`; with apply it must satisfy the plan's selector (as a Kubernetes claim assigns it)", EnvVars: []string{"JSPLAN_BOARD"}}
	roleFlag  = &cli.StringSliceFlag{Name: "role", Usage: "run the plan's role `ROLE=BOARD` on that board (repeatable; it must still carry the role's labels). " +
		"Without it a role takes the board in $JSPLAN_BOARD_<ROLE> (upper case, other characters _), as a Kubernetes claim with a request per role assigns them"}
	selectorFlag = &cli.StringFlag{Name: "selector", Usage: "run on a board with these `LABELS` (k=v,k2=v2; overrides the plan's selector)",
		EnvVars: []string{"JSPLAN_SELECTOR"}}
	outputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output `FORMAT`: text or json",
		EnvVars: []string{"JSPLAN_OUTPUT"}}
)

func outputFormat(c *cli.Context, allowed ...string) (string, error) {
	f := c.String("output")
	for _, a := range allowed {
		if f == a {
			return f, nil
		}
	}
	return "", exit(2, "--output must be one of %s, not %q", strings.Join(allowed, ", "), f)
}

// selector reads --board and --selector into one selector.
func selector(c *cli.Context) (engine.BoardSelector, *diag.Diagnostic) {
	sel := engine.BoardSelector{Name: c.String("board")}
	if s := strings.TrimSpace(c.String("selector")); s != "" {
		sel.Labels = map[string]string{}
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return sel, diag.Errorf(diag.Range{Filename: "--selector"}, "", "expected LABEL=VALUE[,LABEL=VALUE...], got %q", s)
			}
			sel.Labels[k] = v
		}
	}
	return sel, nil
}

// roleEnv is the environment variable that names a role's board:
// JSPLAN_BOARD_DUT for role dut, as the DRA driver sets it (boardenv).
func roleEnv(role string) string { return boardenv.Name(boardenv.Board, role) }

// rolePins reads which board each role of p runs on: --role ROLE=BOARD,
// else $JSPLAN_BOARD_<ROLE>. A --role for a role the plan does not have is
// an error.
func rolePins(c *cli.Context, p *engine.Plan) (map[string]string, *diag.Diagnostic) {
	pins := map[string]string{}
	known := map[string]bool{}
	for _, r := range p.Roles {
		known[r.Name] = true
		if v := strings.TrimSpace(os.Getenv(roleEnv(r.Name))); v != "" {
			pins[r.Name] = v
		}
	}
	for _, kv := range c.StringSlice("role") {
		role, board, ok := strings.Cut(kv, "=")
		role, board = strings.TrimSpace(role), strings.TrimSpace(board)
		switch {
		case !ok || role == "" || board == "":
			return nil, diag.Errorf(diag.Range{Filename: "--role"}, "", "expected ROLE=BOARD, got %q", kv)
		case !known[role]:
			var names []string
			for _, r := range p.Roles {
				names = append(names, r.Name)
			}
			what := "no roles (it has no boards:)"
			if len(names) > 0 {
				what = "roles " + strings.Join(names, ", ")
			}
			return nil, diag.Errorf(diag.Range{Filename: "--role"}, "", "role %q is not the plan's: it has %s", role, what)
		}
		pins[role] = board
	}
	return pins, nil
}

// paramValues gathers --params-file and --set values (--set wins).
func paramValues(c *cli.Context) (map[string]engine.Value, diag.Diagnostics) {
	out := map[string]engine.Value{}
	var ds diag.Diagnostics
	if f := c.String("params-file"); f != "" {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, ds.Append(diag.Errorf(diag.Range{Filename: f}, "", "cannot read parameters file: %v", err))
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(src, &doc); err != nil {
			e := yamlerr.Syntax(src, err)
			at := diag.Range{Filename: f}
			if e.Line > 0 {
				at.Start = diag.Pos{Line: e.Line, Column: e.Column}
			}
			return nil, ds.Append(diag.Errorf(at, "", "YAML syntax error: %s", e.Msg))
		}
		if len(doc.Content) > 0 {
			m := doc.Content[0]
			if m.Kind != yaml.MappingNode {
				return nil, ds.Append(diag.Errorf(diag.Range{Filename: f, Start: diag.Pos{Line: m.Line, Column: m.Column}}, "",
					"a parameters file is a mapping of names to values"))
			}
			for i := 0; i+1 < len(m.Content); i += 2 {
				k, v := m.Content[i], m.Content[i+1]
				r := diag.Range{Filename: f, Start: diag.Pos{Line: v.Line, Column: v.Column}}
				if v.Kind != yaml.ScalarNode {
					ds = ds.Append(diag.Errorf(r, k.Value, "parameter %q: expected a string, number or boolean", k.Value))
					continue
				}
				out[k.Value] = engine.Value{Text: v.Value, Source: r}
			}
		}
	}
	set := map[string]bool{}
	for _, kv := range setValues(c) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			// The value is not shown: it may be a secret.
			ds = ds.Append(diag.Errorf(diag.Range{Filename: "--set"}, "", "expected NAME=VALUE, got an argument without ="))
			continue
		}
		if set[k] {
			ds = ds.Append(diag.Errorf(diag.Range{Filename: "--set " + k}, "", "parameter %q is set twice", k).
				WithDetail("give each parameter once; a value is taken whole, commas included"))
			continue
		}
		set[k] = true
		out[k] = engine.Value{Text: v, Source: diag.Range{Filename: "--set " + k}}
	}
	return out, ds
}

// validInventory loads --boards for a command that needs it whole: with
// errors it prints them and returns exit 2.
func validInventory(c *cli.Context) (*engine.Inventory, error) {
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	inv, _ := loadInventory(c, l)
	if ds := l.Diagnostics(); ds.HasErrors() {
		printDiags(c.App.ErrWriter, ds, l.Sources())
		return nil, exit(2, "")
	}
	return inv, nil
}

// loadInventory reads the --boards files, or the built-in inventory.
func loadInventory(c *cli.Context, l *engine.Loader) (*engine.Inventory, bool) {
	inv := &engine.Inventory{}
	files := c.StringSlice("boards")
	for _, f := range files {
		for _, part := range filepath.SplitList(f) {
			l.LoadBoards(part, inv)
		}
	}
	if len(files) == 0 {
		l.LoadBoardsBytes(builtinName, builtinBoards, inv)
	}
	return inv, len(files) > 0
}

// printDiags writes diagnostics to w (text) with snippets.
func printDiags(w io.Writer, ds diag.Diagnostics, src diag.Sources) {
	diag.WriteText(w, ds, src)
}

// wholeValues collects the values of a repeatable flag, each taken whole:
// urfave/cli's StringSliceFlag splits values on commas, and a parameter's
// value may hold commas.
type wholeValues []string

// Set implements flag.Value.
func (w *wholeValues) Set(v string) error { *w = append(*w, v); return nil }

// String implements flag.Value.
func (w *wholeValues) String() string { return "" }

// setValues returns the --set arguments, in order.
func setValues(c *cli.Context) []string {
	if w, ok := c.Generic("set").(*wholeValues); ok && w != nil {
		return *w
	}
	return nil
}
