package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/expr"
	"github.com/jsplan/jsplan/engine/redact"
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
	// Board is the board the plan will run on, when known.
	Board *BoardInfo
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
	out := make([]string, 0, len(l.secrets))
	for s := range l.secrets {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func (l *Loader) report(d *diag.Diagnostic) { l.diags = l.diags.Append(d) }

// Report adds a diagnostic found outside the loader (a bad flag), so it is
// printed with the others.
func (l *Loader) Report(d *diag.Diagnostic) { l.report(d) }

// fileDoc is a parsed, schema-checked document.
type fileDoc struct {
	path string
	abs  string
	root *yaml.Node // the top mapping; nil when unusable
	kind string
	// bad holds JSON pointers at which the schema found errors; decoding
	// skips the steps that contain one, so no Go type error ever shows.
	bad []string
	// skip is set for YAML files that are not jsplan documents.
	skip bool
}

func (f *fileDoc) isBad(ptr string) bool {
	for _, b := range f.bad {
		if b == ptr || strings.HasPrefix(b, ptr+"/") {
			return true
		}
	}
	return false
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// readFile parses and schema-checks a file once. strict makes a file that
// is not a jsplan document an error (it was named as a plan).
func (l *Loader) readFile(path string, strict bool) *fileDoc {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	if f, ok := l.files[abs]; ok {
		return f
	}
	f := &fileDoc{path: path, abs: abs}
	l.files[abs] = f
	fh, err := os.Open(path)
	if err != nil {
		l.report(diag.Errorf(diag.Range{Filename: path}, "", "cannot read file: %v", cleanOSError(err)))
		return f
	}
	src, err := io.ReadAll(io.LimitReader(fh, l.opts.MaxFileSize+1))
	fh.Close()
	if err != nil {
		l.report(diag.Errorf(diag.Range{Filename: path}, "", "cannot read file: %v", cleanOSError(err)))
		return f
	}
	if int64(len(src)) > l.opts.MaxFileSize {
		l.report(diag.Errorf(diag.Range{Filename: path}, "", "file is larger than %d bytes", l.opts.MaxFileSize))
		return f
	}
	l.sources[path] = src
	l.parse(f, src, strict)
	return f
}

// parse fills f from src.
func (l *Loader) parse(f *fileDoc, src []byte, strict bool) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			if strict {
				l.report(diag.Errorf(diag.Range{Filename: f.path, Start: diag.Pos{Line: 1, Column: 1}}, "", "empty document"))
			} else {
				f.skip = true
			}
			return
		}
		l.report(yamlSyntaxError(f.path, err))
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.report(diag.Errorf(rangeOf(f.path, &extra), "", "a file holds one document; found a second one here").
			WithDetail("put each plan or inventory in its own file"))
	} else if !errors.Is(err, io.EOF) {
		l.report(yamlSyntaxError(f.path, err))
	}
	top := &doc
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	if top.Kind != yaml.MappingNode {
		if strict {
			l.report(diag.Errorf(rangeOf(f.path, top), "", "expected a mapping with apiVersion and kind, got a %s", kindName(top)))
		} else {
			f.skip = true
		}
		return
	}
	_, av := mapGet(top, "apiVersion")
	_, kv := mapGet(top, "kind")
	isOurs := (av != nil && strings.HasPrefix(av.Value, "jsplan.dev/")) ||
		(av == nil && kv != nil && (kv.Value == "Plan" || kv.Value == "Boards"))
	if !isOurs && !strict {
		if _, steps := mapGet(top, "steps"); steps == nil || av != nil {
			f.skip = true
			return
		}
	}
	var ds diag.Diagnostics
	checkStructure(f.path, &doc, "", &ds)
	l.diags = l.diags.Extend(ds)
	if len(ds) > 0 {
		return // duplicate keys or aliases make the tree ambiguous
	}
	f.root = top
	if kv != nil {
		f.kind = kv.Value
	}
	l.schemaCheck(f)
}

func yamlSyntaxError(file string, err error) *diag.Diagnostic {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	r := diag.Range{Filename: file}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserErrors[msg] {
			// yaml.v3 gives a parser error the 0-based line of the
			// construct it was parsing (scanner errors are 1-based).
			line++
		}
		r.Start = diag.Pos{Line: line, Column: 1}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return diag.Errorf(r, "", "YAML syntax error: %s", msg)
}

