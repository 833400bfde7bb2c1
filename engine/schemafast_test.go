package engine_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/schema"
)

// The fast validator decides alone that a document is
// valid, so it must agree with the full validator on every input. These
// tests compare the two on real plans, the diagnostics table, systematic
// mutations of both, and (FuzzFastAgrees) arbitrary YAML.

// docValues decodes every document of a YAML stream into schema values.
func docValues(t testing.TB, b []byte) []any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []any
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			return out
		}
		v, err := engine.SchemaValue(&n)
		if err != nil {
			continue
		}
		out = append(out, v)
	}
}

// agree reports whether the fast and the full validator agree on v.
func agree(t testing.TB, v any) (fast, full bool) {
	t.Helper()
	fast, full, err := engine.SchemaValid(v)
	if err != nil {
		t.Fatal(err)
	}
	return fast, full
}

func corpus(t *testing.T) map[string][]any {
	t.Helper()
	docs := map[string][]any{}
	var files []string
	for _, g := range []string{"../plans/*/*.yaml", "../plans/*/*/*.yaml", "../tekton/tests/testdata/plans/*.yaml"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("only %d plan files found", len(files))
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs[p] = docValues(t, b)
	}
	for _, c := range loaderCases {
		for name, text := range c.files {
			docs["loaderCases/"+c.name+"/"+name] = docValues(t, []byte(text))
		}
		if c.boards != "" {
			docs["loaderCases/"+c.name+"/boards"] = docValues(t, []byte(c.boards))
		}
	}
	docs["boardsDoc"] = docValues(t, []byte(boardsDoc))
	return docs
}

func TestFastAgreesOnPlans(t *testing.T) {
	valid, invalid := 0, 0
	for name, vs := range corpus(t) {
		for i, v := range vs {
			fast, full := agree(t, v)
			if fast != full {
				t.Errorf("%s doc %d: fast valid=%v, full valid=%v", name, i, fast, full)
			}
			if full {
				valid++
			} else {
				invalid++
			}
		}
	}
	// Both outcomes must be exercised, or the comparison proves little.
	if valid < 10 || invalid < 10 {
		t.Errorf("corpus has %d valid and %d invalid documents; want both >= 10", valid, invalid)
	}
	t.Logf("%d valid, %d invalid documents agree", valid, invalid)
}

// samples replace values, covering every JSON type and the strings the
// schema's patterns care about.
var samples = []any{
	nil, true, false, int64(0), int64(-1), int64(1), int64(3), int64(70000), float64(1.5), float64(2),
	"", "x", "on", "off", "cycle", "5s", "1h30m", "5 s", "0", "-1s", "${{ params.x }}", "${{ x }", "Plan", "Boards",
	"jsplan.dev/v1", "/dev/sdb", "a b", "9abc",
	[]any{}, []any{"a"}, []any{int64(1)}, []any{map[string]any{"log": "x"}},
	map[string]any{}, map[string]any{"a": "b"}, map[string]any{"log": "x"},
}

// extraKeys are added to every mapping: unknown keys, step actions (a
// second action), reserved step keys and keys of other objects.
var extraKeys = []string{
	"zz-unknown", "log", "run", "sleep", "power", "use", "group", "id", "name", "timeout", "retry",
	"continue-on-error", "kind", "apiVersion", "steps", "finally", "params", "board", "boards", "drivers",
	"sim", "qemu", "command", "with", "env", "9bad", "bad name",
}

