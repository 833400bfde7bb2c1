package engine

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/jsplan/jsplan/schema"
)

// processSchema is the schema this process validates with: generated from
// the step types and drivers registered in it and compiled into the fast
// validator once, on first use. Step types and drivers register in init
// functions, so every one is in the registries by then.
type processSchema struct {
	compact []byte       // for the validators
	fast    *schema.Fast // nil when it does not compile: the full validator decides
}

var liveSchema = sync.OnceValue(func() *processSchema {
	p := &processSchema{compact: generateSchema(false)}
	p.fast, _ = schema.CompileFast(p.compact)
	return p
})

// fullSchema is the full validator of the process's schema, compiled only
// when a document is invalid (it explains why).
var fullSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	return schema.Compile(liveSchema().compact)
})

// schemaDoc is the parsed schema, read only when an error needs the list
// of allowed keys.
var schemaDoc = sync.OnceValue(func() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(liveSchema().compact, &m)
	return m
})

// printedSchema is the process's schema as `jsplan schema` prints it:
// indented, as GenerateSchema writes it.
var printedSchema = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	if err := json.Indent(&b, bytes.TrimSpace(liveSchema().compact), "", "  "); err != nil {
		panic(err) // encoding/json wrote it
	}
	b.WriteByte('\n')
	return b.Bytes()
})

// Schema returns the JSON Schema (draft 2020-12) this process validates
// plans and inventories with, generated once from the registered step types
// and drivers (GenerateSchema). The stock binary's is checked in as
// schema/jsplan.schema.json; a jsplan built with more step types or
// drivers has a larger one. The caller must not modify the result.
func Schema() []byte { return printedSchema() }

// fastValid reports whether v satisfies the process's schema, using the
// fast validator; false when it cannot tell (the full validator decides).
func fastValid(v any) bool {
	f := liveSchema().fast
	return f != nil && f.Valid(v)
}
