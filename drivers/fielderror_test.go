package drivers

import (
	"errors"
	"strings"
	"testing"
)

// A warning keeps its level through Also and Via*, Fatal drops it, and
// Error says which lines are warnings.
func TestFieldErrorWarnings(t *testing.T) {
	w := WarnField("port", "unstable name").ViaField("console")
	if w.Level != LevelWarning || w.Path != "console.port" {
		t.Fatalf("warning after ViaField: %+v", w)
	}
	if err := Fatal(w.Err()); err != nil {
		t.Errorf("Fatal(warning only) = %v, want nil", err)
	}
	both := w.Also(ErrField("baud", "bad"))
	err := Fatal(both.Err())
	var fe *FieldError
	if !errors.As(err, &fe) || len(fe.Errors()) != 1 || fe.Path != "baud" || fe.Level != LevelError {
		t.Errorf("Fatal(warning + error) = %v", err)
	}
	if s := both.Error(); !strings.Contains(s, "console.port: warning: unstable name") || !strings.Contains(s, "baud: bad") {
		t.Errorf("Error() = %q", s)
	}
	plain := errors.New("x")
	if Fatal(plain) != plain || Fatal(nil) != nil {
		t.Error("Fatal must pass other errors through")
	}
}
