package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
)

// Defaults of an inventory's health check.
const (
	DefaultHealthEvery         = 24 * time.Hour
	DefaultHealthAfterFailures = 2
)

// HealthSpec is a board's health check, from the inventory:
//
//	health: {plan: ../lib/health.yaml, every: 24h, after-failures: 2}
//
// on a board, or for every board whose labels match, in a top-level list
// of the Boards document:
//
//	health:
//	  - labels: {kind: virtual}
//	    plan: ../lib/health.yaml
//
// A board's own health: wins; else the first entry of the list that
// matches it (an entry without labels matches every board of the file).
type HealthSpec struct {
	// Plan is the check's plan file, resolved against the inventory's
	// directory.
	Plan string
	// Every: a check older than this is due again.
	Every time.Duration
	// AfterFailures infrastructure failures in a row make a check due.
	AfterFailures int
	// Range locates the health: entry in the inventory.
	Range diag.Range
}

// healthSchema is the JSON Schema of a health entry; withLabels adds the
// top-level list's selector.
func healthSchema(withLabels bool) obj {
	props := obj{
		"plan":           obj{"type": "string", "minLength": 1, "description": "The health check: an ordinary plan, relative to the inventory file (e.g. ../lib/health.yaml)."},
		"every":          obj{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, "description": "Check again when the last check is this old (default 24h)."},
		"after-failures": obj{"type": "integer", "minimum": 1, "description": "Check after this many infrastructure failures (exit 3) in a row (default 2)."},
	}
	desc := "The board's health check: a failing check takes the board out of selection."
	if withLabels {
		props["labels"] = obj{"type": "object", "additionalProperties": obj{"type": "string"}, "description": "The boards of this file it applies to (all when absent)."}
		desc = "A health check for the boards of this file whose labels match."
	}
	return strictObject(desc, props, "plan")
}

// healthFrom reads a health: mapping (already checked against the schema).
func (l *Loader) healthFrom(f *fileDoc, n *yaml.Node, path string) *HealthSpec {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	h := &HealthSpec{Every: DefaultHealthEvery, AfterFailures: DefaultHealthAfterFailures, Range: rangeOf(f.path, n)}
	_, pn := mapGet(n, "plan")
	if pn == nil || pn.Value == "" {
		return nil
	}
	h.Plan = pn.Value
	if !filepath.IsAbs(h.Plan) {
		h.Plan = filepath.Join(filepath.Dir(f.abs), h.Plan)
	}
	if fi, err := os.Stat(h.Plan); err != nil || fi.IsDir() {
		what := "not found"
		if err == nil {
			what = "a directory"
		}
		l.report(diag.Errorf(rangeOf(f.path, pn), path+".plan", "health check plan %q: %s", pn.Value, what).
			WithDetail("the path is relative to the inventory file's directory (%s)", filepath.Dir(f.abs)))
		return nil
	}
	if _, en := mapGet(n, "every"); en != nil {
		d, err := time.ParseDuration(en.Value)
		if err != nil || d <= 0 {
			l.report(diag.Errorf(rangeOf(f.path, en), path+".every", "every: %q is not a positive duration", en.Value).
				WithDetail("e.g. 24h, 12h, 30m"))
			return nil
		}
		h.Every = d
	}
	if _, an := mapGet(n, "after-failures"); an != nil {
		var v int
		if err := an.Decode(&v); err != nil || v < 1 {
			return nil // the schema reported it
		}
		h.AfterFailures = v
	}
	return h
}

// healthDefaults gives the boards of one Boards document without a
// health: of their own the first matching entry of the document's
// top-level health list.
func (l *Loader) healthDefaults(f *fileDoc, boards []*BoardSpec) {
	_, list := mapGet(f.root, "health")
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	type entry struct {
		labels map[string]string
		spec   *HealthSpec
	}
	var entries []entry
	for i, n := range list.Content {
		if f.isBad(fmt.Sprintf("/health/%d", i)) {
			continue
		}
		h := l.healthFrom(f, n, fmt.Sprintf("health[%d]", i))
		if h == nil {
			continue
		}
		e := entry{spec: h}
		if _, ln := mapGet(n, "labels"); ln != nil {
			_ = ln.Decode(&e.labels)
		}
		entries = append(entries, e)
	}
	for _, b := range boards {
		if b.Health != nil || b.File != f.path {
			continue
		}
		for _, e := range entries {
			if b.Matches(BoardSelector{Labels: e.labels}) {
				b.Health = e.spec
				break
			}
		}
	}
}
