// Package cfg holds the one way drivers read a duration from their
// configuration: a Duration that YAML reads only from strings such as
// "30s". The schema of such a key is schema.Duration; both use
// schema.DurationPattern.
package cfg

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/internal/yamlerr"
)

// Duration is a time.Duration read from a YAML string in Go syntax
// ("500ms", "30s", "2m"). A bare number is rejected, because YAML would
// otherwise read `timeout: 30` as 30 nanoseconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Or returns d, or def when d is zero (not configured).
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// OrDefault reads an optional duration: a *Duration field is nil when the
// key is absent, so an explicit "0s" stays zero.
func OrDefault(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return yamlerr.At(n, "duration must be a string with a unit, like \"30s\" or \"500ms\", not %q", n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return yamlerr.At(n, "bad duration %q: write it like \"30s\" or \"500ms\"", n.Value)
	}
	if v < 0 {
		return yamlerr.At(n, "duration %q is negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
