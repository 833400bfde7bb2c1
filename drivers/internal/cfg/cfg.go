// Package cfg holds small helpers shared by the hardware drivers'
// configuration code: a Duration that YAML reads only from strings such as
// "30s", and builders for the JSON Schema fragments the drivers register.
package cfg

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration read from a YAML string in Go syntax
// ("500ms", "30s", "2m"). A bare number is rejected, because YAML would
// otherwise read `timeout: 30` as 30 nanoseconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Or returns d, or def when d is zero (not configured).
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return fmt.Errorf("line %d: duration must be a string with a unit, like \"30s\" or \"500ms\", not %q", n.Line, n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q: write it like \"30s\" or \"500ms\"", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// DurationPattern is the JSON Schema pattern of a Duration string.
const DurationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`

// DurationProp is the schema of a Duration property.
func DurationProp(description, def string) map[string]any {
	p := map[string]any{
		"type":        "string",
		"pattern":     DurationPattern,
		"description": description,
	}
	if def != "" {
		p["default"] = def
	}
	return p
}

// StringProp is the schema of a string property.
func StringProp(description string) map[string]any {
	return map[string]any{"type": "string", "minLength": 1, "description": description}
}

// CommandProp is the schema of a command: an argv list run directly, or a
// string run with `sh -c`.
func CommandProp(description string) map[string]any {
	return map[string]any{
		"description": description + " Either a list of arguments run directly (no shell), or a string run with `sh -c`.",
		"oneOf": []any{
			map[string]any{"type": "string", "minLength": 1},
			map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "string"}},
		},
	}
}

// Object is the schema (draft 2020-12) of a driver configuration object
// with the given properties; unknown keys are rejected. It has no
// "$schema" keyword, since it is embedded in the Boards inventory schema
// (draft 2020-12 allows "$schema" only at a schema resource's root).
func Object(description string, props map[string]any, required ...string) map[string]any {
	s := map[string]any{
		"type":                 "object",
		"description":          description,
		"additionalProperties": false,
		"properties":           props,
	}
	if len(required) > 0 {
		r := make([]any, len(required))
		for i, k := range required {
			r[i] = k
		}
		s["required"] = r
	}
	return s
}
