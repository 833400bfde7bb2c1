package engine

import "gopkg.in/yaml.v3"

// SchemaValue converts a YAML node tree to the value the schema check
// validates (for tests in package engine_test).
func SchemaValue(n *yaml.Node) (any, error) {
	budget := maxAliasExpansion * 100
	return toValue(n, &budget)
}
