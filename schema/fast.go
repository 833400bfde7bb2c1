package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Fast is a schema compiled into Go closures. It answers only "valid or
// not", without allocating, and supports exactly the JSON Schema 2020-12
// keywords the jsplan schema uses; CompileFast rejects any other keyword so
// a schema change cannot make it silently disagree with a full validator.
// Use a full validator (Compiled) to explain why a document is invalid.
type Fast struct {
	root check
}

// check reports whether a value satisfies a (sub)schema.
type check func(v any) bool

// Valid reports whether v satisfies the schema. v is a JSON-like value:
// map[string]any, []any, string, bool, nil, or a number (int64, float64 or
// another Go integer type). Any other Go type is invalid.
func (f *Fast) Valid(v any) bool { return f.root(v) }

// ignored keywords are annotations (or $defs, reached through $ref).
var ignored = map[string]bool{
	"$schema": true, "$comment": true, "$defs": true, "title": true, "description": true,
	"default": true, "examples": true, "deprecated": true, "readOnly": true, "writeOnly": true,
}

type fastCompiler struct {
	defs    map[string]any
	refs    map[string]*check // compiled (or being compiled) definitions
	regexps map[string]*regexp.Regexp
}

// CompileFast compiles a schema document given as JSON. References must
// point into the root's $defs ("#/$defs/name").
func CompileFast(doc []byte) (*Fast, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var root any
	if err := d.Decode(&root); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	c := &fastCompiler{refs: map[string]*check{}, regexps: map[string]*regexp.Regexp{}}
	if m, ok := root.(map[string]any); ok {
		if defs, ok := m["$defs"]; ok {
			c.defs, ok = defs.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("schema: $defs is not an object")
			}
		}
		if _, ok := m["$id"]; ok {
			m2 := make(map[string]any, len(m))
			for k, v := range m {
				if k != "$id" {
					m2[k] = v
				}
			}
			root = m2
		}
	}
	fn, err := c.compile(root, "#")
	if err != nil {
		return nil, err
	}
	return &Fast{root: fn}, nil
}

func (c *fastCompiler) compile(s any, at string) (check, error) {
	switch s := s.(type) {
	case bool:
		if s {
			return func(any) bool { return true }, nil
		}
		return func(any) bool { return false }, nil
	case map[string]any:
		return c.compileObject(s, at)
	}
	return nil, fmt.Errorf("schema: %s: a schema must be an object or a boolean", at)
}

// order runs cheap, discriminating keywords first.
var order = map[string]int{"type": 0, "const": 1, "enum": 2, "required": 3}

