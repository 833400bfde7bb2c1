package engine

import (
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file is the one place step actions and driver configurations are
// decoded: strictly (a key the Go struct has no field for is an error, as
// Caddy decodes every module), with errors at their node.

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// decodeStrict decodes n into v (a pointer). It returns the first key of n
// that v has no field for, or else the decode error.
func decodeStrict(n *yaml.Node, v any) (unknown *yaml.Node, err error) {
	if k := unknownKey(n, reflect.TypeOf(v)); k != nil {
		return k, nil
	}
	return nil, n.Decode(v)
}

// unknownKey walks n along type t and returns the first mapping key that t
// has no field for. Types with their own UnmarshalYAML are trusted.
func unknownKey(n *yaml.Node, t reflect.Type) *yaml.Node {
	n = resolveAlias(n)
	if n == nil || t == nil {
		return nil
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if reflect.PointerTo(t).Implements(unmarshalerType) {
			return nil
		}
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := YAMLFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			f, ok := fields[n.Content[i].Value]
			if !ok {
				return n.Content[i]
			}
			if k := unknownKey(n.Content[i+1], f.Type); k != nil {
				return k
			}
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			if k := unknownKey(c, t.Elem()); k != nil {
				return k
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if k := unknownKey(n.Content[i], t.Elem()); k != nil {
				return k
			}
		}
	}
	return nil
}

// YAMLFields maps the YAML keys of struct type t (as yaml.v3 names them,
// inlined structs included) to their fields.
func YAMLFields(t reflect.Type) map[string]reflect.StructField {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]reflect.StructField{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			for k, v := range YAMLFields(f.Type) {
				v.Index = append([]int{i}, v.Index...)
				out[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}
