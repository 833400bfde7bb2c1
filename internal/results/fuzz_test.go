package results

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/jsplan/jsplan/engine/result"
)

// fuzzParse feeds data whole and in two pieces split at cut: the parser
// must not panic, must give the same cases both ways, and every case must
// have a valid status and bounded fields.
func fuzzParse(t *testing.T, format string, data []byte, cut uint) {
	lim := Limits{MaxCases: 200, MaxOutput: 256, MaxLine: 512, MaxDepth: 8}
	var whole, split []*result.TestCase
	i := int(cut % uint(len(data)+1))
	if format == "junit" {
		// The decoder itself, without the pipe and goroutine of the
		// Parser (which the fuzzer runs a hundred times slower): whole,
		// and one byte per read.
		whole = decodeJUnit(bytes.NewReader(data), lim.withDefaults())
		split = decodeJUnit(iotest.OneByteReader(bytes.NewReader(data)), lim.withDefaults())
	} else {
		p1, _ := New(format, lim)
		_, _ = p1.Write(data)
		whole = p1.Close()
		p2, _ := New(format, lim)
		_, _ = p2.Write(data[:i])
		_, _ = p2.Write(data[i:])
		split = p2.Close()
	}
	if a, b := tree(whole), tree(split); a != b {
		t.Fatalf("split at %d changes the result:\n%s\nvs\n%s", i, b, a)
	}
	n := 0
	walk(whole, func(c *result.TestCase) {
		n++
		switch c.Status {
		case result.Passed, result.Failed, result.Skipped, result.XFail, result.Error:
		default:
			t.Fatalf("status %q", c.Status)
		}
		if len(c.Output) > 2*lim.MaxOutput+8 || len(c.Message) > lim.MaxOutput+8 || len(c.Name) > 1100 {
			t.Fatalf("unbounded field: name %d message %d output %d", len(c.Name), len(c.Message), len(c.Output))
		}
	})
	if n > 3*lim.MaxCases {
		t.Fatalf("%d cases kept (limit %d)", n, lim.MaxCases)
	}
	Judge(whole, Policy{AllowFailures: []string{"*a*"}})
}

func seed(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint(len(b)/2))
	}
}

func FuzzKTAP(f *testing.F) {
	seed(f, "kunit-boot.ktap", "kselftest.ktap", "ktap-spec.ktap", "kunit-cut.ktap")
	f.Add([]byte("1..0 # SKIP x\n  ok 1\n ok\nnot ok 3 - \\# # TODO\n"), uint(5))
	f.Fuzz(func(t *testing.T, data []byte, cut uint) { fuzzParse(t, "ktap", data, cut) })
}

func FuzzTAP(f *testing.F) {
	seed(f, "test-more.tap", "node-test.tap", "prove-v-merge.txt")
	f.Add([]byte("ok 1\n  ---\n  message: |\n    x\n  duration_ms: 1e300\nBail out!\n"), uint(3))
	f.Fuzz(func(t *testing.T, data []byte, cut uint) { fuzzParse(t, "tap", data, cut) })
}

func FuzzJUnit(f *testing.F) {
	seed(f, "pytest.xml")
	f.Add([]byte("<testsuite><testcase><![CDATA[<!-- ]]><skipped type='xfail'/></testcase></testsuite>"), uint(9))
	f.Fuzz(func(t *testing.T, data []byte, cut uint) { fuzzParse(t, "junit", data, cut) })
}