func (c *fastCompiler) compileObject(s map[string]any, at string) (check, error) {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, iok := order[keys[i]]
		oj, jok := order[keys[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	var checks []check
	handled := map[string]bool{}
	for _, k := range keys {
		if ignored[k] || handled[k] {
			continue
		}
		kat := at + "/" + k
		val := s[k]
		var fn check
		var err error
		switch k {
		case "$ref":
			fn, err = c.ref(val, kat)
		case "type":
			fn, err = typeCheck(val, kat)
		case "const":
			cv := val
			fn = func(v any) bool { return jsonEqual(v, cv) }
		case "enum":
			list, ok := val.([]any)
			if !ok {
				return nil, fmt.Errorf("schema: %s: enum must be an array", kat)
			}
			fn = func(v any) bool {
				for _, e := range list {
					if jsonEqual(v, e) {
						return true
					}
				}
				return false
			}
		case "required":
			names, err := stringList(val, kat)
			if err != nil {
				return nil, err
			}
			fn = func(v any) bool {
				m, ok := v.(map[string]any)
				if !ok {
					return true
				}
				for _, n := range names {
					if _, ok := m[n]; !ok {
						return false
					}
				}
				return true
			}
		case "properties", "additionalProperties":
			handled["properties"], handled["additionalProperties"] = true, true
			fn, err = c.properties(s, at)
		case "pattern":
			p, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("schema: %s: pattern must be a string", kat)
			}
			re, err := c.regexp(p, kat)
			if err != nil {
				return nil, err
			}
			fn = func(v any) bool {
				str, ok := v.(string)
				return !ok || re.MatchString(str)
			}
		case "minLength", "maxLength":
			n, err := count(val, kat)
			if err != nil {
				return nil, err
			}
			min := k == "minLength"
			fn = func(v any) bool {
				str, ok := v.(string)
				if !ok {
					return true
				}
				l := utf8.RuneCountInString(str)
				if min {
					return l >= n
				}
				return l <= n
			}
		case "items":
			item, err := c.compile(val, kat)
			if err != nil {
				return nil, err
			}
			fn = func(v any) bool {
				a, ok := v.([]any)
				if !ok {
					return true
				}
				for _, e := range a {
					if !item(e) {
						return false
					}
				}
				return true
			}
		case "minItems", "maxItems":
			n, err := count(val, kat)
			if err != nil {
				return nil, err
			}
			min := k == "minItems"
			fn = func(v any) bool {
				a, ok := v.([]any)
				if !ok {
					return true
				}
				if min {
					return len(a) >= n
				}
				return len(a) <= n
			}
		case "minProperties", "maxProperties":
			n, err := count(val, kat)
			if err != nil {
				return nil, err
			}
			min := k == "minProperties"
			fn = func(v any) bool {
				m, ok := v.(map[string]any)
				if !ok {
					return true
				}
				if min {
					return len(m) >= n
				}
				return len(m) <= n
			}
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
			fn, err = bound(k, val, kat)
		case "propertyNames":
			fn, err = c.propertyNames(val, kat)
		case "not":
			sub, err := c.compile(val, kat)
			if err != nil {
				return nil, err
			}
			fn = func(v any) bool { return !sub(v) }
		case "allOf", "anyOf", "oneOf":
			subs, err := c.list(val, kat)
			if err != nil {
				return nil, err
			}
			switch k {
			case "allOf":
				fn = all(subs)
			case "anyOf":
				fn = func(v any) bool {
					for _, sub := range subs {
						if sub(v) {
							return true
						}
					}
					return false
				}
			default:
				fn = func(v any) bool {
					n := 0
					for _, sub := range subs {
						if sub(v) {
							n++
							if n > 1 {
								return false
							}
						}
					}
					return n == 1
				}
			}
		case "dependentSchemas":
			deps, ok := val.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("schema: %s: dependentSchemas must be an object", kat)
			}
			type dep struct {
				name string
				fn   check
			}
			var list []dep
			for _, name := range sortedNames(deps) {
				sub, err := c.compile(deps[name], kat+"/"+name)
				if err != nil {
					return nil, err
				}
				list = append(list, dep{name, sub})
			}
			fn = func(v any) bool {
				m, ok := v.(map[string]any)
				if !ok {
					return true
				}
				for _, d := range list {
					if _, ok := m[d.name]; ok && !d.fn(v) {
						return false
					}
				}
				return true
			}
		case "if", "then", "else":
			handled["if"], handled["then"], handled["else"] = true, true, true
			fn, err = c.ifThenElse(s, at)
			if fn == nil && err == nil {
				continue // then/else without if: no effect
			}
		default:
			return nil, fmt.Errorf("schema: %s: keyword %q is not supported by the fast validator", at, k)
		}
		if err != nil {
			return nil, err
		}
		checks = append(checks, fn)
	}
	return all(checks), nil
}

func all(checks []check) check {
	switch len(checks) {
	case 0:
		return func(any) bool { return true }
	case 1:
		return checks[0]
	case 2:
		a, b := checks[0], checks[1]
		return func(v any) bool { return a(v) && b(v) }
	}
	return func(v any) bool {
		for _, fn := range checks {
			if !fn(v) {
				return false
			}
		}
		return true
	}
}

