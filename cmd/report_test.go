package cmd

import (
	"encoding/json"
	"html"
	"html/template"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readPage reads report.html from an artifacts directory and checks that
// it shows the verdict.
func readPage(t *testing.T, art, status string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(art, "report.html"))
	if err != nil {
		t.Fatalf("report.html: %v", err)
	}
	page := string(b)
	if !strings.Contains(page, `<div class="verdict" id="verdict">`+status+`</div>`) {
		t.Errorf("report.html does not show the verdict %s", status)
	}
	return page
}

// The demo plan with its secret password: the page, from apply and from
// `jsplan report`, holds neither the password nor any escaped form of it.
func TestReportHoldsNoSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const secret = `zq9Pw&<"x>\%'y`
	boards := e.write("secret-boards.yaml", `apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: sim-1
    labels: {kind: virtual}
    vars: {image-id-file: etc/image-id}
    drivers:
      sim: {password: "zq9Pw&<\"x>\\%'y", boot-delay: 5ms}
`)
	img := e.write("demo.img", "filler\nJSPLAN_IMAGE_ID=demo-77\n")
	planFile, _ := filepath.Abs("../plans/examples/virtual-smoke.yaml")
	for _, c := range []struct {
		name, id string
		code     int
	}{{"passing", "demo-77", 0}, {"failing", "other", 1}} {
		art := filepath.Join(e.dir, c.name)
		r := e.run(e.applyArgs(planFile, art, "--boards", boards, "--set", "image="+img, "--set", "image-id="+c.id,
			"--set", "password="+secret)...)
		if r.code != c.code {
			t.Fatalf("%s: want exit %d, got %s", c.name, c.code, r)
		}
		applied := readPage(t, art, map[int]string{0: "passed", 1: "failed"}[c.code])
		if !strings.Contains(applied, "password=***") {
			t.Errorf("%s: the command line in the page is not masked", c.name)
		}
		if rr := e.run("report", art, "--out", filepath.Join(art, "rebuilt.html")); rr.code != 0 {
			t.Fatalf("report: %s", rr)
		}
		rebuilt, _ := os.ReadFile(filepath.Join(art, "rebuilt.html"))
		js, _ := json.Marshal(secret)
		forms := []string{secret, "zq9Pw", html.EscapeString(secret), template.HTMLEscapeString(secret),
			template.JSEscapeString(secret), string(js), url.QueryEscape(secret), url.PathEscape(secret)}
		for name, page := range map[string]string{"report.html": applied, "rebuilt.html": string(rebuilt)} {
			for _, f := range forms {
				if strings.Contains(page, f) {
					t.Errorf("%s/%s holds the secret as %q", c.name, name, f)
				}
			}
		}
	}
}

func TestReportCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("ok.yaml", plan("ok", "  - name: hello\n    run: echo hello from the board\n", powerOff))
	if r := e.run(e.applyArgs(pf, e.art)...); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	before := readPage(t, e.art, "passed")
	if !strings.Contains(before, "hello from the board") {
		t.Errorf("the console is not in the page")
	}
	if err := os.Remove(filepath.Join(e.art, "report.html")); err != nil {
		t.Fatal(err)
	}
	r := e.run("report", e.art)
	if r.code != 0 || strings.TrimSpace(r.stdout) != filepath.Join(e.art, "report.html") {
		t.Fatalf("report: %s", r)
	}
	after := readPage(t, e.art, "passed")
	if !strings.Contains(after, "hello from the board") || !strings.Contains(after, `href="#con-3"`) {
		t.Errorf("the rebuilt page lacks the console or the steps")
	}

	// Trends of two runs, into the current directory by default.
	second := filepath.Join(e.dir, "second")
	if r := e.run(e.applyArgs(pf, second)...); r.code != 0 {
		t.Fatalf("apply: %s", r)
	}
	out := filepath.Join(e.dir, "trends.html")
	if r := e.run("report", "--history", "--out", out, e.art, second); r.code != 0 || !strings.Contains(r.stdout, "2 runs") {
		t.Fatalf("report --history: %s", r)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), `<svg class="plot"`) {
		t.Errorf("no plot in the trends page")
	}

	// Usage errors.
	for _, args := range [][]string{{"report"}, {"report", e.dir}, {"report", "--history"}, {"report", "--history", e.dir + "/none"}} {
		if r := e.run(args...); r.code != 2 {
			t.Errorf("%v: want exit 2, got %s", args, r)
		}
	}
}
