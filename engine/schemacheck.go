package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
)

// schemaAt returns the schema object at a JSON pointer within the schema.
func schemaAt(ptr string) map[string]any {
	var cur any = schemaDoc()
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			cur = c[tok]
		case []any:
			i := 0
			fmt.Sscan(tok, &i)
			if i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	m, _ := cur.(map[string]any)
	return m
}

func keywordPtr(ve *jsonschema.ValidationError) (ptr, keyword string) {
	loc := ve.AbsoluteKeywordLocation
	if i := strings.IndexByte(loc, '#'); i >= 0 {
		loc = loc[i+1:]
	}
	j := strings.LastIndexByte(loc, '/')
	if j < 0 {
		return "", loc
	}
	return loc[:j], loc[j+1:]
}

// schemaCheck validates f against the process's schema (Schema) and
// reports every error at its position.
//
// A valid document is checked only by the fast validator; the full
// validator, compiled on first use, explains invalid ones.
func (l *Loader) schemaCheck(f *fileDoc) {
	budget := maxAliasExpansion * 100
	v, err := toValue(f.root, &budget)
	if err != nil {
		l.report(diag.Errorf(rangeOf(f.path, f.root), "", "%v", err))
		return
	}
	if fastValid(v) {
		return
	}
	sch, err := fullSchema()
	if err != nil {
		l.report(diag.Errorf(diag.Range{Filename: f.path}, "", "internal error: schema does not compile: %v", err))
		return
	}
	err = sch.Validate(v)
	if err == nil {
		return
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		l.report(diag.Errorf(rangeOf(f.path, f.root), "", "schema validation failed: %v", err))
		return
	}
	c := &schemaReporter{l: l, f: f, seen: map[string]bool{}}
	c.walk(ve)
	sort.Strings(f.bad)
}

type schemaReporter struct {
	l    *Loader
	f    *fileDoc
	seen map[string]bool
}

func (c *schemaReporter) add(ptr string, d *diag.Diagnostic) {
	c.f.bad = append(c.f.bad, ptr)
	key := d.Subject.String() + d.Summary
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	c.l.report(d)
}

func (c *schemaReporter) at(ptr string) (*yaml.Node, *yaml.Node) { return pointerToNode(c.f.root, ptr) }

// walk turns a validation error tree into diagnostics, picking the useful
// leaves.
func (c *schemaReporter) walk(ve *jsonschema.ValidationError) {
	sptr, kw := keywordPtr(ve)
	inst := ve.InstanceLocation
	n, key := c.at(inst)
	path := pointerToPath(inst)
	r := rangeOf(c.f.path, n)
	if c.special(sptr, kw, ve, n, inst, path) {
		return
	}
	switch kw {
	case "oneOf", "anyOf":
		// Keep the branches whose shape (type) matches the value.
		var match []*jsonschema.ValidationError
		for _, cause := range ve.Causes {
			if !onlyTypeErrorsAt(cause, inst) {
				match = append(match, cause)
			}
		}
		if len(match) == 1 {
			c.walk(match[0])
			return
		}
		c.add(inst, diag.Errorf(r, path, "value does not match any allowed form").WithDetail("%s", ve.Causes[0].Message))
		return
	case "additionalProperties":
		if n != nil && n.Kind == yaml.MappingNode {
			parent := schemaAt(sptr)
			allowed := slices.Sorted(maps.Keys(propsOf(parent)))
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if _, ok := propsOf(parent)[k.Value]; ok {
					continue
				}
				d := diag.Errorf(rangeOf(c.f.path, k), joinPath(path, k.Value), "unknown key %q", k.Value)
				if s := suggest(k.Value, allowed); s != "" {
					d.WithDetail("did you mean %q?", s)
				} else if len(allowed) > 0 {
					d.WithDetail("allowed keys here: %s", strings.Join(allowed, ", "))
				}
				c.add(inst+"/"+k.Value, d)
			}
			return
		}
	case "required":
		if n != nil && n.Kind == yaml.MappingNode {
			req, _ := schemaAt(sptr)["required"].([]any)
			for _, q := range req {
				name := fmt.Sprint(q)
				if _, v := mapGet(n, name); v == nil {
					rr := r
					if key != nil {
						rr = rangeOf(c.f.path, key)
					}
					c.add(inst, diag.Errorf(rr, path, "missing required key %q", name))
				}
			}
			return
		}
	case "type":
		want := schemaAt(sptr)["type"]
		c.add(inst, diag.Errorf(r, path, "expected %s, got %s", typeWords(want), valueKind(n)))
		return
	case "const":
		c.add(inst, diag.Errorf(r, path, "%s must be %s", lastName(path), jsonText(schemaAt(sptr)["const"])))
		return
	case "enum":
		var opts []string
		for _, e := range schemaAt(sptr)["enum"].([]any) {
			opts = append(opts, jsonText(e))
		}
		d := diag.Errorf(r, path, "%s must be one of %s", lastName(path), strings.Join(opts, ", "))
		if n != nil {
			var names []string
			for _, e := range schemaAt(sptr)["enum"].([]any) {
				names = append(names, fmt.Sprint(e))
			}
			if s := suggest(n.Value, names); s != "" {
				d.WithDetail("did you mean %q?", s)
			}
		}
		c.add(inst, d)
		return
	case "pattern":
		s := schemaAt(sptr)
		if strings.HasSuffix(sptr, "/id") || strings.Contains(sptr, "propertyNames") {
			// For a key name the instance is the key itself, not its value.
			nameNode := n
			if strings.Contains(sptr, "propertyNames") && key != nil {
				nameNode = key
			}
			c.add(inst, diag.Errorf(rangeOf(c.f.path, nameNode), path, "%q is not a valid name: %s",
				valueText(nameNode), nameRule(fmt.Sprint(s["pattern"]))))
			return
		}
		d := diag.Errorf(r, path, "%q does not match the pattern %s", valueText(n), jsonText(s["pattern"]))
		if desc, ok := s["description"].(string); ok {
			d.WithDetail("expected: %s", desc)
		}
		c.add(inst, d)
		return
	case "false":
		c.add(inst, diag.Errorf(r, path, "%s is not allowed here", lastName(path)))
		return
	}
	if len(ve.Causes) > 0 {
		for _, cause := range ve.Causes {
			c.walk(cause)
		}
		return
	}
	c.add(inst, diag.Errorf(r, path, "%s", ve.Message))
}

