// Package schema holds the pieces of the JSON Schema (draft 2020-12) of
// jsplan documents: the builders step types and drivers describe their
// configuration with, and the two validators (Compile, the full one that
// explains errors; CompileFast, the fast one that only says valid or not).
//
// The schema itself is generated in each process from the step types and
// drivers registered there (engine.Schema), so a step or driver compiled
// into a custom jsplan is validated like a stock one. jsplan.schema.json,
// next to this file, is the stock binary's schema kept as an artifact for
// editors (yaml-language-server modelines point at it; `make schema`
// regenerates it and a test fails when it is stale).
package schema

import (
	"bytes"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// URL is the $id the schema is compiled under.
const URL = "https://jsplan.dev/schema/v1/jsplan.schema.json"

// Compile compiles a schema document given as JSON.
func Compile(doc []byte) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	c.AssertFormat = false
	if err := c.AddResource(URL, bytes.NewReader(doc)); err != nil {
		return nil, err
	}
	return c.Compile(URL)
}