// yamlParserErrors are the messages of yaml.v3's parser (as opposed to its
// scanner), whose line numbers are one too low.
var yamlParserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found undefined tag handle":             true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		return "scalar"
	}
	return "document"
}

func cleanOSError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

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
	for _, name := range sortedKeys(l.opts.Values) {
		v := l.opts.Values[name]
		if !declared[name] {
			d := diag.Errorf(v.Source, "", "unknown parameter %q", name)
			if s := suggest(name, sortedKeys(declared)); s != "" {
				d.WithDetail("did you mean %q?", s)
			} else if len(declared) > 0 {
				d.WithDetail("the plan declares: %s", strings.Join(sortedKeys(declared), ", "))
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
		l.report(diag.Errorf(rangeOf(file, n), path, "invalid regular expression: %s", strings.TrimPrefix(msg, "error parsing regexp: ")).
			WithDetail("patterns use Go's RE2 syntax (https://golang.org/s/re2syntax); quote literal characters such as ( [ . *"))
		return Pattern{}, false
	}
	return Pattern{Source: n.Value, Range: rangeOf(file, n), Re: re}, true
}

func (l *Loader) decodeParams(f *fileDoc, pn *yaml.Node) []*Param {
	var out []*Param
	for i := 0; i+1 < len(pn.Content); i += 2 {
		k, v := pn.Content[i], pn.Content[i+1]
		p := &Param{Name: k.Value, Type: "string", Range: rangeOf(f.path, k)}
		path := "params." + k.Value
		if v.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(v.Content); j += 2 {
				fk, fv := v.Content[j], v.Content[j+1]
				switch fk.Value {
				case "type":
					p.Type = fv.Value
				case "description":
					p.Description = fv.Value
				case "required":
					p.Required = fv.Value == "true"
				case "secret":
					p.Secret = fv.Value == "true"
				case "values":
					for _, e := range fv.Content {
						p.Values = append(p.Values, e.Value)
					}
				case "default":
					p.HasDefault = true
					p.Default = fv.Value
				}
			}
		}
		if f.isBad("/params/" + k.Value) {
			out = append(out, p)
			continue
		}
		if p.Type == "enum" && len(p.Values) == 0 {
			l.report(diag.Errorf(p.Range, path, "an enum parameter needs `values`"))
		}
		if p.Type != "enum" && len(p.Values) > 0 {
			l.report(diag.Errorf(p.Range, path, "`values` is only for parameters of type enum"))
		}
		if p.Required && p.HasDefault {
			l.report(diag.Errorf(p.Range, path, "parameter %q is required and has a default", p.Name).
				WithDetail("drop `required` (the default is used when no value is given) or drop the default"))
		}
		if p.HasDefault {
			if _, dv := mapGet(v, "default"); dv != nil {
				if msg := checkValue(p, fmt.Sprint(p.Default)); msg != "" {
					l.report(diag.Errorf(rangeOf(f.path, dv), path+".default", "default: %s", msg))
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// checkValue checks text against a parameter's type; it returns a problem
// or "". The value of a secret parameter is never part of the problem.
func checkValue(p *Param, text string) string {
	shown := strconv.Quote(text)
	if p.Secret {
		shown = "the secret value"
		if redact.TooShort(text) {
			return fmt.Sprintf("%s is shorter than %d characters: a secret that short cannot be masked "+
				"(it would be masked inside every word it occurs in)", shown, redact.MinLen)
		}
	}
	switch p.Type {
	case "integer":
		if _, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64); err != nil {
			return shown + " is not an integer"
		}
	case "boolean":
		if _, err := strconv.ParseBool(strings.TrimSpace(text)); err != nil {
			return shown + " is not a boolean (true or false)"
		}
	case "duration":
		if _, err := ParseDuration(text); err != nil {
			return fmt.Sprintf("malformed duration %s: use a number and a unit, e.g. 30s, 5m, 1h30m", shown)
		}
	case "enum":
		for _, v := range p.Values {
			if v == text {
				return ""
			}
		}
		return fmt.Sprintf("%s is not one of: %s", shown, strings.Join(p.Values, ", "))
	}
	return ""
}

func tagFor(p *Param) string {
	switch p.Type {
	case "integer":
		return "!!int"
	case "boolean":
		return "!!bool"
	}
	return "!!str"
}

// bindParams fills the scope from values, defaults and requirements.
func (l *Loader) bindParams(f *fileDoc, p *Plan, sc *scope, values map[string]valueSrc, at *diag.Range) {
	for _, prm := range p.Params {
		sc.names = append(sc.names, prm.Name)
		v, given := values[prm.Name]
		sv := scopeValue{tag: tagFor(prm), secret: prm.Secret}
		switch {
		case given && !v.known:
			// a pending reference from the parent plan
		case given:
			if msg := checkValue(prm, v.text); msg != "" {
				l.report(diag.Errorf(v.src, "", "parameter %q: %s", prm.Name, msg))
				continue
			}
			sv.known, sv.text = true, normalize(prm, v.text, v.base)
		case prm.HasDefault:
			sv.known, sv.text = true, normalize(prm, fmt.Sprint(prm.Default), p.Dir)
		case prm.Required && at != nil:
			l.report(diag.Errorf(*at, "", "missing required input %q of %s", prm.Name, f.path).
				WithDetail("give it under `with:`"))
		case prm.Required && l.opts.Mode == ModeRun:
			l.report(diag.Errorf(prm.Range, "params."+prm.Name, "missing value for required parameter %q", prm.Name).
				WithDetail("pass it with --set %s=VALUE, a --params-file, or $JSPLAN_PARAM_%s", prm.Name, strings.ToUpper(strings.ReplaceAll(prm.Name, "-", "_"))))
		case !prm.Required:
			// an optional parameter without default is the empty string
			if prm.Type == "string" {
				sv.known = true
			}
		}
		if sv.known && sv.secret && sv.text != "" {
			l.secrets[sv.text] = true
		}
		sc.values[prm.Name] = sv
	}
}

// normalize puts a checked value in canonical form; relative paths become
// absolute against base (the working directory when base is "").
func normalize(p *Param, text, base string) string {
	switch p.Type {
	case "integer", "boolean":
		return strings.TrimSpace(text)
	case "path":
		if text == "" || filepath.IsAbs(text) || expr.Has(text) {
			return text
		}
		if base == "" {
			if abs, err := filepath.Abs(text); err == nil {
				return abs
			}
			return text
		}
		return filepath.Join(base, text)
	}
	return text
}

// loc is a node's place in the document, turned into a path or a JSON
// pointer only when needed (an error, a schema-error check).
type loc struct {
	up  *loc
	key string // "" for a list index
	idx int
}

func (c *loc) path() string {
	if c == nil {
		return ""
	}
	p := c.up.path()
	if c.key == "" {
		return fmt.Sprintf("%s[%d]", p, c.idx)
	}
	return joinPath(p, c.key)
}

func (c *loc) ptr() string {
	if c == nil {
		return ""
	}
	if c.key == "" {
		return c.up.ptr() + "/" + strconv.Itoa(c.idx)
	}
	return c.up.ptr() + "/" + c.key
}

// Roles of nodes while expanding: lists under steps/finally hold steps,
// whose action keys may be verbatim.
const (
	rolePlain = iota
	roleSteps
	roleStep
	roleNoSecret // a scalar whose references must not be secrets
)

// expand returns n with every reference in its scalars replaced. It never
// changes n: nodes on the way to a changed scalar are copied, the rest is
// shared, so a library used many times is parsed once and copied little.
func (l *Loader) expand(f *fileDoc, n *yaml.Node, at *loc, sc *scope, role int) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		var out *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			// params hold the defaults, which are values, not templates
			if at == nil && key == "params" {
				continue
			}
			v := n.Content[i+1]
			child := &loc{up: at, key: key}
			var nv *yaml.Node
			st, isAction := LookupStep(key)
			switch {
			case role == roleStep && isAction && (len(st.Verbatim) > 0 || len(st.NoSecrets) > 0):
				nv = l.expandVerbatim(f, st, v, child, sc)
			case key == "steps" || key == "finally":
				nv = l.expand(f, v, child, sc, roleSteps)
			default:
				nv = l.expand(f, v, child, sc, rolePlain)
			}
			if nv != v {
				if out == nil {
					out = shallowCopy(n)
				}
				out.Content[i+1] = nv
			}
		}
		if out != nil {
			return out
		}
	case yaml.SequenceNode:
		var out *yaml.Node
		itemRole := rolePlain
		if role == roleSteps {
			itemRole = roleStep
		}
		for i, c := range n.Content {
			nc := l.expand(f, c, &loc{up: at, idx: i}, sc, itemRole)
			if nc != c {
				if out == nil {
					out = shallowCopy(n)
				}
				out.Content[i] = nc
			}
		}
		if out != nil {
			return out
		}
	case yaml.ScalarNode:
		if !expr.Has(n.Value) || f.isBad(at.ptr()) {
			return n
		}
		c := *n
		if l.expandScalar(f, &c, at.path(), sc, role == roleNoSecret) {
			return &c
		}
	}
	return n
}

func shallowCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = append([]*yaml.Node(nil), n.Content...)
	return &c
}

