package results

import (
	"testing"

	"github.com/jsplan/jsplan/engine/result"
)

func TestJudge(t *testing.T) {
	cases := parseFile(t, "ktap", "ktap-spec.ktap")
	// i2c_read fails, so do its suite and the top test: one failure, not
	// three.
	v := Judge(cases, Policy{})
	if v.Pass != 3 || v.Fail != 1 || v.Skip != 2 || len(v.Failed) != 1 || v.Failed[0] != "board_test/i2c_suite/i2c_read" || v.OK(Policy{}) {
		t.Fatalf("verdict: %+v", v)
	}
	if got := v.Summary(); got != "6 test cases: 3 passed, 1 failed, 2 skipped" {
		t.Fatalf("summary %q", got)
	}
	// Allowed by its path, or by its name alone: the step passes; the case
	// keeps its status and says it was allowed.
	for _, pat := range []string{"board_test/i2c_suite/*", "i2c_re?d", "*/i2c_read"} {
		cases := parseFile(t, "ktap", "ktap-spec.ktap")
		p := Policy{AllowFailures: []string{"nothing", pat}}
		v := Judge(cases, p)
		c := find(t, cases, "board_test/i2c_suite/i2c_read")
		if !v.OK(p) || len(v.Allowed) != 1 || c.Status != result.Failed || !c.Allowed {
			t.Fatalf("%s: %+v %+v", pat, v, c)
		}
		if got := v.Summary(); got != "6 test cases: 3 passed, 1 failed (1 allowed), 2 skipped" {
			t.Fatalf("summary %q", got)
		}
	}
	// A threshold.
	if !Judge(parseFile(t, "ktap", "ktap-spec.ktap"), Policy{}).OK(Policy{MaxFailures: 1}) {
		t.Fatal("max-failures 1 does not accept one failure")
	}
	// A suite that fails with no failing subtest counts itself; an
	// incomplete suite fails through its error cases; xfail passes.
	v = Judge(parseString(t, "ktap", "1..2\n  1..1\n  ok 1 a\nnot ok 1 s\nok 2 x # XFAIL known\n"), Policy{})
	if v.Fail != 1 || v.Failed[0] != "s" || v.XFail != 1 || v.Pass != 1 {
		t.Fatalf("verdict: %+v", v)
	}
	v = Judge(parseFile(t, "ktap", "kunit-cut.ktap"), Policy{AllowFailures: []string{"mm/*"}})
	if v.OK(Policy{}) || v.Error != 2 || len(v.Failed) != 2 {
		t.Fatalf("incomplete suite: %+v", v)
	}
}
