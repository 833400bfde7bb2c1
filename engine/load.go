package engine

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/expr"
)

// Mode says how much is known while loading.
type Mode int

const (
	// ModeValidate checks a plan on its own: parameters without a value,
	// the environment and the board may be unknown; references to them are
	// left pending.
	ModeValidate Mode = iota
	// ModeRun loads a plan for a run: every reference must resolve.
	ModeRun
)

// Value is a parameter value given from outside the plan.
type Value struct {
	Text string
	// Source says where it came from, for diagnostics.
	Source diag.Range
}

// BoardInfo is what plans can read of the board, as ${{ board.* }}.
type BoardInfo struct {
	Name   string
	Labels map[string]string
	Vars   map[string]string
}

// Options configure a Loader.
type Options struct {
	Mode Mode
	// Values are parameter values for the top-level plan, by name.
	Values map[string]Value
	// Env looks up host environment variables (${{ env.X }} and
	// JSPLAN_PARAM_<NAME>). Nil means os.LookupEnv in ModeRun and nothing
	// in ModeValidate.
	Env func(string) (string, bool)
	// Board is the board the plan will run on, when known (of a plan with
	// boards:, the first role's).
	Board *BoardInfo
	// Roles are the boards of a plan with boards:, by role, when known
	// (${{ boards.ROLE.* }}).
	Roles map[string]*BoardInfo
	// Artifacts is the artifacts directory, when known.
	Artifacts string
	// MaxFileSize bounds the size of a document (default 4 MiB).
	MaxFileSize int64
}

// Loader reads plans and inventories, collecting every diagnostic.
type Loader struct {
	opts    Options
	files   map[string]*fileDoc
	sources diag.Sources
	diags   diag.Diagnostics
	secrets map[string]bool
	stack   []string
	// steps counts the steps of the plan being loaded, used plans and
	// groups included, against MaxSteps.
	steps   int
	tooMany bool
	// roles are the role names the top-level plan declares (boards:),
	// which on: and ${{ boards.ROLE }} may name; nil for a single board.
	roles []string
}

// Limits a plan is checked against when it is loaded (validate, render and
// apply report them as file:line:col errors).
const (
	// MaxSteps bounds the steps of a plan once every use: and group: is
	// expanded: a use: of a plan that uses plans multiplies, and 10^5
	// steps already take seconds and hundreds of MB to load.
	MaxSteps = 10000
	// MaxAttempts bounds retry.attempts.
	MaxAttempts = 100
)

// NewLoader returns a Loader.
func NewLoader(opts Options) *Loader {
	if opts.Env == nil && opts.Mode == ModeRun {
		opts.Env = os.LookupEnv
	}
	if opts.MaxFileSize == 0 {
		opts.MaxFileSize = 4 << 20
	}
	return &Loader{opts: opts, files: map[string]*fileDoc{}, sources: diag.Sources{}, secrets: map[string]bool{}}
}

// Diagnostics returns everything reported so far, sorted.
func (l *Loader) Diagnostics() diag.Diagnostics { return l.diags.Sort() }

// Sources returns the text of every file read, for printing snippets.
func (l *Loader) Sources() diag.Sources { return l.sources }

// Secrets returns the values that must be masked.
func (l *Loader) Secrets() []string {
	return slices.Sorted(maps.Keys(l.secrets))
}

func (l *Loader) report(d *diag.Diagnostic) { l.diags = l.diags.Append(d) }

// Report adds a diagnostic found outside the loader (a bad flag), so it is
// printed with the others.
func (l *Loader) Report(d *diag.Diagnostic) { l.report(d) }

// Scope of parameter values for one plan instance.
type scope struct {
	plan   string // plan name, for ${{ plan.name }}
	dir    string
	names  []string
	values map[string]scopeValue
}

type scopeValue struct {
	known  bool
	text   string
	tag    string
	secret bool
}

// planInstance tracks per-instance state while decoding one plan document.
type planInstance struct {
	f   *fileDoc
	sc  *scope
	ids map[string]diag.Range
}

// LoadPlan loads a top-level plan. It returns nil when the plan is
// unusable; Diagnostics tells why.
func (l *Loader) LoadPlan(path string) *Plan {
	return l.loadPlan(l.readFile(path, true))
}

// LoadPlanBytes loads a top-level plan held in memory; name stands for its
// path: it names the plan in diagnostics, and used plans resolve against
// its directory.
func (l *Loader) LoadPlanBytes(name string, src []byte) *Plan {
	abs, err := filepath.Abs(name)
	if err != nil {
		abs = name
	}
	f := &fileDoc{path: name, abs: abs}
	l.files[abs] = f
	if int64(len(src)) > l.opts.MaxFileSize {
		l.report(diag.Errorf(diag.Range{Filename: name}, "", "file is larger than %d bytes", l.opts.MaxFileSize))
		return nil
	}
	l.sources[name] = src
	l.parse(f, src, true)
	return l.loadPlan(f)
}

func (l *Loader) loadPlan(f *fileDoc) *Plan {
	if f.root == nil {
		return nil
	}
	if f.kind != "Plan" {
		if f.kind != "" && f.kind != "Boards" {
			return nil // the schema reported the kind
		}
		_, kv := mapGet(f.root, "kind")
		l.report(diag.Errorf(rangeOf(f.path, kv), "kind", "expected a Plan, got %s", f.kind).
			WithDetail("pass inventories with --boards"))
		return nil
	}
	values := l.topValues(f)
	l.roles = roleNames(f.root)
	l.steps, l.tooMany = 0, false
	l.stack = append(l.stack, f.abs)
	p := l.instantiate(f, values, nil)
	l.stack = l.stack[:len(l.stack)-1]
	if p != nil {
		l.checkTimeouts(p)
	}
	return p
}

