package engine

// Reading and parsing plan and inventory files: one parse per file, kept for
// every later load; what is not a jsplan document.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/internal/yamlerr"
)

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

// readFile parses and schema-checks a file once. strict makes a file that
// is not a jsplan document an error (it was named as a plan).
func (l *Loader) readFile(path string, strict bool) *fileDoc {
	f, err := l.openFile(path, strict)
	if err != nil {
		l.report(diag.Errorf(diag.Range{Filename: path}, "", "cannot read file: %v", cleanOSError(err)))
	}
	return f
}

// openFile is readFile that returns, instead of reporting, the error that
// kept a file it had not seen before from being read (a used plan reports
// it at the use).
func (l *Loader) openFile(path string, strict bool) (*fileDoc, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	if f, ok := l.files[abs]; ok {
		return f, nil
	}
	f := &fileDoc{path: path, abs: abs}
	l.files[abs] = f
	fh, err := os.Open(path)
	if err != nil {
		return f, err
	}
	src, err := io.ReadAll(io.LimitReader(fh, l.opts.MaxFileSize+1))
	fh.Close()
	if err != nil {
		return f, err
	}
	if int64(len(src)) > l.opts.MaxFileSize {
		l.report(diag.Errorf(diag.Range{Filename: path}, "", "file is larger than %d bytes", l.opts.MaxFileSize))
		return f, nil
	}
	l.sources[path] = src
	l.parse(f, src, strict)
	return f, nil
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
		l.report(yamlSyntaxError(f.path, src, err))
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.report(diag.Errorf(rangeOf(f.path, &extra), "", "a file holds one document; found a second one here").
			WithDetail("put each plan or inventory in its own file"))
	} else if !errors.Is(err, io.EOF) {
		l.report(yamlSyntaxError(f.path, src, err))
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

func yamlSyntaxError(file string, src []byte, err error) *diag.Diagnostic {
	e := yamlerr.Syntax(src, err)
	r := diag.Range{Filename: file}
	if e.Line > 0 {
		r.Start = diag.Pos{Line: e.Line, Column: e.Column}
	}
	return diag.Errorf(r, "", "YAML syntax error: %s", e.Msg)
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
