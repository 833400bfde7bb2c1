package engine

import "gopkg.in/yaml.v3"

// SchemaValue converts a YAML node tree to the value the schema check
// validates (for tests in package engine_test).
func SchemaValue(n *yaml.Node) (any, error) {
	budget := maxAliasExpansion * 100
	return toValue(n, &budget)
}

// SchemaValid reports what the fast and the full validator of the process's
// schema say of v (they must agree).
func SchemaValid(v any) (fast, full bool, err error) {
	sch, err := fullSchema()
	if err != nil {
		return false, false, err
	}
	return fastValid(v), sch.Validate(v) == nil, nil
}

// CompactSchema generates the schema the validators compile (unindented).
func CompactSchema() []byte { return generateSchema(false) }
