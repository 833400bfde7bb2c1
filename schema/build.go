package schema

import (
	"strings"
	"time"
)

// APIVersion is the version of the document format jsplan reads.
const APIVersion = "jsplan.dev/v1"

// DurationPattern is the one pattern of a duration string in Go syntax
// ("90s", "1m30s", "250ms") everywhere in the schema: plans, step types and
// driver configurations.
const DurationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`

// Obj is a JSON Schema object under construction.
type Obj = map[string]any

// The builders below are the one set every part of jsplan writes its
// schema with: the engine (documents, steps), the step types and the
// drivers.

// Ref refers to a shared definition of the document schema by name
// ("duration", "bool", "stringList", ...).
func Ref(name string) Obj { return Obj{"$ref": "#/$defs/" + name} }

// Object is a strict object (unknown keys rejected) with the given
// properties. desc may be empty.
func Object(desc string, props Obj, required ...string) Obj {
	o := Obj{"type": "object", "additionalProperties": false, "properties": props}
	if desc != "" {
		o["description"] = desc
	}
	if len(required) > 0 {
		r := make([]any, len(required))
		for i, k := range required {
			r[i] = k
		}
		o["required"] = r
	}
	return o
}

// String is a string property.
func String(desc string) Obj { return Obj{"type": "string", "description": desc} }

// NonEmpty is a string property that may not be empty.
func NonEmpty(desc string) Obj { return Obj{"type": "string", "minLength": 1, "description": desc} }

// Described returns a copy of o with its description set.
func Described(o Obj, desc string) Obj {
	c := Obj{}
	for k, v := range o {
		c[k] = v
	}
	c["description"] = desc
	return c
}

// WithDefault returns a copy of o with its default set: pass the Go
// constant the code uses, so the default is declared once.
func WithDefault(o Obj, def any) Obj {
	c := Obj{}
	for k, v := range o {
		c[k] = v
	}
	if d, ok := def.(time.Duration); ok {
		def = FormatDuration(d)
	}
	c["default"] = def
	return c
}

// Duration is a duration string property of a driver configuration; a
// non-zero def is its default (the Go constant the driver uses).
func Duration(desc string, def time.Duration) Obj {
	p := Obj{"type": "string", "pattern": DurationPattern, "description": desc}
	if def != 0 {
		p["default"] = FormatDuration(def)
	}
	return p
}

// FormatDuration writes d the short way people write it: 30s, 1m30s, 2h,
// 500ms (time.Duration.String gives 1m0s and 2h0m0s).
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
