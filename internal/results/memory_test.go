package results

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine/result"
)

// genReader produces n bytes by repeating what next returns, without
// holding the stream in memory.
type genReader struct {
	left int64
	next func(i int) string
	i    int
	buf  []byte
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, io.EOF
	}
	for len(g.buf) < len(p) {
		g.buf = append(g.buf, g.next(g.i)...)
		g.i++
	}
	n := copy(p, g.buf)
	if int64(n) > g.left {
		n = int(g.left)
	}
	g.buf = append(g.buf[:0], g.buf[n:]...)
	g.left -= int64(n)
	return n, nil
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// streams are 100 MB inputs that would grow memory without the limits:
// endless results, one endless line, endless diagnostics, endless XML text.
var streams = []struct {
	name, format, head string
	next               func(int) string
}{
	{"ktap results", "ktap", "KTAP version 1\n", func(i int) string {
		n := strconv.Itoa(i + 1)
		return "ok " + n + " case_" + n + "\n"
	}},
	{"tap one line", "tap", "TAP version 13\nok 1 ", func(int) string { return "xxxxxxxxxxxxxxxx" }},
	{"ktap diagnostics and nesting", "ktap", "", func(i int) string {
		return strings.Repeat(" ", i%40) + "KTAP version 1\n# diagnostic line " + strconv.Itoa(i) + " of a chatty kernel\n"
	}},
	{"tap yaml", "tap", "ok 1 x\n  ---\n", func(int) string { return "  data: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n" }},
	{"junit cases", "junit", "<testsuites><testsuite name='s'>", func(i int) string {
		n := strconv.Itoa(i)
		return "<testcase name='c" + n + "' time='0.1'><failure message='m'>trace " + n + "</failure><system-out>out</system-out></testcase>\n"
	}},
	{"junit one text", "junit", "<testsuite name='s'><testcase name='c'><system-out>", func(int) string { return "zzzzzzzz&amp;zzzzzzz" }},
	{"junit cdata", "junit", "<testsuite name='s'><testcase name='c'><system-out><![CDATA[", func(int) string { return "]]]]]]]]]]]]]]]]" }},
}

// TestBoundedMemory feeds 100 MB streams through every parser and checks
// that the heap stays bounded (the limits keep 50000 cases of a few
// hundred bytes at most, so 64 MB is far above what a parser may hold).
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB streams")
	}
	const size = 100 << 20
	const bound = 64 << 20
	for _, s := range streams {
		t.Run(s.name, func(t *testing.T) {
			before := heap()
			p, err := New(s.format, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			_, _ = p.Write([]byte(s.head))
			g := &genReader{left: size, next: s.next}
			buf := make([]byte, 32<<10)
			var peak uint64
			for fed := 0; ; fed++ {
				n, err := g.Read(buf)
				_, _ = p.Write(buf[:n])
				if err != nil {
					break
				}
				if fed%640 == 0 { // every 20 MB
					peak = max(peak, heap())
				}
			}
			cases := p.Close()
			peak = max(peak, heap())
			if len(cases) == 0 {
				t.Fatal("no cases")
			}
			growth := int64(peak) - int64(before)
			t.Logf("%s: %d top-level cases, heap growth %.1f MB", s.name, len(cases), float64(growth)/(1<<20))
			if growth > bound {
				t.Fatalf("heap grew by %d MB on a 100 MB stream", growth>>20)
			}
			runtime.KeepAlive(cases)
		})
	}
}

// BenchmarkParse measures parsing throughput per format.
func BenchmarkParse(b *testing.B) {
	for _, s := range streams[:1] {
		b.Run(s.format, func(b *testing.B) { benchStream(b, s.format, s.head, s.next) })
	}
	b.Run("junit", func(b *testing.B) { benchStream(b, "junit", streams[4].head, streams[4].next) })
}

func benchStream(b *testing.B, format, head string, next func(int) string) {
	const size = 8 << 20
	b.SetBytes(size)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, _ := New(format, Limits{})
		_, _ = p.Write([]byte(head))
		_, _ = io.Copy(p, &genReader{left: size, next: next})
		p.Close()
	}
}

// The output kept over all cases of a stream is bounded (issue 22, item 1:
// 20,000 cases of 4 KiB each), failures having a budget of their own.
func TestTotalOutputBounded(t *testing.T) {
	for _, format := range []string{"ktap", "tap"} {
		var b strings.Builder
		b.WriteString("TAP version 13\n1..20001\n")
		diag := strings.Repeat("# "+strings.Repeat("o", 60)+"\n", 66)
		for i := 1; i <= 20000; i++ {
			if format == "ktap" {
				b.WriteString(diag)
				fmt.Fprintf(&b, "ok %d case_%d\n", i, i)
			} else {
				fmt.Fprintf(&b, "ok %d case_%d\n", i, i)
				b.WriteString(diag)
			}
		}
		b.WriteString(diag + "not ok 20001 the_failure\n" + diag)
		cases := parseString(t, format, b.String())
		total, failOut := 0, ""
		walk(cases, func(c *result.TestCase) {
			total += len(c.Output)
			if c.Name == "the_failure" {
				failOut = c.Output
			}
		})
		if total > 17<<20 || !strings.Contains(failOut, "oooo") {
			t.Errorf("%s: %d bytes of output kept; the failure's: %q", format, total, failOut[:min(len(failOut), 80)])
		}
		if v := Judge(cases, Policy{}); v.Pass != 20000 || v.Fail != 1 {
			t.Errorf("%s: verdict %+v", format, v)
		}
	}
}
