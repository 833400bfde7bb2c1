package diag

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteTextCaretWithoutColor(t *testing.T) {
	src := Sources{"p.yaml": []byte("steps:\n  - power: on\n    timout: 3s\n")}
	d := Errorf(Range{Filename: "p.yaml", Start: Pos{3, 5}, End: Pos{3, 11}}, "steps[0].timout", "unknown key %q", "timout").
		WithDetail("did you mean %q?", "timeout")
	var b bytes.Buffer
	WriteText(&b, Diagnostics{d}, src)
	want := "p.yaml:3:5: error: unknown key \"timout\" (at steps[0].timout)\n" +
		" 3 |     timout: 3s\n" +
		"   |     ^~~~~~\n" +
		"  did you mean \"timeout\"?\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestSortDedupAndClass(t *testing.T) {
	a := Errorf(Range{Filename: "b.yaml", Start: Pos{1, 1}}, "", "x")
	b := Errorf(Range{Filename: "a.yaml", Start: Pos{9, 1}}, "", "y")
	c := Errorf(Range{Filename: "a.yaml", Start: Pos{2, 3}}, "", "z")
	ds := Diagnostics{a, b, c, Errorf(c.Subject, "", "z")}.Sort()
	var got []string
	for _, d := range ds {
		got = append(got, d.Subject.String())
	}
	if strings.Join(got, " ") != "a.yaml:2:3 a.yaml:9:1 b.yaml:1:1" {
		t.Fatalf("order/dedup: %v", got)
	}
	if ds.Class().ExitCode() != 2 {
		t.Fatalf("invalid plan must exit 2")
	}
	if ClassOf(Failf("x")) != Failure || ClassOf(Infraf("x")) != Infra || Failure.ExitCode() != 1 || Infra.ExitCode() != 3 {
		t.Fatal("classes and exit codes")
	}
	if Summary(ds) != "3 errors" {
		t.Fatalf("summary %q", Summary(ds))
	}
}
