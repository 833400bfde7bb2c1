package engine

import (
	"fmt"
	"github.com/jsplan/jsplan/internal/shorten"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/engine/diag"
	"github.com/jsplan/jsplan/engine/expr"
	"github.com/jsplan/jsplan/schema"
)

// Plan is a loaded plan: its own settings and its decoded steps, with every
// reference expanded that could be.
type Plan struct {
	// File is the plan's path as given.
	File string
	// Dir is the directory relative paths in the plan resolve against.
	Dir         string
	Name        string
	Description string
	Params      []*Param
	Board       BoardSelector
	Timeout     Duration
	FailOn      []Pattern
	Steps       []*Step
	Finally     []*Step
	// Roles are the boards a plan that needs several asks for (boards:),
	// in the plan's order; empty for a single-board plan (Board). See
	// multi.go.
	Roles []*Role
	// Same lists labels whose value every role's board must share.
	Same []string
	// Resources are the shares of shared resources the run holds.
	Resources []*ResourceRequest
	// Range is the document's position, for diagnostics about the whole plan.
	Range diag.Range
	// BoardRange points at the `board:` key (or the document).
	BoardRange diag.Range
}

// BoardSelector asks for a board by name or by labels.
type BoardSelector struct {
	Name   string            `yaml:"name,omitempty" json:"name,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// IsZero reports whether the selector is empty (any board).
func (s BoardSelector) IsZero() bool { return s.Name == "" && len(s.Labels) == 0 }

func (s BoardSelector) String() string {
	if s.Name != "" {
		return s.Name
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		parts = append(parts, k+"="+s.Labels[k])
	}
	if len(parts) == 0 {
		return "any board"
	}
	return strings.Join(parts, ",")
}

// Param is a declared plan parameter.
type Param struct {
	Name        string
	Type        string // string, integer, boolean, duration, enum
	Description string
	Default     any
	HasDefault  bool
	Required    bool
	Secret      bool
	Values      []string
	Range       diag.Range
}

// Step is one decoded step.
type Step struct {
	Name            string
	ID              string
	Type            string
	Timeout         Duration
	Retry           Retry
	ContinueOnError Bool
	Action          Action
	// On is the role the step runs on (on:); "" runs it where the
	// enclosing step runs (the first role at the top).
	On string
	// Path is the step's place, e.g. "steps[2]" or "steps[1].group.steps[0]".
	Path  string
	Range diag.Range
	// node is the action's value node after expansion, for render.
	node *yaml.Node
}

// Title is the name shown in reports: the name, else the id, else the type
// and a short form of its value.
func (s *Step) Title() string {
	switch {
	case s.Name != "":
		return s.Name
	case s.ID != "":
		return s.ID
	}
	if t, ok := s.Action.(Titler); ok {
		if title := t.Title(); title != "" {
			return clip(s.Type+" "+title, 60)
		}
	}
	if s.node != nil && s.node.Kind == yaml.ScalarNode {
		v := s.node.Value
		if len(v) > 48 {
			v = v[:45] + "..."
		}
		return s.Type + " " + strings.ReplaceAll(v, "\n", " ")
	}
	return s.Type
}

// Titler is implemented by actions that can name themselves in reports
// when the step has no name ("use lib/boot.yaml", "run uname -a").
type Titler interface {
	Title() string
}

// clip folds s's white space and cuts it to n bytes with the "...".
func clip(s string, n int) string {
	return shorten.Clip(strings.Join(strings.Fields(s), " "), n-3)
}

// Retry says how often a step is attempted.
type Retry struct {
	Attempts Int      `yaml:"attempts" json:"attempts"`
	Delay    Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
}

// Count is the number of attempts (at least 1).
func (r Retry) Count() int {
	if r.Attempts.Value < 1 {
		return 1
	}
	return int(r.Attempts.Value)
}

// Pattern is a compiled regular expression with its source text.
type Pattern struct {
	Source string
	Range  diag.Range
	Re     *regexp.Regexp
}

// Duration is a time span written like "30s" in a plan. Expr holds a
// reference whose value is not known yet (only in `jsplan validate`).
type Duration struct {
	time.Duration
	Expr string
}

// IsSet reports whether a value was given.
func (d Duration) IsSet() bool { return d.Duration != 0 || d.Expr != "" }

// Known reports whether the value is known (not a pending reference).
func (d Duration) Known() bool { return d.Expr == "" }

// UnmarshalYAML accepts "1m30s" or a pending reference.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 30s")
	}
	if _, ok := expr.Whole(n.Value); ok {
		d.Expr = n.Value
		return nil
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration back in plan form.
func (d Duration) MarshalYAML() (any, error) {
	if d.Expr != "" {
		return d.Expr, nil
	}
	return FormatDuration(d.Duration), nil
}

// MarshalText writes the duration for JSON.
func (d Duration) MarshalText() ([]byte, error) {
	v, _ := d.MarshalYAML()
	return []byte(v.(string)), nil
}

// ParseDuration parses a plan duration; it must have a unit and be
// positive.
func ParseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("malformed duration %q: use a number and a unit, e.g. 30s, 5m, 1h30m", s)
	}
	return v, nil
}

// FormatDuration prints a duration without trailing zero units ("5m", not
// "5m0s"): schema.FormatDuration, as plans write durations.
func FormatDuration(d time.Duration) string { return schema.FormatDuration(d) }

// Int is an integer that may be a pending reference.
type Int struct {
	Value int64
	Expr  string
}

// UnmarshalYAML accepts an integer or a pending reference.
func (i *Int) UnmarshalYAML(n *yaml.Node) error {
	if _, ok := expr.Whole(n.Value); ok && n.Kind == yaml.ScalarNode {
		i.Expr = n.Value
		return nil
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("expected an integer, got %q", n.Value)
	}
	i.Value = v
	return nil
}

// MarshalYAML writes the value.
func (i Int) MarshalYAML() (any, error) {
	if i.Expr != "" {
		return i.Expr, nil
	}
	return i.Value, nil
}

// MarshalJSON writes the value.
func (i Int) MarshalJSON() ([]byte, error) {
	if i.Expr != "" {
		return []byte(strconv.Quote(i.Expr)), nil
	}
	return []byte(strconv.FormatInt(i.Value, 10)), nil
}

// Bool is a boolean that may be a pending reference.
type Bool struct {
	Value bool
	Expr  string
}

// UnmarshalYAML accepts true/false or a pending reference.
func (b *Bool) UnmarshalYAML(n *yaml.Node) error {
	if _, ok := expr.Whole(n.Value); ok && n.Kind == yaml.ScalarNode {
		b.Expr = n.Value
		return nil
	}
	v, err := strconv.ParseBool(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("expected true or false, got %q", n.Value)
	}
	b.Value = v
	return nil
}

// MarshalYAML writes the value.
func (b Bool) MarshalYAML() (any, error) {
	if b.Expr != "" {
		return b.Expr, nil
	}
	return b.Value, nil
}

// MarshalJSON writes the value.
func (b Bool) MarshalJSON() ([]byte, error) {
	if b.Expr != "" {
		return []byte(strconv.Quote(b.Expr)), nil
	}
	return []byte(strconv.FormatBool(b.Value)), nil
}
