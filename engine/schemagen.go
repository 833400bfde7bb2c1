package engine

import (
	"bytes"
	"encoding/json"
	"sort"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/schema"
)

// APIVersion is the version of the document format this engine reads
// (schema.APIVersion: declared once, beside the schema).
const APIVersion = schema.APIVersion

// SchemaID is the $id of the generated schema: where it is published.
const SchemaID = schema.URL

const exprPattern = `^\s*\$\{\{[^}]*\}\}\s*$`

// The schema builders are schema's; these are short local names.
type obj = schema.Obj

var (
	ref          = schema.Ref
	strictObject = schema.Object
)

// GenerateSchema builds the JSON Schema of jsplan documents from the
// registered step types and drivers, anew on each call (validation uses
// Schema, built once). schema/jsplan.schema.json is the stock binary's
// output, checked by a test so the two never drift.
func GenerateSchema() []byte { return generateSchema(true) }

// generateSchema builds the schema, indented for people or compact for the
// validators (indenting is a third of the time).
func generateSchema(indent bool) []byte {
	defs := obj{
		// Alternatives are written as type lists whose keywords apply to one
		// type each (pattern to strings, items to arrays) rather than anyOf:
		// no failing branch is ever evaluated, which keeps validation fast.
		"expr": obj{"type": "string", "pattern": exprPattern,
			"description": "A reference such as ${{ params.timeout }}, resolved before the run."},
		"duration": obj{"description": "A duration: a number and a unit (ms, s, m, h), e.g. 30s, 1m30s; or a reference.",
			"type": "string", "pattern": "(" + schema.DurationPattern + ")|(" + exprPattern + ")"},
		"int":        obj{"type": []any{"integer", "string"}, "pattern": exprPattern, "description": "An integer or a reference."},
		"bool":       obj{"type": []any{"boolean", "string"}, "pattern": exprPattern, "description": "true, false or a reference."},
		"stringList": obj{"type": []any{"string", "array"}, "items": obj{"type": "string"}},
		"stringMap":  obj{"type": "object", "additionalProperties": obj{"type": []any{"string", "number", "boolean"}}},
		"retry": strictObject("Run the step again when it fails.", obj{
			"attempts": obj{"description": "Total number of attempts (1 = no retry).", "type": []any{"integer", "string"}, "minimum": 1, "pattern": exprPattern},
			"delay":    obj{"$ref": "#/$defs/duration", "description": "Pause between attempts."},
		}, "attempts"),
		"steps": obj{"type": "array", "items": ref("step")},
		"param": strictObject("A plan parameter.", obj{
			"type":        obj{"enum": []any{"string", "integer", "boolean", "duration", "enum", "path"}, "description": "The value's type (default string). A path given on the command line is relative to the working directory; a default, to the plan's directory."},
			"description": obj{"type": "string"},
			"default":     obj{"type": []any{"string", "integer", "boolean", "number"}},
			"required":    obj{"type": "boolean", "description": "The run needs a value for it; it has no default."},
			"secret":      obj{"type": "boolean", "description": "Never printed: masked in logs, reports and artifacts."},
			"values":      obj{"type": "array", "items": obj{"type": "string"}, "minItems": 1, "description": "The allowed values of an enum."},
		}),
	}

	stepProps := obj{
		"name":              obj{"type": "string", "description": "A human name for reports."},
		"id":                obj{"type": "string", "pattern": `^[A-Za-z_][A-Za-z0-9_-]*$`, "description": "A unique id within the plan."},
		"timeout":           obj{"$ref": "#/$defs/duration", "description": "Fail the step when it runs longer (per attempt)."},
		"retry":             ref("retry"),
		"continue-on-error": obj{"$ref": "#/$defs/bool", "description": "A failure of this step does not fail the plan."},
		"on":                obj{"type": "string", "pattern": `^[A-Za-z_][A-Za-z0-9_-]*$`, "description": "The board role (boards:) the step runs on; default: where the enclosing step runs, at the top the first role."},
	}
	var common, actions []any
	for k := range reservedStepKeys {
		common = append(common, k)
	}
	sort.Slice(common, func(i, j int) bool { return common[i].(string) < common[j].(string) })
	for _, t := range StepTypes() {
		s := t.Schema
		if s == nil {
			s = obj{}
		}
		defs["step."+t.Name] = s
		stepProps[t.Name] = obj{"$ref": "#/$defs/step." + t.Name, "description": t.Summary}
		actions = append(actions, t.Name)
	}
	step := strictObject("A step: common keys and exactly one action key.", stepProps)
	// At least one action: not every key may be a common one.
	step["not"] = obj{"propertyNames": obj{"enum": common}}
	// At most one action: each action key excludes the others.
	dep := obj{}
	for _, a := range actions {
		others := obj{}
		for _, b := range actions {
			if a != b {
				others[b.(string)] = false
			}
		}
		dep[a.(string)] = obj{"properties": others}
	}
	step["dependentSchemas"] = dep
	defs["step"] = step

	defs["selector"] = strictObject("Which board plays the role: by name or by labels.", obj{
		"name":   obj{"type": "string"},
		"labels": obj{"type": "object", "additionalProperties": obj{"type": "string"}},
	})
	defs["resourceRequest"] = obj{"type": []any{"string", "object"}, "pattern": ResourceNamePattern,
		"description":          "A resource by name, or {name: NAME} or {kind: KIND}.",
		"properties":           obj{"name": obj{"type": "string", "pattern": ResourceNamePattern}, "kind": obj{"type": "string"}},
		"additionalProperties": false, "minProperties": 1, "maxProperties": 1}
	defs["Plan"] = strictObject("A test plan, or a library of steps used by other plans.", obj{
		"apiVersion":  obj{"const": APIVersion},
		"kind":        obj{"const": "Plan"},
		"name":        obj{"type": "string", "description": "The plan's name (file name when absent)."},
		"description": obj{"type": "string"},
		"params":      obj{"type": "object", "description": "Typed parameters (the inputs of a library plan).", "propertyNames": obj{"pattern": `^[A-Za-z_][A-Za-z0-9_-]*$`}, "additionalProperties": ref("param")},
		"board": strictObject("Which board runs the plan: by name or by labels.", obj{
			"name":   obj{"type": "string"},
			"labels": obj{"type": "object", "additionalProperties": obj{"type": "string"}},
		}),
		"boards": obj{"type": "object", "minProperties": 1, "propertyNames": obj{"pattern": `^[A-Za-z_][A-Za-z0-9_-]*$`},
			"description":          "Several boards: each role (dut, peer, ...) with its selector. Steps say where they run with on: ROLE (default: the first role).",
			"additionalProperties": ref("selector")},
		"same": obj{"type": "array", "items": obj{"type": "string"}, "minItems": 1,
			"description": "Labels whose value every role's board shares (e.g. [bus]: boards wired to the same bus)."},
		"resources": obj{"type": "array", "items": ref("resourceRequest"),
			"description": "Shares of the inventory's shared resources the run holds: a name (can0) or {kind: canbus} (one attached to every board)."},
		"timeout": obj{"$ref": "#/$defs/duration", "description": "The whole plan's time limit (finally steps have their own grace)."},
		"fail-on": obj{"type": "array", "items": obj{"type": "string"}, "description": "Console regexes that fail the run at once (e.g. Kernel panic)."},
		"steps":   ref("steps"),
		"finally": obj{"$ref": "#/$defs/steps", "description": "Steps that always run, after success, failure, timeout or interruption."},
	}, "apiVersion", "kind", "steps")

	drvProps := obj{}
	for _, name := range drivers.Names() {
		info, _ := drivers.Lookup(name)
		s := info.Schema
		if s == nil {
			s = obj{"type": "object"}
		}
		defs["driver."+name] = s
		drvProps[name] = obj{"$ref": "#/$defs/driver." + name, "description": info.Summary}
	}
	boardProps := obj{
		"name":   obj{"type": "string", "pattern": `^[A-Za-z0-9][A-Za-z0-9_.-]*$`},
		"labels": obj{"type": "object", "additionalProperties": obj{"type": "string"}},
		"vars":   obj{"type": "object", "additionalProperties": obj{"type": "string"}, "description": "Values plans read as ${{ board.vars.NAME }}."},
		"resources": obj{"type": "array", "items": obj{"type": "string", "pattern": ResourceNamePattern},
			"description": "The shared resources (inventory resources:) this board is attached to."},
		"drivers": obj{"type": "object", "minProperties": 1, "additionalProperties": false, "properties": drvProps, "description": "Driver name to its configuration."},
	}
	for _, c := range drivers.AllCapabilities {
		boardProps[string(c)] = obj{"type": "string", "description": "The driver that serves " + string(c) + " when several could."}
	}
	boardProps["health"] = healthSchema(false)
	defs["board"] = strictObject("A board and the drivers it is composed of.", boardProps, "name", "drivers")
	defs["Boards"] = strictObject("An inventory of boards.", obj{
		"apiVersion": obj{"const": APIVersion},
		"kind":       obj{"const": "Boards"},
		"boards":     obj{"type": "array", "items": ref("board")},
		"resources": obj{"type": "array", "items": ref("resource"),
			"description": "Shared resources (a CAN bus, a network segment) boards attach to; a run holds a share of one."},
		"health": obj{"type": "array", "items": healthSchema(true), "description": "Health checks for kinds of boards, by labels (a board's own health: wins)."},
	}, "apiVersion", "kind", "boards")
	defs["resource"] = strictObject("A shared resource: several runs may hold it at once, up to its capacity.", obj{
		"name":     obj{"type": "string", "pattern": ResourceNamePattern, "description": "Unique in the inventory; a DNS label."},
		"kind":     obj{"type": "string", "description": "What it is, e.g. canbus or ethernet."},
		"capacity": obj{"type": "integer", "minimum": 1, "description": "How many runs may hold it at once (default 1)."},
	}, "name", "kind")

	root := obj{
		"$schema":    "https://json-schema.org/draft/2020-12/schema",
		"$id":        SchemaID,
		"$comment":   "Printed by `jsplan schema`: generated from the step types and drivers built into that jsplan. The stock one lives at schema/jsplan.schema.json in the jsplan repository (make schema); point editors at it with a yaml-language-server modeline.",
		"title":      "jsplan documents (Plan, Boards)",
		"type":       "object",
		"required":   []any{"apiVersion", "kind"},
		"properties": obj{"apiVersion": obj{"const": APIVersion}, "kind": obj{"enum": []any{"Plan", "Boards"}}},
		"allOf": []any{
			obj{"if": obj{"properties": obj{"kind": obj{"const": "Plan"}}, "required": []any{"kind"}}, "then": ref("Plan")},
			obj{"if": obj{"properties": obj{"kind": obj{"const": "Boards"}}, "required": []any{"kind"}}, "then": ref("Boards")},
		},
		"$defs": defs,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(root); err != nil {
		panic(err) // only maps, slices and strings: cannot fail
	}
	return buf.Bytes()
}
