package report

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/result"
)

func TestJUnitAndJSON(t *testing.T) {
	dir := t.TempDir()
	res := &engine.Result{Plan: "p", Board: "b", Status: result.Failed, Start: time.Now(), Seconds: 2,
		Steps: []*engine.StepResult{
			{Index: "1", Name: "boot", Type: "group", Status: result.Failed, Error: "inner failed",
				Children: []*engine.StepResult{{Index: "1.1", Name: "login", Type: "wait-for-login", Status: result.Failed, Error: "refused\nmore", Class: "failure"}}},
			{Index: "2", Name: "later", Type: "run", Status: result.Skipped},
			{Index: "3", Name: "flaky", Type: "run", Status: result.Failed, Ignored: true, Error: "ignored"},
		},
		Finally: []*engine.StepResult{{Index: "f.1", Name: "off", Type: "power", Status: result.Error, Error: "relay"}},
	}
	if err := WriteJUnit(filepath.Join(dir, "junit.xml"), res); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests != 5 || doc.Failures != 2 || doc.Errors != 1 || doc.Skipped != 1 {
		t.Fatalf("counts: %+v\n%s", doc, b)
	}
	if doc.Suites[0].Cases[1].Name != "1.1 login" || doc.Suites[0].Cases[4].Name != "finally f.1 off" {
		t.Fatalf("names: %+v", doc.Suites[0].Cases)
	}
	if err := WriteJSON(filepath.Join(dir, "report.json"), res); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	b, _ = os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(b, &back); err != nil || back["status"] != "failed" {
		t.Fatalf("report.json: %v %v", err, back["status"])
	}
}

// Test cases a step reported become test suites of their own, named after
// the step and nested suites; allowed failures and expected failures are
// skipped with the reason, and the document's totals include them.
func TestJUnitTestCases(t *testing.T) {
	dir := t.TempDir()
	res := &engine.Result{Plan: "p", Board: "b", Status: result.Passed, Start: time.Now(),
		Steps: []*engine.StepResult{{Index: "1", Name: "kselftest", Type: "run", Status: result.Passed,
			Tests: []*result.TestCase{
				{Name: "timers", Status: result.Failed, Children: []*result.TestCase{
					{Suite: "timers", Name: "posix", Status: result.Passed, Seconds: 0.5, Output: "# itimer ok"},
					{Suite: "timers", Name: "rtc", Status: result.Failed, Allowed: true, Message: "no rtc"},
					{Suite: "timers", Name: "tz", Status: "xfail", Message: "tz unsupported"},
				}},
				{Name: "net", Status: "error", Message: "suite setup failed", Children: []*result.TestCase{
					{Suite: "net", Name: "ping", Status: result.Skipped, Message: "no cable"},
				}},
				{Name: "cut", Status: "error", Message: "the plan 1..3 announced 3 results but 1 came"},
			}}}}
	if err := WriteJUnit(filepath.Join(dir, "junit.xml"), res); err != nil {
		t.Fatal(err)
	}
	type problem struct {
		Message string `xml:"message,attr"`
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Tests int    `xml:"tests,attr"`
			Cases []struct {
				Name      string   `xml:"name,attr"`
				Classname string   `xml:"classname,attr"`
				Failure   *problem `xml:"failure"`
				Error     *problem `xml:"error"`
				Skipped   *problem `xml:"skipped"`
				Out       string   `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	// 1 step + net (failed on its own) + cut + posix, rtc, tz + ping
	if doc.Tests != 7 || doc.Failures != 0 || doc.Errors != 2 || doc.Skipped != 3 {
		t.Fatalf("totals: %+v\n%s", doc, b)
	}
	var names []string
	for _, s := range doc.Suites {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, "|"); got != "p|p / 1 kselftest|p / 1 kselftest / timers|p / 1 kselftest / net" {
		t.Fatalf("suites: %s", got)
	}
	timers := doc.Suites[2].Cases
	if timers[0].Name != "posix" || timers[0].Classname != "p / 1 kselftest / timers" || timers[0].Out != "# itimer ok" ||
		timers[1].Skipped == nil || timers[1].Skipped.Message != "allowed failure (failed): no rtc" ||
		timers[2].Skipped == nil || timers[2].Skipped.Message != "expected failure: tz unsupported" {
		t.Fatalf("timers: %+v", timers)
	}
	if top := doc.Suites[1].Cases; len(top) != 2 || top[0].Name != "net" || top[0].Error == nil || top[1].Name != "cut" {
		t.Fatalf("step suite: %+v", top)
	}
}
