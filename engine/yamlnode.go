package engine

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
)

// rangeOf is the source range of a node: its start, and for scalars its
// end on the same line.
func rangeOf(file string, n *yaml.Node) diag.Range {
	if n == nil {
		return diag.Range{Filename: file}
	}
	r := diag.Range{Filename: file, Start: diag.Pos{Line: n.Line, Column: n.Column}}
	if n.Kind == yaml.ScalarNode && n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 && !strings.Contains(n.Value, "\n") {
		w := utf8.RuneCountInString(n.Value)
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			w += 2
		}
		if w == 0 {
			w = 1
		}
		r.End = diag.Pos{Line: n.Line, Column: n.Column + w}
	}
	return r
}

// mapGet returns the key and value nodes of key in mapping n.
func mapGet(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// resolveAlias follows aliases.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// maxAliasDepth bounds alias expansion so "billion laughs" documents cannot
// exhaust memory.
const maxAliasExpansion = 10000

// toValue converts a node tree to JSON-like values for the schema
// validator. Integers stay int64, floats float64.
func toValue(n *yaml.Node, budget *int) (any, error) {
	n = resolveAlias(n)
	if n == nil {
		return nil, nil
	}
	*budget--
	if *budget < 0 {
		return nil, fmt.Errorf("document too large or too many alias expansions")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return toValue(n.Content[0], budget)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolveAlias(n.Content[i])
			if k.Tag == "!!merge" {
				continue // merge keys are rejected separately
			}
			v, err := toValue(n.Content[i+1], budget)
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := toValue(c, budget)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case yaml.ScalarNode:
		return scalarValue(n), nil
	}
	return nil, nil
}

// scalarValue gives a scalar's typed value following YAML 1.2 core tags, as
// yaml.v3 resolves them.
func scalarValue(n *yaml.Node) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i
		}
		var f float64
		if n.Decode(&f) == nil {
			return f
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f
		}
		return n.Value
	}
	return n.Value
}

// pointerToNode finds the node at a JSON pointer ("/steps/0/run") in the
// document root, and the key node when the last token is a mapping key.
func pointerToNode(root *yaml.Node, ptr string) (node, key *yaml.Node) {
	n := resolveAlias(root)
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if ptr == "" || ptr == "/" {
		return n, nil
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = unescapeToken(tok)
		n = resolveAlias(n)
		switch {
		case n == nil:
			return nil, nil
		case n.Kind == yaml.MappingNode:
			k, v := mapGet(n, tok)
			if v == nil {
				return n, nil
			}
			n, key = v, k
		case n.Kind == yaml.SequenceNode:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n.Content) {
				return n, nil
			}
			n, key = n.Content[i], nil
		default:
			return n, nil
		}
	}
	return resolveAlias(n), key
}

// unescapeToken decodes one token of an instance location: the schema
// validator escapes keys for a URL fragment as well as for a JSON pointer.
func unescapeToken(tok string) string {
	if u, err := url.PathUnescape(tok); err == nil {
		tok = u
	}
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
}

// pointerToPath turns "/steps/0/flash/image" into "steps[0].flash.image".
func pointerToPath(ptr string) string {
	if ptr == "" || ptr == "/" {
		return ""
	}
	var b strings.Builder
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = unescapeToken(tok)
		if _, err := strconv.Atoi(tok); err == nil {
			fmt.Fprintf(&b, "[%s]", tok)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// checkStructure reports what JSON Schema cannot see: duplicate keys,
// non-string keys, merge keys and anchors/aliases.
func checkStructure(file string, n *yaml.Node, path string, ds *diag.Diagnostics) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			checkStructure(file, c, path, ds)
		}
	case yaml.MappingNode:
		seen := make(map[string]*yaml.Node, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				*ds = ds.Append(diag.Errorf(rangeOf(file, k), path, "a mapping key must be a plain string"))
				continue
			}
			if k.Tag == "!!merge" {
				*ds = ds.Append(diag.Errorf(rangeOf(file, k), path, "merge keys (<<) are not supported").
					WithDetail("write the keys out, or share steps with `use:`"))
				continue
			}
			kp := joinPath(path, k.Value)
			if prev, dup := seen[k.Value]; dup {
				*ds = ds.Append(diag.Errorf(rangeOf(file, k), kp, "duplicate key %q", k.Value).
					WithDetail("first defined at line %d, column %d", prev.Line, prev.Column))
			} else {
				seen[k.Value] = k
			}
			checkStructure(file, n.Content[i+1], kp, ds)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			checkStructure(file, c, fmt.Sprintf("%s[%d]", path, i), ds)
		}
	case yaml.AliasNode:
		*ds = ds.Append(diag.Errorf(rangeOf(file, n), path, "YAML aliases (*%s) are not supported", n.Value).
			WithDetail("share values with params, or steps with `use:`"))
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
