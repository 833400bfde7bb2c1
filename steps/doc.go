// Package steps holds jsplan's step types. Each type is one file that
// registers itself with engine.Register in init(): its action key, the
// JSON Schema of its value, how it decodes and how it runs. Import the
// package for its side effects:
//
//	import _ "github.com/jsplan/jsplan/steps"
//
// # Writing a step type
//
// A step type is one file here, or a package of a lab's own, compiled into
// a jsplan built like cmd/jsplan (see plans/examples/custom-build, whose
// expect-power step reads the board's power state back). Example
// (Example_stepType) is a complete one: wait-file, waiting for a file on
// the host.
//
//  1. The action is a struct: its fields, with yaml tags in kebab-case,
//     are the mapping form of the step's value. Durations are
//     engine.Duration (they take references such as ${{ params.t }}).
//
//  2. Register it in init() with an engine.StepType. Name is the action
//     key (`wait-file:`), Summary one line for the schema and editors,
//     Schema the JSON Schema of the value: a strict object built with
//     package schema's builders, with the shared definitions
//     (schema.Ref("duration"), "bool", "stringList", ...). A short scalar
//     form next to the mapping is one schema with a type list, not an
//     anyOf (validation stays fast and its errors plain). Config is a
//     value of the struct, so a test checks its keys are the schema's.
//     The schema a jsplan validates with is generated in the process from
//     the registered step types, so a plan using the new one is checked at
//     every key, with nothing else to do.
//
//  3. Decode turns the validated node into the action: references are
//     expanded as far as they are known; DecodeContext.Decode decodes
//     strictly, DecodeContext.Errorf reports what the schema cannot see at
//     its line and column (then return nil), DecodeContext.LocalPath
//     resolves a host path against the plan's directory.
//
//  4. Needs lists the board capabilities the step uses (drivers.CapPower,
//     ...), so a plan is checked against its board before it runs; a step
//     whose needs depend on its value implements engine.Needer. A step that
//     waits on something outside jsplan sets DefaultTimeout: no step waits
//     forever. Verbatim, NoSecrets and HostCode keep references out of
//     host commands, secrets off the board's command line, and parameters
//     from choosing host code outside the plan's directory.
//
//  5. Run performs the step. The board's capabilities come from
//     r.Board() (Power, ConsoleDevice, ...) and the console dialogue from
//     r.Console(); r.Logf writes the run log, r.Output the step's output
//     in the reports. Return diag.Failf for a failure of the software
//     under test (exit status 1) and diag.Infraf, or a driver's error, for
//     a broken infrastructure (exit status 3); honour ctx, which ends at
//     the step's timeout and on an interruption.
//
//  6. MarshalYAML, when the action's struct does not render as written,
//     gives `jsplan render` the step's value.
//
// In this repository, also run `make schema` (the checked-in schema is the
// stock binary's, for editors) and document the step in README.md.
// Drivers are written the same way: see package drivers.
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