// expandVerbatim expands an action whose listed keys are taken as written.
func (l *Loader) expandVerbatim(f *fileDoc, st *StepType, n *yaml.Node, at *loc, sc *scope) *yaml.Node {
	verbatim := map[string]bool{}
	for _, k := range st.Verbatim {
		verbatim[k] = true
	}
	roleOf := func(key string) int {
		if slices.Contains(st.NoSecrets, key) {
			return roleNoSecret
		}
		return rolePlain
	}
	switch {
	case n.Kind == yaml.ScalarNode && verbatim[""]:
		return n
	case n.Kind != yaml.MappingNode:
		return l.expand(f, n, at, sc, roleOf(""))
	}
	var out *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		if verbatim[key] {
			continue
		}
		v := n.Content[i+1]
		if nv := l.expand(f, v, &loc{up: at, key: key}, sc, roleOf(key)); nv != v {
			if out == nil {
				out = shallowCopy(n)
			}
			out.Content[i+1] = nv
		}
	}
	if out != nil {
		return out
	}
	return n
}

// expandScalar expands n in place and reports whether it changed.
// With noSecret, a reference to a secret is an error.
func (l *Loader) expandScalar(f *fileDoc, n *yaml.Node, path string, sc *scope, noSecret bool) bool {
	r := rangeOf(f.path, n)
	var tag string
	whole, isWhole := expr.Whole(n.Value)
	lookup := func(ref expr.Ref) (string, bool, error) {
		v, ok, t, err := l.resolve(ref, sc)
		if err == nil && noSecret && l.isSecret(ref, sc, v, ok) {
			name := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(ref.Rest()))
			return "", false, &diag.Diagnostic{Severity: diag.Error,
				Summary: fmt.Sprintf("%s is a secret: it cannot be pasted into a shell command", ref.Path),
				Detail:  fmt.Sprintf("pass it through env, e.g. env: {%s: \"${{ %s }}\"}, and use \"$%s\" in the command", name, ref.Path, name)}
		}
		if isWhole && ref == whole {
			tag = t
		}
		return v, ok, err
	}
	out, err := expr.Expand(n.Value, lookup, l.opts.Mode == ModeRun)
	if err != nil {
		var d *diag.Diagnostic
		if errors.As(err, &d) {
			d.Subject, d.Path = r, path
			l.report(d)
		} else {
			l.report(diag.Errorf(r, path, "%v", err))
		}
		return false
	}
	if out == n.Value {
		return false
	}
	n.Value = out
	n.Style = 0
	n.Tag = "!!str"
	if isWhole && tag != "" && !expr.Has(out) {
		n.Tag = tag
	}
	return true
}

