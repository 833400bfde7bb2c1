// Package schematest checks drivers' JSON Schema fragments in tests: the
// schema compiles as draft 2020-12, and sample configurations pass or fail
// it, and decode strictly into the driver's config struct.
package schematest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v5"
	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
)

// Compile compiles schema, failing the test when it is not valid.
func Compile(t *testing.T, schema map[string]any) *jsonschema.Schema {
	t.Helper()
	raw, err := json.Marshal(schema)
	if err != nil {
		t.Fatalf("schema does not marshal: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	if err := c.AddResource("mem://driver.json", bytes.NewReader(raw)); err != nil {
		t.Fatalf("schema: %v", err)
	}
	s, err := c.Compile("mem://driver.json")
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return s
}

// Valid reports whether the YAML document doc passes schema.
func Valid(t *testing.T, s *jsonschema.Schema, doc string) error {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("bad test YAML %q: %v", doc, err)
	}
	// Round-trip through JSON so numbers and maps have JSON types.
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("test YAML %q: %v", doc, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var jv any
	if err := dec.Decode(&jv); err != nil {
		t.Fatal(err)
	}
	return s.Validate(jv)
}

// Decode decodes doc strictly (unknown keys rejected) into a new device of
// the registered driver name, as the engine does.
func Decode(t *testing.T, name, doc string) (drivers.Device, error) {
	t.Helper()
	info, ok := drivers.Lookup(name)
	if !ok {
		t.Fatalf("driver %q not registered", name)
	}
	dev := info.New()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(dev); err != nil {
		return nil, err
	}
	return dev, nil
}

// Check compiles the registered driver's schema, and for every good
// document checks it passes the schema, decodes, validates (when the
// device implements drivers.Validator) and serves at least one capability,
// each through its interface (drivers.CheckCapabilities); every bad
// document must be rejected by the schema.
func Check(t *testing.T, name string, good, bad []string) {
	t.Helper()
	info, ok := drivers.Lookup(name)
	if !ok {
		t.Fatalf("driver %q not registered", name)
	}
	if info.Summary == "" {
		t.Errorf("driver %q: missing Summary", name)
	}
	s := Compile(t, info.Schema)
	for _, doc := range good {
		if err := Valid(t, s, doc); err != nil {
			t.Errorf("schema rejects good config %q: %v", doc, err)
		}
		dev, err := Decode(t, name, doc)
		if err != nil {
			t.Errorf("good config %q does not decode: %v", doc, err)
			continue
		}
		if v, ok := dev.(drivers.Validator); ok {
			if err := drivers.Fatal(v.Validate()); err != nil {
				t.Errorf("good config %q fails Validate: %v", doc, err)
			}
		}
		if len(dev.Capabilities()) == 0 {
			t.Errorf("good config %q: the device serves no capability", doc)
		}
		if err := drivers.CheckCapabilities(dev); err != nil {
			t.Errorf("good config %q: %v", doc, err)
		}
	}
	for _, doc := range bad {
		if err := Valid(t, s, doc); err == nil {
			t.Errorf("schema accepts bad config %q", doc)
		}
	}
}