// mutations returns modified copies of v (copying only along the changed
// path), calling emit for each.
func mutations(v any, emit func(any)) {
	for _, s := range samples {
		emit(s)
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		with := func(k string, x any) map[string]any {
			m := make(map[string]any, len(v)+1)
			for kk, vv := range v {
				m[kk] = vv
			}
			m[k] = x
			return m
		}
		for _, k := range keys {
			m := with(k, nil)
			delete(m, k)
			emit(m) // key deleted
			mutations(v[k], func(x any) { emit(with(k, x)) })
		}
		for _, k := range extraKeys {
			if _, ok := v[k]; ok {
				continue
			}
			emit(with(k, "x"))
			emit(with(k, map[string]any{}))
			emit(with(k, "5s"))
		}
	case []any:
		with := func(i int, x any) []any {
			a := append([]any(nil), v...)
			a[i] = x
			return a
		}
		for i := range v {
			emit(append(append([]any(nil), v[:i]...), v[i+1:]...)) // element deleted
			mutations(v[i], func(x any) { emit(with(i, x)) })
		}
		if len(v) > 0 {
			emit(append(append([]any(nil), v...), v[0])) // element duplicated
		}
	case string:
		emit(v + " ")
		emit(" " + v)
	}
}

// TestFastAgreesOnMutations is the slowest engine test (every mutation of
// every shipped document through both validators): it runs in parallel
// with the others, and under -short checks every 16th mutation.
func TestFastAgreesOnMutations(t *testing.T) {
	t.Parallel()
	stride, n := 1, 0
	if testing.Short() {
		stride = 16
	}
	seen := map[string]bool{}
	total, valid := 0, 0
	for name, vs := range corpus(t) {
		for i, doc := range vs {
			mutations(doc, func(v any) {
				if n++; n%stride != 0 {
					return
				}
				total++
				fast, full := agree(t, v)
				if full {
					valid++
				}
				if fast != full {
					if seen[name] {
						return
					}
					seen[name] = true
					b, _ := yaml.Marshal(v)
					t.Errorf("%s doc %d mutated: fast valid=%v, full valid=%v:\n%s", name, i, fast, full, b)
				}
			})
		}
	}
	if least := 100 / stride; valid < least || total-valid < least {
		t.Errorf("mutations: %d valid of %d; want both outcomes >= 100", valid, total)
	}
	t.Logf("%d mutations agree (%d valid)", total, valid)
}

// FuzzFastAgrees compares the two validators on arbitrary YAML. `go test`
// runs the seeds only.
func FuzzFastAgrees(f *testing.F) {
	var files []string
	for _, g := range []string{"../plans/*/*.yaml", "../tekton/tests/testdata/plans/*.yaml"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range loaderCases {
		for _, text := range c.files {
			f.Add([]byte(text))
		}
	}
	f.Add([]byte("kind: Plan\napiVersion: jsplan.dev/v1\nname: x\nsteps: [{log: x, run: y}]\n"))
	f.Add([]byte("kind: Boards\napiVersion: jsplan.dev/v1\nboards: [{name: a, drivers: {sim: {}}}]\n"))
	f.Add([]byte("[1, 2.5, null, true, {a: 1e400}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range docValues(t, b) {
			if fast, full := agree(t, v); fast != full {
				out, _ := yaml.Marshal(v)
				t.Fatalf("fast valid=%v, full valid=%v on:\n%s", fast, full, out)
			}
		}
	})
}

// BenchmarkProcessSchema is what validating with the schema of the process
// adds to a jsplan command: generating the schema from the registries once
// before compiling it into the fast validator, which a command did before
// too (from the embedded file). It prints generate/compile, the added share.
func BenchmarkProcessSchema(b *testing.B) {
	var gen, comp time.Duration
	for b.Loop() {
		t0 := time.Now()
		doc := engine.CompactSchema()
		t1 := time.Now()
		if _, err := schema.CompileFast(doc); err != nil {
			b.Fatal(err)
		}
		gen, comp = gen+t1.Sub(t0), comp+time.Since(t1)
	}
	b.ReportMetric(float64(gen.Microseconds())/float64(b.N), "generate-µs/op")
	b.ReportMetric(float64(comp.Microseconds())/float64(b.N), "compile-µs/op")
	b.ReportMetric(float64(gen)/float64(comp), "generate/compile")
}
