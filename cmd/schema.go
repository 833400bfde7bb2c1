package cmd

import (
	"github.com/urfave/cli/v2"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/schema"
)

func schemaCommand() *cli.Command {
	return &cli.Command{
		Name:  "schema",
		Usage: "print the JSON Schema (draft 2020-12) of plans and inventories",
		Description: "The schema is the one jsplan validates with; editors and other validators (ajv,\n" +
			"check-jsonschema) accept it and agree with jsplan on what is valid.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "generate", Hidden: true,
			Usage: "print the schema generated from the registries (make schema writes it to schema/)"}},
		Action: func(c *cli.Context) error {
			if c.Bool("generate") {
				_, err := c.App.Writer.Write(engine.GenerateSchema())
				return err
			}
			_, err := c.App.Writer.Write(schema.JSON)
			return err
		},
	}
}
