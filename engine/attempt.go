package engine

import (
	"time"

	"github.com/jsplan/jsplan/engine/result"
)

// Attempt is one attempt of a run that was retried after an
// infrastructure error (exit 3) on another board: jsplan apply
// --retry-infra.
type Attempt struct {
	// N counts from 1.
	N        int           `json:"attempt"`
	Board    string        `json:"board"`
	Status   result.Status `json:"status"`
	ExitCode int           `json:"exit_code"`
	Start    time.Time     `json:"start"`
	Seconds  float64       `json:"duration_seconds"`
	// Reason is why the attempt ended as it did (its error), and for an
	// attempt that was retried, why the next one ran elsewhere.
	Reason string `json:"reason,omitempty"`
	// Dir is the attempt's own artifacts, relative to the run's
	// ("attempt-1"); empty for the last attempt, whose artifacts are the
	// run's.
	Dir string `json:"dir,omitempty"`
}