func (c *fastCompiler) list(val any, at string) ([]check, error) {
	arr, ok := val.([]any)
	if !ok || len(arr) == 0 {
		return nil, fmt.Errorf("schema: %s: must be a non-empty array", at)
	}
	var subs []check
	for i, s := range arr {
		fn, err := c.compile(s, at+"/"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		subs = append(subs, fn)
	}
	return subs, nil
}

func (c *fastCompiler) ref(val any, at string) (check, error) {
	ref, ok := val.(string)
	if !ok || !strings.HasPrefix(ref, "#/$defs/") {
		return nil, fmt.Errorf("schema: %s: only references to #/$defs/NAME are supported, not %v", at, val)
	}
	name := strings.TrimPrefix(ref, "#/$defs/")
	if strings.Contains(name, "/") || strings.Contains(name, "~") || strings.Contains(name, "%") {
		return nil, fmt.Errorf("schema: %s: unsupported reference %q", at, ref)
	}
	p, ok := c.refs[name]
	if !ok {
		def, ok := c.defs[name]
		if !ok {
			return nil, fmt.Errorf("schema: %s: reference %q to a missing definition", at, ref)
		}
		p = new(check)
		c.refs[name] = p // before compiling, for recursive definitions
		fn, err := c.compile(def, "#/$defs/"+name)
		if err != nil {
			return nil, err
		}
		*p = fn
	}
	return func(v any) bool { return (*p)(v) }, nil
}

func (c *fastCompiler) properties(s map[string]any, at string) (check, error) {
	type prop struct {
		name string
		fn   check
	}
	var props []prop
	known := map[string]bool{}
	if pv, ok := s["properties"]; ok {
		pm, ok := pv.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("schema: %s/properties: must be an object", at)
		}
		for _, name := range sortedNames(pm) {
			fn, err := c.compile(pm[name], at+"/properties/"+name)
			if err != nil {
				return nil, err
			}
			props = append(props, prop{name, fn})
			known[name] = true
		}
	}
	var extra check
	if av, ok := s["additionalProperties"]; ok {
		fn, err := c.compile(av, at+"/additionalProperties")
		if err != nil {
			return nil, err
		}
		extra = fn
	}
	if extra == nil {
		return func(v any) bool {
			m, ok := v.(map[string]any)
			if !ok {
				return true
			}
			for _, p := range props {
				if x, ok := m[p.name]; ok && !p.fn(x) {
					return false
				}
			}
			return true
		}, nil
	}
	byName := make(map[string]check, len(props))
	for _, p := range props {
		byName[p.name] = p.fn
	}
	return func(v any) bool {
		m, ok := v.(map[string]any)
		if !ok {
			return true
		}
		for k, x := range m {
			fn, ok := byName[k]
			if !ok {
				fn = extra
			}
			if !fn(x) {
				return false
			}
		}
		return true
	}, nil
}

func (c *fastCompiler) ifThenElse(s map[string]any, at string) (check, error) {
	iv, ok := s["if"]
	if !ok {
		return nil, nil
	}
	cond, err := c.compile(iv, at+"/if")
	if err != nil {
		return nil, err
	}
	yes, no := check(nil), check(nil)
	if tv, ok := s["then"]; ok {
		if yes, err = c.compile(tv, at+"/then"); err != nil {
			return nil, err
		}
	}
	if ev, ok := s["else"]; ok {
		if no, err = c.compile(ev, at+"/else"); err != nil {
			return nil, err
		}
	}
	return func(v any) bool {
		if cond(v) {
			return yes == nil || yes(v)
		}
		return no == nil || no(v)
	}, nil
}

func (c *fastCompiler) regexp(p, at string) (*regexp.Regexp, error) {
	if re, ok := c.regexps[p]; ok {
		return re, nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("schema: %s: %v", at, err)
	}
	c.regexps[p] = re
	return re, nil
}

func sortedNames(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func stringList(val any, at string) ([]string, error) {
	arr, ok := val.([]any)
	if !ok {
		return nil, fmt.Errorf("schema: %s: must be an array of strings", at)
	}
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("schema: %s: must be an array of strings", at)
		}
		out = append(out, s)
	}
	return out, nil
}