// isSecret reports whether a resolved reference is a secret: a secret
// parameter of this plan, or a value registered as secret (one passed down
// from a using plan).
func (l *Loader) isSecret(ref expr.Ref, sc *scope, val string, known bool) bool {
	if ref.Namespace() == "params" && sc.values[ref.Rest()].secret {
		return true
	}
	return known && val != "" && l.secrets[val]
}

// resolve looks a reference up. ok=false leaves it pending.
func (l *Loader) resolve(ref expr.Ref, sc *scope) (val string, ok bool, tag string, err error) {
	ns, rest := ref.Namespace(), ref.Rest()
	switch ns {
	case "params":
		v, found := sc.values[rest]
		if !found {
			d := &diag.Diagnostic{Severity: diag.Error, Summary: fmt.Sprintf("undefined parameter %q", rest)}
			if s := suggest(rest, sc.names); s != "" {
				d.Detail = fmt.Sprintf("did you mean %q?", s)
			} else if len(sc.names) == 0 {
				d.Detail = "declare it under `params:`"
			} else {
				d.Detail = "declared parameters: " + strings.Join(sc.names, ", ")
			}
			return "", false, "", d
		}
		return v.text, v.known, v.tag, nil
	case "env":
		if rest == "" {
			return "", false, "", fmt.Errorf("reference %q needs a variable name, e.g. env.HOME", ref.Path)
		}
		if l.opts.Mode != ModeRun || l.opts.Env == nil {
			return "", false, "", nil
		}
		v, found := l.opts.Env(rest)
		if !found {
			return "", false, "", fmt.Errorf("environment variable %s is not set", rest)
		}
		return v, true, "!!str", nil
	case "board":
		b := l.opts.Board
		if b == nil {
			if rest == "name" || strings.HasPrefix(rest, "labels.") || strings.HasPrefix(rest, "vars.") {
				return "", false, "", nil
			}
			return "", false, "", fmt.Errorf("unknown reference %q: use board.name, board.labels.NAME or board.vars.NAME", ref.Path)
		}
		switch {
		case rest == "name":
			return b.Name, true, "!!str", nil
		case strings.HasPrefix(rest, "labels."):
			k := strings.TrimPrefix(rest, "labels.")
			if v, ok := b.Labels[k]; ok {
				return v, true, "!!str", nil
			}
			return "", false, "", fmt.Errorf("board %q has no label %q", b.Name, k)
		case strings.HasPrefix(rest, "vars."):
			k := strings.TrimPrefix(rest, "vars.")
			if v, ok := b.Vars[k]; ok {
				return v, true, "!!str", nil
			}
			return "", false, "", fmt.Errorf("board %q has no var %q (add it under vars: in the inventory)", b.Name, k)
		}
		return "", false, "", fmt.Errorf("unknown reference %q: use board.name, board.labels.NAME or board.vars.NAME", ref.Path)
	case "plan":
		switch rest {
		case "name":
			return sc.plan, true, "!!str", nil
		case "dir":
			return sc.dir, true, "!!str", nil
		}
		return "", false, "", fmt.Errorf("unknown reference %q: use plan.name or plan.dir", ref.Path)
	case "artifacts":
		if rest != "dir" {
			return "", false, "", fmt.Errorf("unknown reference %q: use artifacts.dir", ref.Path)
		}
		if l.opts.Artifacts == "" {
			return "", false, "", nil
		}
		return l.opts.Artifacts, true, "!!str", nil
	}
	return "", false, "", fmt.Errorf("unknown reference %q: references start with params., env., board., plan. or artifacts", ref.Path)
}

