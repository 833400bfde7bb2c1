package schema

import _ "embed"

// JSON is the stock schema artifact (the tests of this package validate
// against a real schema; binaries generate theirs, see engine.Schema).
//
//go:embed jsplan.schema.json
var JSON []byte
