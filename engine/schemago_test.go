package engine_test

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
)

// TestSchemaMatchesGoTypes is the one check that each registered step type
// and driver has one source of truth: its schema's property names are the
// YAML keys of the Go struct it decodes into (nested objects too), and every
// default the schema declares is the value the driver's SetDefaults gives,
// while keys without a declared default stay zero.
func TestSchemaMatchesGoTypes(t *testing.T) {
	for _, st := range engine.StepTypes() {
		if st.Config == nil {
			continue
		}
		compareKeys(t, "step "+st.Name, st.Schema, reflect.TypeOf(st.Config))
	}
	for _, name := range drivers.Names() {
		info, _ := drivers.Lookup(name)
		dev := info.New()
		compareKeys(t, "driver "+name, info.Schema, reflect.TypeOf(dev))
		if d, ok := dev.(drivers.Defaulter); ok {
			d.SetDefaults()
		}
		compareDefaults(t, "driver "+name, info.Schema, reflect.ValueOf(dev))
	}
}

func props(s map[string]any) map[string]any {
	p, _ := s["properties"].(map[string]any)
	return p
}

func structType(t reflect.Type) (reflect.Type, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t, t.Kind() == reflect.Struct
}

func compareKeys(t *testing.T, what string, s map[string]any, typ reflect.Type) {
	t.Helper()
	p := props(s)
	fields := engine.YAMLFields(typ)
	var inSchema, inGo []string
	for k := range p {
		inSchema = append(inSchema, k)
	}
	for k := range fields {
		inGo = append(inGo, k)
	}
	sort.Strings(inSchema)
	sort.Strings(inGo)
	if strings.Join(inSchema, " ") != strings.Join(inGo, " ") {
		t.Errorf("%s: schema keys [%s], Go keys [%s]", what, strings.Join(inSchema, " "), strings.Join(inGo, " "))
		return
	}
	for k, f := range fields {
		sub, _ := p[k].(map[string]any)
		if props(sub) == nil {
			continue
		}
		if st, ok := structType(f.Type); ok && !st.Implements(reflect.TypeOf((*fmt.Stringer)(nil)).Elem()) {
			compareKeys(t, what+"."+k, sub, st)
		}
	}
}

func compareDefaults(t *testing.T, what string, s map[string]any, v reflect.Value) {
	t.Helper()
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	p := props(s)
	for k, f := range engine.YAMLFields(v.Type()) {
		sub, _ := p[k].(map[string]any)
		fv := v.FieldByIndex(f.Index)
		if _, ok := structType(f.Type); ok && props(sub) != nil {
			compareDefaults(t, what+"."+k, sub, fv)
			continue
		}
		def, declared := sub["default"]
		switch {
		case declared && fmt.Sprint(scalar(fv)) != fmt.Sprint(def):
			t.Errorf("%s.%s: schema default %v, Go default %v", what, k, def, scalar(fv))
		case !declared && !fv.IsZero():
			t.Errorf("%s.%s: Go default %v is not declared in the schema", what, k, scalar(fv))
		}
	}
}

// scalar is a field's value as the schema writes it (durations as "30s").
func scalar(v reflect.Value) any {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	return v.Interface()
}