func (l *Loader) decodeSteps(pi *planInstance, n *yaml.Node, path, ptr string) []*Step {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	steps := make([]*Step, 0, len(n.Content))
	for i, c := range n.Content {
		sp, sptr := fmt.Sprintf("%s[%d]", path, i), fmt.Sprintf("%s/%d", ptr, i)
		if s := l.decodeStep(pi, c, sp, sptr); s != nil {
			steps = append(steps, s)
		}
	}
	return steps
}

func (l *Loader) decodeStep(pi *planInstance, n *yaml.Node, path, ptr string) *Step {
	f := pi.f
	if n.Kind != yaml.MappingNode || pi.f.isBad(ptr) && !pi.f.onlyNestedBad(ptr) {
		return nil
	}
	s := &Step{Path: path, Range: rangeOf(f.path, n)}
	if l.steps++; l.steps > MaxSteps {
		if !l.tooMany {
			l.tooMany = true
			chain := make([]string, len(l.stack))
			for i, p := range l.stack {
				chain[i] = relToWD(p)
			}
			l.report(diag.Errorf(s.Range, path, "the plan has more than %d steps once use: and group: are expanded", MaxSteps).
				WithDetail("reached through %s; a use: of a plan that itself uses plans multiplies the steps", strings.Join(chain, " -> ")))
		}
		return nil
	}
	var actionKey, actionVal *yaml.Node
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "name":
			s.Name = v.Value
		case "id":
			s.ID = v.Value
			if prev, dup := pi.ids[v.Value]; dup {
				l.report(diag.Errorf(rangeOf(f.path, v), path+".id", "duplicate step id %q", v.Value).
					WithDetail("first used at line %d, column %d", prev.Start.Line, prev.Start.Column))
			} else {
				pi.ids[v.Value] = rangeOf(f.path, v)
			}
		case "timeout":
			err = v.Decode(&s.Timeout)
			if err == nil && s.Timeout.Known() && s.Timeout.Duration <= 0 {
				err = fmt.Errorf("timeout must be longer than 0 (omit it for the step type's default)")
			}
		case "retry":
			err = v.Decode(&s.Retry)
			if a := s.Retry.Attempts; err == nil && a.Expr == "" && a.Value > MaxAttempts {
				_, an := mapGet(v, "attempts")
				l.report(diag.Errorf(rangeOf(f.path, an), path+".retry.attempts", "retry.attempts %d is more than the limit of %d", a.Value, MaxAttempts))
				ok = false
			}
		case "continue-on-error":
			err = v.Decode(&s.ContinueOnError)
		default:
			if _, known := LookupStep(k.Value); known && actionKey == nil {
				actionKey, actionVal = k, v
			}
		}
		if err != nil {
			ok = false
			l.report(diag.Errorf(rangeOf(f.path, v), path+"."+k.Value, "%s", cleanDecodeError(err)))
		}
	}
	if actionKey == nil || !ok {
		return nil // the schema reported it
	}
	st, _ := LookupStep(actionKey.Value)
	s.Type = st.Name
	s.node = actionVal
	dc := &DecodeContext{l: l, pi: pi, path: path + "." + st.Name, ptr: ptr + "/" + st.Name}
	s.Action = st.Decode(dc, actionVal)
	if s.Action == nil || dc.failed {
		return nil
	}
	return s
}