func count(val any, at string) (int, error) {
	n, ok := val.(json.Number)
	if ok {
		if i, err := strconv.ParseInt(string(n), 10, 0); err == nil && i >= 0 {
			return int(i), nil
		}
		if f, err := n.Float64(); err == nil && f >= 0 && f == math.Trunc(f) && f < 1<<31 {
			return int(f), nil
		}
	}
	return 0, fmt.Errorf("schema: %s: must be a non-negative integer", at)
}

// Type bits.
const (
	tNull = 1 << iota
	tBool
	tString
	tArray
	tObject
	tNumber
	tInteger
)

var typeBits = map[string]int{
	"null": tNull, "boolean": tBool, "string": tString, "array": tArray,
	"object": tObject, "number": tNumber, "integer": tInteger,
}

func typeCheck(val any, at string) (check, error) {
	var names []any
	switch t := val.(type) {
	case string:
		names = []any{t}
	case []any:
		names = t
	default:
		return nil, fmt.Errorf("schema: %s: must be a string or an array", at)
	}
	bits := 0
	for _, n := range names {
		s, _ := n.(string)
		b, ok := typeBits[s]
		if !ok {
			return nil, fmt.Errorf("schema: %s: unknown type %v", at, n)
		}
		bits |= b
	}
	return func(v any) bool {
		switch v.(type) {
		case nil:
			return bits&tNull != 0
		case bool:
			return bits&tBool != 0
		case string:
			return bits&tString != 0
		case []any:
			return bits&tArray != 0
		case map[string]any:
			return bits&tObject != 0
		}
		n, ok := number(v)
		if !ok {
			return false
		}
		if bits&tNumber != 0 {
			return true
		}
		return bits&tInteger != 0 && n.integral()
	}, nil
}

// num is a JSON number: an exact integer, or a float64.
type num struct {
	isInt bool
	i     int64
	f     float64
}

func (n num) integral() bool { return n.isInt || n.f == math.Trunc(n.f) }

func number(v any) (num, bool) {
	switch v := v.(type) {
	case int64:
		return num{isInt: true, i: v}, true
	case int:
		return num{isInt: true, i: int64(v)}, true
	case int32:
		return num{isInt: true, i: int64(v)}, true
	case int8:
		return num{isInt: true, i: int64(v)}, true
	case uint8:
		return num{isInt: true, i: int64(v)}, true
	case uint32:
		return num{isInt: true, i: int64(v)}, true
	case uint:
		if uint64(v) <= math.MaxInt64 {
			return num{isInt: true, i: int64(v)}, true
		}
		return num{f: float64(v)}, true
	case uint64:
		if v <= math.MaxInt64 {
			return num{isInt: true, i: int64(v)}, true
		}
		return num{f: float64(v)}, true
	case float64:
		return num{f: v}, !math.IsNaN(v) && !math.IsInf(v, 0)
	case float32:
		return num{f: float64(v)}, true
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return num{isInt: true, i: i}, true
		}
		f, err := v.Float64()
		return num{f: f}, err == nil
	}
	return num{}, false
}

// cmp compares a and b: -1, 0 or 1.
func cmp(a, b num) int {
	if a.isInt && b.isInt {
		switch {
		case a.i < b.i:
			return -1
		case a.i > b.i:
			return 1
		}
		return 0
	}
	if a.isInt {
		return -cmp(b, a)
	}
	// a is a float
	if b.isInt {
		// Exact: compare the float with the integer without rounding the
		// integer.
		if a.f < -(1 << 63) {
			return -1
		}
		if a.f >= 1<<63 {
			return 1
		}
		t := math.Trunc(a.f)
		ti := int64(t)
		switch {
		case ti < b.i:
			return -1
		case ti > b.i:
			return 1
		case a.f > t:
			return 1
		case a.f < t:
			return -1
		}
		return 0
	}
	switch {
	case a.f < b.f:
		return -1
	case a.f > b.f:
		return 1
	}
	return 0
}

