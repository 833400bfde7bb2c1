// Package engine loads, validates and runs jsplan plans. It knows no step
// type or driver by name: step types register themselves with Register
// (package steps), drivers with drivers.Register (packages under drivers/).
package engine

import (
	"context"
	"sort"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
)

// StepType describes a kind of step. Its Name is the action key that
// selects it in a plan (`power:`, `flash:`), like a Caddy module's inline
// key.
type StepType struct {
	// Name is the action key.
	Name string
	// Summary is one line for docs and the schema's description.
	Summary string
	// Schema is the JSON Schema (draft 2020-12) of the value under the
	// action key. It may use the shared definitions "#/$defs/duration",
	// "#/$defs/expr", "#/$defs/int", "#/$defs/bool", "#/$defs/stringList",
	// "#/$defs/steps" and "#/$defs/stringMap".
	Schema map[string]any
	// Config, when set, is a value of the struct the action's mapping form
	// decodes into (DecodeContext.Decode). A test checks that its YAML keys
	// are the schema's properties. Actions decoded by hand leave it nil.
	Config any
	// Needs lists the board capabilities every step of this type uses.
	// Actions whose needs depend on their values implement Needer.
	Needs []drivers.Capability
	// Decode builds the action from its node. The node has passed the
	// schema and has its references expanded as far as they are known.
	// Problems are reported through dc; Decode returns nil after an error.
	Decode func(dc *DecodeContext, n *yaml.Node) Action
	// DefaultTimeout applies when a step of this type sets no timeout
	// (steps that wait on the board must never wait forever).
	DefaultTimeout time.Duration
	// Verbatim lists keys of the action whose values are passed as written:
	// references are not expanded in them (commands run on the host take
	// values through environment variables instead, so nothing can be
	// injected into a shell).
	Verbatim []string
	// NoSecrets lists keys of the action ("" for the short form) whose
	// references must not resolve to a secret: shell code typed on the
	// board, where a secret would be pasted into a command line (quotes in
	// it break the command, the shell may print it transformed). The step
	// takes such values another way (through env).
	NoSecrets []string
	// HostCode lists keys of the action ("" for the short form) whose
	// value names code that runs on the host (a used plan, a playbook).
	// A value that holds references may only name a file inside the
	// top-level plan's directory or the directory of the file holding the
	// step: a parameter given on the command line cannot pick code from
	// elsewhere (see README, "What a plan parameter can choose").
	HostCode []string
}

// Action is a decoded step, ready to run.
type Action interface {
	// Run performs the step; s is the handle of the step (its board,
	// console, log, output and test cases) and ctx ends when the step must
	// stop. A returned error fails the step; its class (diag.ClassOf) says
	// whether the board failed the test or the infrastructure broke.
	Run(ctx context.Context, s *StepRun) error
}

// Needer is implemented by actions whose capability needs depend on their
// values (collect from the board needs a console; from local paths, none).
type Needer interface {
	Needs() []drivers.Capability
}

// Parent is implemented by actions that hold steps (group, use), so the
// engine can check and render the steps inside.
type Parent interface {
	Children() [][]*Step
}

var (
	regMu     sync.RWMutex
	stepTypes = map[string]*StepType{}
)

// Register adds a step type. It panics on an empty name, a missing Decode
// or a duplicate name.
func Register(t StepType) {
	regMu.Lock()
	defer regMu.Unlock()
	if t.Name == "" || t.Decode == nil {
		panic("engine: Register needs a Name and Decode")
	}
	if _, dup := stepTypes[t.Name]; dup || reservedStepKeys[t.Name] {
		panic("engine: step type registered twice or reserved: " + t.Name)
	}
	st := t
	stepTypes[t.Name] = &st
}

// LookupStep returns the step type registered under name.
func LookupStep(name string) (*StepType, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	t, ok := stepTypes[name]
	return t, ok
}

// StepTypes lists the registered step types, sorted by name.
func StepTypes() []*StepType {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]*StepType, 0, len(stepTypes))
	for _, t := range stepTypes {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// reservedStepKeys are the keys every step may have besides its action.
var reservedStepKeys = map[string]bool{
	"name": true, "id": true, "timeout": true, "retry": true, "continue-on-error": true, "on": true,
}