// onlyNestedBad reports whether every schema error under ptr lies inside
// a nested step list (group or use), which the nested decode will skip on
// its own.
func (f *fileDoc) onlyNestedBad(ptr string) bool {
	for _, b := range f.bad {
		if b == ptr || !strings.HasPrefix(b, ptr+"/") {
			if b == ptr {
				return false
			}
			continue
		}
		rest := strings.TrimPrefix(b, ptr+"/")
		parts := strings.Split(rest, "/")
		if len(parts) < 4 || parts[1] != "steps" && parts[1] != "finally" {
			return false
		}
	}
	return true
}

// checkTimeouts reports steps whose timeout exceeds the plan's.
func (l *Loader) checkTimeouts(p *Plan) {
	if !p.Timeout.IsSet() || !p.Timeout.Known() {
		return
	}
	WalkSteps(p.Steps, func(s *Step) {
		if s.Timeout.Known() && s.Timeout.Duration > p.Timeout.Duration {
			l.report(diag.Errorf(s.Range, s.Path+".timeout", "step timeout %s is longer than the plan timeout %s",
				FormatDuration(s.Timeout.Duration), FormatDuration(p.Timeout.Duration)).
				WithDetail("the plan would time out first; shorten the step timeout or raise the plan's"))
			return
		}
		// Not wrong, but likely not meant: the later attempts can never run.
		if n := s.Retry.Count(); n > 1 && s.Timeout.Known() {
			total := time.Duration(n)*s.Timeout.Duration + time.Duration(n-1)*s.Retry.Delay.Duration
			if total > p.Timeout.Duration {
				d := diag.Errorf(s.Range, s.Path+".retry", "%d attempts of up to %s each can take %s, longer than the plan timeout %s",
					n, FormatDuration(s.Timeout.Duration), FormatDuration(total), FormatDuration(p.Timeout.Duration)).
					WithDetail("the plan would time out before the last attempts; fewer attempts, a shorter step timeout or a longer plan timeout")
				d.Severity = diag.Warning
				l.report(d)
			}
		}
	})
}

// WalkSteps calls fn for every step, depth first, including steps inside
// groups and used plans.
func WalkSteps(steps []*Step, fn func(*Step)) {
	for _, s := range steps {
		fn(s)
		if p, ok := s.Action.(Parent); ok {
			for _, list := range p.Children() {
				WalkSteps(list, fn)
			}
		}
	}
}