func bound(k string, val any, at string) (check, error) {
	jn, ok := val.(json.Number)
	if !ok {
		return nil, fmt.Errorf("schema: %s: must be a number", at)
	}
	b, ok := number(jn)
	if !ok {
		return nil, fmt.Errorf("schema: %s: must be a number", at)
	}
	if !b.isInt {
		// A fraction cannot be compared exactly with float64 (the full
		// validator compares decimal values); our schema has none.
		if _, err := strconv.ParseFloat(string(jn), 64); err != nil || strconv.FormatFloat(b.f, 'g', -1, 64) != string(jn) {
			return nil, fmt.Errorf("schema: %s: bound %s is not supported (use an integer or a shortest float)", at, jn)
		}
	}
	var ok2 func(c int) bool
	switch k {
	case "minimum":
		ok2 = func(c int) bool { return c >= 0 }
	case "maximum":
		ok2 = func(c int) bool { return c <= 0 }
	case "exclusiveMinimum":
		ok2 = func(c int) bool { return c > 0 }
	default:
		ok2 = func(c int) bool { return c < 0 }
	}
	return func(v any) bool {
		switch v.(type) {
		case nil, bool, string, []any, map[string]any:
			return true
		}
		n, ok := number(v)
		if !ok {
			return false
		}
		return ok2(cmp(n, b))
	}, nil
}

// jsonEqual is JSON value equality: numbers compare by value.
func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], bs[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, x := range a {
			y, ok := bm[k]
			if !ok || !jsonEqual(x, y) {
				return false
			}
		}
		return true
	}
	na, ok := number(a)
	if !ok {
		return false
	}
	switch b.(type) {
	case nil, bool, string, []any, map[string]any:
		return false
	}
	nb, ok := number(b)
	return ok && cmp(na, nb) == 0
}

// propertyNames checks every key of an object. Keys are strings, so a
// schema made only of string keywords is compiled to a func(string) bool:
// passing a key as an any would allocate.
func (c *fastCompiler) propertyNames(val any, at string) (check, error) {
	keyOK, ok, err := c.stringCheck(val, at)
	if err != nil {
		return nil, err
	}
	if !ok {
		general, err := c.compile(val, at)
		if err != nil {
			return nil, err
		}
		keyOK = func(key string) bool { return general(key) }
	}
	return func(v any) bool {
		m, ok := v.(map[string]any)
		if !ok {
			return true
		}
		for key := range m {
			if !keyOK(key) {
				return false
			}
		}
		return true
	}, nil
}

// stringCheck compiles a schema applied to strings only, when it uses
// only string keywords (type, pattern, enum, const, minLength, maxLength);
// ok is false otherwise.
func (c *fastCompiler) stringCheck(val any, at string) (fn func(string) bool, ok bool, err error) {
	s, isObj := val.(map[string]any)
	if !isObj {
		return nil, false, nil
	}
	// The generic compiler validates the keywords and their arguments.
	if _, err := c.compile(val, at); err != nil {
		return nil, false, err
	}
	var checks []func(string) bool
	for _, k := range sortedNames(s) {
		if ignored[k] {
			continue
		}
		val := s[k]
		switch k {
		case "type":
			// A string satisfies the type exactly when the generic check
			// accepts some string.
			tc, _ := typeCheck(val, at)
			okType := tc("")
			checks = append(checks, func(string) bool { return okType })
		case "pattern":
			re, err := c.regexp(val.(string), at)
			if err != nil {
				return nil, false, err
			}
			checks = append(checks, re.MatchString)
		case "enum", "const":
			list, _ := val.([]any)
			if k == "const" {
				list = []any{val}
			}
			var strs []string
			for _, e := range list {
				if s, ok := e.(string); ok {
					strs = append(strs, s)
				}
			}
			checks = append(checks, func(key string) bool {
				for _, s := range strs {
					if s == key {
						return true
					}
				}
				return false
			})
		case "minLength", "maxLength":
			n, _ := count(val, at)
			min := k == "minLength"
			checks = append(checks, func(key string) bool {
				l := utf8.RuneCountInString(key)
				if min {
					return l >= n
				}
				return l <= n
			})
		default:
			return nil, false, nil
		}
	}
	return func(key string) bool {
		for _, fn := range checks {
			if !fn(key) {
				return false
			}
		}
		return true
	}, true, nil
}
