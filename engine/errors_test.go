package engine

import (
	"errors"
	"testing"

	"github.com/jsplan/jsplan/engine/diag"
)

func TestAppendErrKeepsEveryErrorAndClass(t *testing.T) {
	first := diag.Failf("power off failed")
	second := diag.Infraf("relay stuck")
	err := appendErr(appendErr(nil, first), second)
	if err.Error() != "power off failed; and relay stuck" {
		t.Fatalf("message %q", err.Error())
	}
	if !errors.Is(err, first) || !errors.Is(err, second) {
		t.Fatal("both errors must stay reachable")
	}
	if appendErr(nil, nil) != nil {
		t.Fatal("no errors, no error")
	}
	if diag.ClassOf(err) != diag.Failure {
		t.Fatalf("class %v", diag.ClassOf(err))
	}
}
