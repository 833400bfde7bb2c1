package diag

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// A diagnostic built without a severity fails closed: it counts as an
// error everywhere, and says that its severity was not set.
func TestZeroSeverityIsAnErrorThatSaysSo(t *testing.T) {
	unset := &Diagnostic{Class: Failure, Summary: "no severity"}
	warn := &Diagnostic{Severity: Warning, Summary: "w"}
	odd := &Diagnostic{Severity: Severity(7), Summary: "odd"}
	ds := Diagnostics{warn, unset, odd}
	if !ds.HasErrors() || len(ds.Errs()) != 2 || ds.Class() != Failure {
		t.Errorf("HasErrors %v, Errs %d, Class %s: the unset and the unknown severity must count as errors", ds.HasErrors(), len(ds.Errs()), ds.Class())
	}
	if got := Summary(ds); !strings.HasPrefix(got, "2 errors, 1 warning") {
		t.Errorf("Summary = %q", got)
	}
	var b bytes.Buffer
	WriteText(&b, Diagnostics{unset, odd}, nil)
	if !strings.Contains(b.String(), "error (severity not set): no severity") || !strings.Contains(b.String(), "error (unknown severity 7): odd") {
		t.Errorf("text:\n%s", b.String())
	}
	j, _ := json.Marshal(unset)
	if !strings.Contains(string(j), `"severity":"error"`) {
		t.Errorf("json %s", j)
	}
	if Severity(0).IsError() != true || Warning.IsError() || !Error.IsError() {
		t.Error("IsError")
	}
}
