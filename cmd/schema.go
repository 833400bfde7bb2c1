package cmd

import (
	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/engine"
)

func schemaCommand() *cli.Command {
	return &cli.Command{
		Name:  "schema",
		Usage: "print the JSON Schema (draft 2020-12) of plans and inventories",
		Description: "The schema is the one this jsplan validates with, generated from the step types and\n" +
			"drivers built into it; editors and other validators (ajv, check-jsonschema) accept it and agree\n" +
			"with jsplan on what is valid.",
		Action: func(c *cli.Context) error {
			_, err := c.App.Writer.Write(engine.Schema())
			return err
		},
	}
}
