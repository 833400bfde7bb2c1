// Package steps holds jsplan's step types. Each type is one file that
// registers itself with engine.Register in init(): its action key, the
// JSON Schema of its value, how it decodes and how it runs. Import the
// package for its side effects:
//
//	import _ "github.com/jsplan/jsplan/steps"
//
// The console dialogues (wait-for-login, console send/expect, run) go
// through the engine's console Session, not google/goexpect, because it is
// measurably better at their job: goexpect matches its whole buffer again
// after every read, so finding a login prompt behind a 2 MiB boot log took
// about 420 ms against 2-3 ms with Session (256 KiB: 3-6 ms against under
// 1 ms; BenchmarkLoginPrompt in engine/console, 2 shared cores), and it
// needs a reader of its own where the engine keeps one reader per console
// (console log, fail-on, secret masking). goexpect drives the one-shot
// console probe of `jsplan boards list --check`.
package steps

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/schema"
)

// The schema builders are schema's; these are short local names.
type obj = schema.Obj

var (
	ref       = schema.Ref
	str       = schema.String
	described = schema.Described
)

// object is a strict JSON Schema object.
func object(props obj, required ...string) obj { return schema.Object("", props, required...) }

// shortOr is a schema that accepts a short scalar form or the full
// object. It is one schema with a type list, not an anyOf: object keywords
// apply only to objects and string keywords only to strings, so a validator
// never evaluates a failing branch (fast, and its errors stay plain).
func shortOr(short obj, full obj) obj {
	out := obj{}
	for k, v := range full {
		out[k] = v
	}
	types := []any{"object"}
	switch t := short["type"].(type) {
	case string:
		types = append([]any{t}, types...)
	case []any:
		types = append(append([]any{}, t...), types...)
	}
	if enum, ok := short["enum"].([]any); ok {
		var alts []string
		for _, e := range enum {
			alts = append(alts, regexp.QuoteMeta(fmt.Sprint(e)))
		}
		types = append([]any{"string"}, types...)
		out["pattern"] = "^(" + strings.Join(alts, "|") + ")$"
	}
	for _, k := range []string{"pattern", "items"} {
		if v, ok := short[k]; ok {
			out[k] = v
		}
	}
	if r, ok := short["$ref"].(string); ok && r == "#/$defs/stringList" {
		types = append([]any{"string", "array"}, types...)
		out["items"] = obj{"type": "string"}
	}
	out["type"] = types
	return out
}

// scalarOr decodes n into full unless it is a scalar, which goes to short.
func scalarOr(dc *engine.DecodeContext, n *yaml.Node, short *string, full any) bool {
	if n.Kind == yaml.ScalarNode {
		*short = n.Value
		return true
	}
	return dc.Decode(n, full)
}
