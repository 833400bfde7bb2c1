// Package schema holds the JSON Schema (draft 2020-12) of jsplan documents,
// embedded in the binary. The file is generated from the step and driver
// registries (`make schema`, engine.GenerateSchema); a test fails when the
// two differ, so third-party validators and jsplan always agree.
package schema

import (
	"bytes"
	_ "embed"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// JSON is the schema document.
//
//go:embed jsplan.schema.json
var JSON []byte

// URL is the $id the schema is compiled under.
const URL = "https://jsplan.dev/schema/v1/jsplan.schema.json"

var (
	once     sync.Once
	compiled *jsonschema.Schema
	compErr  error
)

// Compiled returns the compiled schema; it is compiled once per process.
func Compiled() (*jsonschema.Schema, error) {
	once.Do(func() { compiled, compErr = Compile(JSON) })
	return compiled, compErr
}

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