// special handles the shared definitions whose raw errors would be
// cryptic: the step's one-action rule and the typed scalars.
func (c *schemaReporter) special(sptr, kw string, ve *jsonschema.ValidationError, n *yaml.Node, inst, path string) bool {
	r := rangeOf(c.f.path, n)
	if strings.HasPrefix(sptr, "/$defs/step/dependentSchemas/") {
		// two actions: report once, at the step
		stepPtr := inst[:strings.LastIndexByte(inst, '/')]
		sn, _ := c.at(stepPtr)
		c.actionCount(sn, stepPtr, pointerToPath(stepPtr))
		return true
	}
	switch {
	case sptr == "/$defs/step" && kw == "not":
		c.actionCount(n, inst, path)
		return true
	case sptr == "/$defs/step" && kw == "oneOf":
		return c.actionCount(n, inst, path)
	case (sptr == "/$defs/duration" || strings.HasSuffix(sptr, "/$defs/duration")) && (kw == "pattern" || kw == "type"):
		c.add(inst, diag.Errorf(r, path, "malformed duration %s", valueQuoted(n)).
			WithDetail("use a number and a unit, e.g. 30s, 5m, 1h30m, or a reference such as ${{ params.timeout }}"))
		return true
	case sptr == "/$defs/int" && (kw == "pattern" || kw == "type"):
		c.add(inst, diag.Errorf(r, path, "expected an integer, got %s", valueKind(n)))
		return true
	case sptr == "/$defs/bool" && (kw == "pattern" || kw == "type"):
		c.add(inst, diag.Errorf(r, path, "expected true or false, got %s", valueKind(n)))
		return true
	case sptr == "/$defs/stringList" && kw == "type":
		c.add(inst, diag.Errorf(r, path, "expected a string or a list of strings, got %s", valueKind(n)))
		return true
	case sptr == "/$defs/retry/properties/attempts":
		c.add(inst, diag.Errorf(r, path, "attempts must be an integer of at least 1, got %s", valueKind(n)))
		return true
	case kw == "pattern":
		// a short form written as ^(a|b|c)$ reads as a choice
		if m := choiceRE.FindStringSubmatch(fmt.Sprint(schemaAt(sptr)["pattern"])); m != nil {
			opts := strings.Split(m[1], "|")
			d := diag.Errorf(r, path, "%s must be one of %s, or a mapping", lastName(path), strings.Join(opts, ", "))
			if s := suggest(valueText(n), opts); s != "" {
				d.WithDetail("did you mean %q?", s)
			}
			c.add(inst, d)
			return true
		}
	}
	switch sptr {
	case "/$defs/duration":
		c.add(inst, diag.Errorf(r, path, "malformed duration %q", valueText(n)).
			WithDetail("use a number and a unit, e.g. 30s, 5m, 1h30m, or a reference such as ${{ params.timeout }}"))
		return true
	case "/$defs/int":
		c.add(inst, diag.Errorf(r, path, "expected an integer, got %s", valueKind(n)))
		return true
	case "/$defs/bool":
		c.add(inst, diag.Errorf(r, path, "expected true or false, got %s", valueKind(n)))
		return true
	case "/$defs/stringList":
		c.add(inst, diag.Errorf(r, path, "expected a string or a list of strings, got %s", valueKind(n)))
		return true
	case "/$defs/retry/properties/attempts":
		c.add(inst, diag.Errorf(r, path, "attempts must be an integer of at least 1, got %s", valueKind(n)))
		return true
	}
	return false
}

