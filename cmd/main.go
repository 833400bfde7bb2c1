// Package cmd is jsplan's command line: every subcommand, its flags and its
// output. It is a package, not a main, so that a lab can build its own
// jsplan with its own step types and drivers: a main package blank-imports
// the stock set (drivers/all, steps) and its own, then calls Main (see
// cmd/jsplan and plans/examples/custom-build).
//
// Exit status: 0 passed (or valid), 1 a step failed, 2 invalid plan or
// usage, 3 infrastructure error, 130/143 interrupted by SIGINT/SIGTERM.
package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/engine/diag"

	"github.com/jsplan/jsplan/internal/procguard"
)

// version is set at build time with
// -ldflags "-X github.com/jsplan/jsplan/cmd.version=...".
var version = "dev"

// exitError carries an exit status to main.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func exit(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// buildVersion is version, or, for a plain `go build`, the commit it was
// built from (as the Go toolchain records it).
func buildVersion() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return version
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

func newApp(stdout, stderr io.Writer) *cli.App {
	setFlag.Value = &wholeValues{} // each run collects its own --set values
	return &cli.App{
		Name:    "jsplan",
		Usage:   "validate and run declarative hardware-in-the-loop test plans",
		Version: buildVersion(),
		Description: "A plan (YAML) lists typed steps: power, flash, wait-for-login, console, run, ansible, collect, ...\n" +
			"jsplan validates plans against its JSON Schema and runs them through drivers on a board from an inventory.\n\n" +
			"Exit status: 0 passed/valid, 1 a step failed, 2 invalid plan or usage, 3 infrastructure error,\n" +
			"130/143 interrupted by SIGINT/SIGTERM.",
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			validateCommand(),
			renderCommand(),
			applyCommand(),
			schemaCommand(),
			flashCommand(),
			serveCommand(),
			caCommand(),
			boardsCommand(),
			consoleCommand(),
			powerCommand(),
			lockCommand(),
			reportCommand(),
		},
		// A bare `jsplan` did nothing it was asked: usage, on stderr, exit 2.
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			c.App.Writer = c.App.ErrWriter
			_ = cli.ShowAppHelp(c)
			c.App.Writer = w
			return exit(2, "jsplan needs a command")
		},
		OnUsageError: usageError,
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "jsplan: unknown command %q\nRun 'jsplan --help' for usage.\n", name)
			os.Exit(2)
		},
	}
}

// usageError ends a command whose flags or arguments are wrong with a
// short message and a pointer to --help, not the whole help text.
func usageError(c *cli.Context, err error, isSubcommand bool) error {
	name := "jsplan"
	if c.Command != nil && c.Command.HelpName != "" {
		name = c.Command.HelpName
	}
	return exit(2, "%v\nRun '%s --help' for usage.", err, name)
}

func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = usageError
		setUsageErrors(c.Subcommands)
	}
}

// Main runs jsplan with the process's arguments and exits with the status
// documented above. The step types and drivers it knows are those
// registered by the packages the program imports.
func Main() {
	code := run(os.Args, os.Stdout, os.Stderr)
	procguard.Stop()
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	invocation = args
	app := newApp(stdout, stderr)
	setUsageErrors(app.Commands)
	err := app.Run(hoistFlags(app, args))
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "jsplan: "+termText(ee.msg))
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "jsplan: "+termText(err.Error()))
	var ds diag.Diagnostics
	if errors.As(err, &ds) {
		return ds.Class().ExitCode()
	}
	return 2
}