// Needs returns the capabilities steps use, sorted.
func Needs(steps ...[]*Step) map[drivers.Capability]*Step {
	out := map[drivers.Capability]*Step{}
	for _, list := range steps {
		WalkSteps(list, func(s *Step) {
			var caps []drivers.Capability
			if n, ok := s.Action.(Needer); ok {
				caps = n.Needs()
			} else if st, ok := LookupStep(s.Type); ok {
				caps = st.Needs
			}
			for _, c := range caps {
				if _, seen := out[c]; !seen {
					out[c] = s
				}
			}
		})
	}
	return out
}

func cleanDecodeError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
			msg = msg[i+2:]
		}
		msg = strings.Replace(msg, "cannot unmarshal !!str", "expected another type, got the string", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!map into", "expected", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!seq into", "expected", 1)
		return msg
	}
	return err.Error()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Kind reads path (once) and returns the kind of document it holds: "Plan",
// "Boards", another kind the schema rejects, or "" for YAML that is not a
// jsplan document at all (an ansible playbook next to the plans). A file
// that cannot be parsed counts as a Plan, so its errors are reported.
func (l *Loader) Kind(path string) string {
	f := l.readFile(path, false)
	switch {
	case f.skip:
		return ""
	case f.root == nil:
		return "Plan"
	case f.kind == "":
		return "Plan"
	}
	return f.kind
}

// ReportForeign is for a file named on a command line that Kind found not to
// be a jsplan document: it reports an error saying what the file holds
// (apiVersion, kind) and what was expected, and returns true. With nearOnly
// (pre-commit names every changed YAML file) it reports only files that look
// meant for jsplan (kind Plan or Boards, or an apiVersion naming jsplan) and
// returns false for the rest, which the caller skips.
func (l *Loader) ReportForeign(path string, nearOnly bool) bool {
	var doc yaml.Node
	_ = yaml.Unmarshal(l.sources[path], &doc)
	top := &doc
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	at := diag.Range{Filename: path, Start: diag.Pos{Line: 1, Column: 1}}
	found := "no apiVersion and no kind"
	near := false
	if top.Kind == yaml.MappingNode {
		_, av := mapGet(top, "apiVersion")
		_, kv := mapGet(top, "kind")
		var parts []string
		if av != nil {
			at = rangeOf(path, av)
			parts = append(parts, fmt.Sprintf("apiVersion %q", av.Value))
			near = strings.Contains(strings.ToLower(av.Value), "jsplan")
		} else {
			parts = append(parts, "no apiVersion")
		}
		if kv != nil {
			if av == nil {
				at = rangeOf(path, kv)
			}
			parts = append(parts, fmt.Sprintf("kind %q", kv.Value))
			near = near || kv.Value == "Plan" || kv.Value == "Boards"
		} else {
			parts = append(parts, "no kind")
		}
		found = strings.Join(parts, " and ")
	} else if top.Kind != 0 {
		at = rangeOf(path, top)
		found = "a " + kindName(top) + ", not a mapping"
	} else {
		found = "no YAML document"
	}
	if nearOnly && !near {
		return false
	}
	l.report(diag.Errorf(at, "", "not a jsplan document: found %s", found).
		WithDetail("a plan starts with apiVersion: %s and kind: Plan; an inventory with kind: Boards", APIVersion))
	return true
}

// Preload reads, parses and schema-checks files on all CPUs; the loads
// that follow use the results. Diagnostics keep the order of paths.
func (l *Loader) Preload(paths []string) {
	workers := runtime.GOMAXPROCS(0)
	if workers > len(paths) {
		workers = len(paths)
	}
	if workers < 2 {
		return
	}
	results := make([]*Loader, len(paths))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sub := NewLoader(l.opts)
				sub.readFile(paths[i], false)
				results[i] = sub
			}
		}()
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, sub := range results {
		for abs, f := range sub.files {
			if _, seen := l.files[abs]; !seen {
				l.files[abs] = f
				l.diags = append(l.diags, sub.diags...)
			}
		}
		for name, src := range sub.sources {
			l.sources[name] = src
		}
	}
}