// nameRule says in words what a name pattern of the schema accepts.
func nameRule(pattern string) string {
	rest := "letters, digits or _"
	if strings.Contains(pattern, "_-]") {
		rest = "letters, digits, _ or -"
	}
	return "start with a letter or _, then " + rest
}

var choiceRE = regexp.MustCompile(`^\^\(([A-Za-z0-9_|-]+)\)\$$`)

// actionCount reports a step with no action or several; false when the
// step has exactly one (the error is elsewhere).
func (c *schemaReporter) actionCount(n *yaml.Node, inst, path string) bool {
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	r := rangeOf(c.f.path, n)
	var actions []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if _, ok := LookupStep(n.Content[i].Value); ok {
			actions = append(actions, n.Content[i])
		}
	}
	switch {
	case len(actions) == 0:
		var names []string
		for _, t := range StepTypes() {
			names = append(names, t.Name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if !reservedStepKeys[k] && suggest(k, names) != "" {
				// the unknown-key error already says "did you mean"
				c.f.bad = append(c.f.bad, inst)
				return true
			}
		}
		c.add(inst, diag.Errorf(r, path, "step has no action").WithDetail("add one of: %s", strings.Join(names, ", ")))
	case len(actions) > 1:
		var names []string
		for _, a := range actions {
			names = append(names, a.Value)
		}
		c.add(inst, diag.Errorf(rangeOf(c.f.path, actions[1]), path, "step has %d actions (%s); a step does exactly one thing",
			len(actions), strings.Join(names, ", ")).WithDetail("split it into %d steps", len(actions)))
	default:
		return false
	}
	return true
}

func valueQuoted(n *yaml.Node) string {
	if n == nil {
		return `""`
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

func onlyTypeErrorsAt(ve *jsonschema.ValidationError, inst string) bool {
	if len(ve.Causes) == 0 {
		_, kw := keywordPtr(ve)
		return ve.InstanceLocation == inst && (kw == "type" || kw == "const" || kw == "false")
	}
	for _, c := range ve.Causes {
		if !onlyTypeErrorsAt(c, inst) {
			return false
		}
	}
	return true
}

func propsOf(s map[string]any) map[string]any {
	p, _ := s["properties"].(map[string]any)
	return p
}

func typeWords(t any) string {
	var names []string
	switch v := t.(type) {
	case string:
		names = []string{v}
	case []any:
		for _, x := range v {
			names = append(names, fmt.Sprint(x))
		}
	}
	for i, n := range names {
		names[i] = article(n)
	}
	return strings.Join(names, " or ")
}

func article(jsonType string) string {
	switch jsonType {
	case "object":
		return "a mapping"
	case "array":
		return "a list"
	case "integer":
		return "an integer"
	case "boolean":
		return "true or false"
	case "null":
		return "nothing"
	}
	return "a " + jsonType
}

func valueKind(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing (null)"
	case "!!bool":
		return "the boolean " + n.Value
	case "!!int", "!!float":
		return "the number " + n.Value
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	return fmt.Sprintf("the string %q", v)
}

func valueText(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}

func lastName(path string) string {
	if path == "" {
		return "value"
	}
	if i := strings.LastIndexAny(path, ".["); i >= 0 && path[i] == '.' {
		return path[i+1:]
	}
	return path
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
