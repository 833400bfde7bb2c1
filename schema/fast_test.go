package schema

import (
	_ "embed"
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// JSON is the stock schema artifact (the tests of this package validate
// against a real schema; binaries generate theirs, see engine.Schema).
//
//go:embed jsplan.schema.json
var JSON []byte

// typicalPlan is the plan internal/bench/validate-bench.sh validates.
const typicalPlan = `apiVersion: jsplan.dev/v1
kind: Plan
name: plan-1
params:
  image: {type: string, default: image-1.img}
  password: {type: string, secret: true, default: pw}
board: {labels: {kind: virtual}}
timeout: 30m
fail-on: ["Kernel panic"]
steps:
  - power: off
  - flash: {image: "${{ params.image }}", verify: true}
  - power: on
  - wait-for-login: {username: root, password: "${{ params.password }}"}
  - run: {command: "uname -a", expect-output: "Linux"}
  - console: {send: "<ENTER>", expect: ["# $", "login:"]}
  - collect: {paths: [/var/log/messages], to: logs}
    timeout: 2m
    retry: {attempts: 2, delay: 5s}
finally:
  - power: off
`

// yamlValue decodes YAML into schema values (integers as int64).
func yamlValue(t testing.TB, doc string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	var conv func(any) any
	conv = func(v any) any {
		switch v := v.(type) {
		case int:
			return int64(v)
		case map[string]any:
			for k, x := range v {
				v[k] = conv(x)
			}
		case []any:
			for i, x := range v {
				v[i] = conv(x)
			}
		}
		return v
	}
	return conv(v)
}

func TestFastCompilesOurSchema(t *testing.T) {
	f, err := CompileFast(JSON)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Valid(yamlValue(t, typicalPlan)) {
		t.Error("typical plan is invalid")
	}
	bad := strings.Replace(typicalPlan, "timeout: 30m", "timeout: 30 minutes", 1)
	if f.Valid(yamlValue(t, bad)) {
		t.Error("plan with a malformed duration is valid")
	}
}

func TestFastRejectsUnsupportedKeywords(t *testing.T) {
	for _, doc := range []string{
		`{"type": "object", "patternProperties": {"^a": true}}`,
		`{"properties": {"a": {"format": "email"}}}`,
		`{"$defs": {"x": {"unevaluatedProperties": false}}, "$ref": "#/$defs/x"}`,
		`{"items": [{"type": "string"}]}`,
		`{"$ref": "other.json#/x"}`,
		`{"$ref": "#/$defs/missing"}`,
		`{"properties": {"a": {"$id": "sub"}}}`,
		`{"minimum": 0.10}`,
		`{"pattern": "(?<=a)"}`,
	} {
		if _, err := CompileFast([]byte(doc)); err == nil {
			t.Errorf("CompileFast(%s) succeeded, want an error", doc)
		} else if !strings.Contains(err.Error(), "schema:") {
			t.Errorf("CompileFast(%s): error %q does not say where", doc, err)
		}
	}
	_, err := CompileFast([]byte(`{"type": "object", "patternProperties": {"^a": true}}`))
	if err == nil || !strings.Contains(err.Error(), `"patternProperties"`) {
		t.Errorf("error %v does not name the keyword", err)
	}
}

// TestFastSemantics compares Fast with the full validator on small schemas
// for each supported keyword and values of every type.
func TestFastSemantics(t *testing.T) {
	schemas := []string{
		`{"type": "integer"}`,
		`{"type": ["integer", "string"], "pattern": "^a"}`,
		`{"type": "number", "minimum": 1, "maximum": 3}`,
		`{"exclusiveMinimum": 1, "exclusiveMaximum": 3}`,
		`{"minimum": 1.5}`,
		`{"const": 2}`,
		`{"const": {"a": [1, "x"]}}`,
		`{"enum": ["a", 1, null, true]}`,
		`{"properties": {"a": {"type": "string"}}, "additionalProperties": false, "required": ["a"]}`,
		`{"additionalProperties": {"type": "integer"}, "minProperties": 1, "maxProperties": 2}`,
		`{"propertyNames": {"pattern": "^[a-z]+$"}}`,
		`{"propertyNames": {"enum": ["a", "b", 1]}}`,
		`{"propertyNames": {"const": "a"}}`,
		`{"propertyNames": {"type": "integer"}}`,
		`{"propertyNames": {"type": ["string", "null"], "minLength": 1}}`,
		`{"propertyNames": {"not": {"const": "a"}}}`,
		`{"not": {"propertyNames": {"enum": ["a"]}}}`,
		`{"items": {"type": "string", "minLength": 2, "maxLength": 3}, "minItems": 1, "maxItems": 2}`,
		`{"not": {"required": ["a"]}}`,
		`{"dependentSchemas": {"a": {"required": ["b"]}}}`,
		`{"allOf": [{"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"required": ["c"]}}]}`,
		`{"oneOf": [{"type": "string"}, {"minLength": 1}]}`,
		`{"anyOf": [{"type": "string"}, {"type": "null"}]}`,
		`{"$defs": {"n": {"items": {"$ref": "#/$defs/n"}, "type": "array"}}, "$ref": "#/$defs/n"}`,
		`{"then": false}`,
		`false`,
		`true`,
	}
	values := []any{
		nil, true, false, int64(0), int64(1), int64(2), int64(3), int64(4), int64(-5), float64(1), float64(1.5),
		float64(2), float64(2.5), float64(3), float64(1e300), float64(-0.5),
		"", "a", "ab", "abc", "abcd", "b", "é", "éé",
		[]any{}, []any{"ab"}, []any{"a"}, []any{"ab", "abc"}, []any{"ab", "ab", "ab"}, []any{int64(1), "x"}, []any{[]any{}}, []any{[]any{"x"}},
		map[string]any{}, map[string]any{"a": "x"}, map[string]any{"a": int64(1)}, map[string]any{"a": "x", "b": int64(2)},
		map[string]any{"b": int64(1)}, map[string]any{"c": int64(1)}, map[string]any{"a": []any{int64(1), "x"}},
		map[string]any{"a": []any{float64(1), "x"}}, map[string]any{"A": int64(1)}, map[string]any{"a": int64(1), "b": int64(2), "c": int64(3)},
	}
	for _, s := range schemas {
		full, err := Compile([]byte(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		fast, err := CompileFast([]byte(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		for _, v := range values {
			want := full.Validate(v) == nil
			if got := fast.Valid(v); got != want {
				b, _ := json.Marshal(v)
				t.Errorf("schema %s, value %s (%T): fast %v, full %v", s, b, v, got, want)
			}
		}
	}
}

func TestFastValidDoesNotAllocate(t *testing.T) {
	f, err := CompileFast(JSON)
	if err != nil {
		t.Fatal(err)
	}
	v := yamlValue(t, typicalPlan)
	if n := testing.AllocsPerRun(20, func() { f.Valid(v) }); n != 0 {
		t.Errorf("Valid allocates %v times per call", n)
	}
}

func BenchmarkValidate(b *testing.B) {
	v := yamlValue(b, typicalPlan)
	b.Run("fast", func(b *testing.B) {
		f, err := CompileFast(JSON)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if !f.Valid(v) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("v5", func(b *testing.B) {
		s, err := Compile(JSON)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Validate(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := CompileFast(JSON); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("v5", func(b *testing.B) {
		for b.Loop() {
			if _, err := Compile(JSON); err != nil {
				b.Fatal(err)
			}
		}
	})
}