// topValues gathers the values of the top-level plan's parameters from
// Options.Values and JSPLAN_PARAM_<NAME> variables.
func (l *Loader) topValues(f *fileDoc) map[string]valueSrc {
	out := map[string]valueSrc{}
	_, pn := mapGet(f.root, "params")
	declared := map[string]bool{}
	if pn != nil && pn.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(pn.Content); i += 2 {
			declared[pn.Content[i].Value] = true
		}
	}
	if l.opts.Env != nil {
		for name := range declared {
			env := "JSPLAN_PARAM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
			if v, ok := l.opts.Env(env); ok {
				out[name] = valueSrc{text: v, known: true, src: diag.Range{Filename: "$" + env}}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(l.opts.Values)) {
		v := l.opts.Values[name]
		if !declared[name] {
			d := diag.Errorf(v.Source, "", "unknown parameter %q", name)
			if s := suggest(name, slices.Sorted(maps.Keys(declared))); s != "" {
				d.WithDetail("did you mean %q?", s)
			} else if len(declared) > 0 {
				d.WithDetail("the plan declares: %s", strings.Join(slices.Sorted(maps.Keys(declared)), ", "))
			} else {
				d.WithDetail("the plan declares no parameters")
			}
			l.report(d)
			continue
		}
		out[name] = valueSrc{text: v.Text, known: true, src: v.Source}
	}
	return out
}

type valueSrc struct {
	text  string
	known bool // false: a pending reference (validate mode)
	src   diag.Range
	// base is the directory a relative path value is relative to ("" =
	// the working directory).
	base string
}

// instantiate decodes one plan document with the given parameter values.
func (l *Loader) instantiate(f *fileDoc, values map[string]valueSrc, at *diag.Range) *Plan {
	root := f.root
	p := &Plan{File: f.path, Dir: filepath.Dir(f.abs), Range: rangeOf(f.path, root), BoardRange: rangeOf(f.path, root)}
	if _, n := mapGet(root, "name"); n != nil {
		p.Name = n.Value
	} else {
		p.Name = strings.TrimSuffix(filepath.Base(f.path), filepath.Ext(f.path))
	}
	if _, n := mapGet(root, "description"); n != nil {
		p.Description = n.Value
	}
	sc := &scope{plan: p.Name, dir: p.Dir, values: map[string]scopeValue{}}
	if _, pn := mapGet(root, "params"); pn != nil && pn.Kind == yaml.MappingNode {
		// even a param with mistakes is declared, so its references do not
		// cascade into more errors
		p.Params = l.decodeParams(f, pn)
	}
	l.bindParams(f, p, sc, values, at)
	pi := &planInstance{f: f, sc: sc, ids: map[string]diag.Range{}}

	// Expand references in a copy: a library may be used many times.
	work := l.expand(f, root, nil, sc, rolePlain)
	if k, n := mapGet(work, "board"); n != nil && !f.isBad("/board") {
		p.BoardRange = rangeOf(f.path, k)
		if err := n.Decode(&p.Board); err != nil {
			l.report(diag.Errorf(rangeOf(f.path, n), "board", "%s", cleanDecodeError(err)))
		}
	}
	l.decodeMulti(f, work, p)
	if _, n := mapGet(work, "timeout"); n != nil && !f.isBad("/timeout") {
		if err := n.Decode(&p.Timeout); err != nil {
			l.report(diag.Errorf(rangeOf(f.path, n), "timeout", "%s", cleanDecodeError(err)))
		} else if p.Timeout.Known() && p.Timeout.Duration <= 0 {
			l.report(diag.Errorf(rangeOf(f.path, n), "timeout", "timeout must be longer than 0").
				WithDetail("omit it for a plan without a time limit"))
		}
	}
	if _, n := mapGet(work, "fail-on"); n != nil && n.Kind == yaml.SequenceNode && !f.isBad("/fail-on") {
		for i, c := range n.Content {
			if pat, ok := l.compile(f.path, c, fmt.Sprintf("fail-on[%d]", i)); ok {
				p.FailOn = append(p.FailOn, pat)
			}
		}
	}
	if _, n := mapGet(work, "steps"); n != nil {
		p.Steps = l.decodeSteps(pi, n, "steps", "/steps")
	}
	if _, n := mapGet(work, "finally"); n != nil {
		p.Finally = l.decodeSteps(pi, n, "finally", "/finally")
	}
	return p
}

// compile compiles a regular expression node; a pending reference yields
// no pattern and no error.
func (l *Loader) compile(file string, n *yaml.Node, path string) (Pattern, bool) {
	if n.Kind != yaml.ScalarNode {
		l.report(diag.Errorf(rangeOf(file, n), path, "expected a regular expression string"))
		return Pattern{}, false
	}
	if _, pending := expr.Whole(n.Value); pending {
		return Pattern{}, false
	}
	re, err := regexp.Compile(n.Value)
	if err != nil {
		msg := err.Error()
		if se := (*syntax.Error)(nil); errors.As(err, &se) {
			msg = fmt.Sprintf("%s: `%s`", se.Code, se.Expr)
		}
		l.report(diag.Errorf(rangeOf(file, n), path, "invalid regular expression: %s", msg).
			WithDetail("patterns use Go's RE2 syntax (https://golang.org/s/re2syntax); quote literal characters such as ( [ . *"))
		return Pattern{}, false
	}
	return Pattern{Source: n.Value, Range: rangeOf(file, n), Re: re}, true
}
