package report

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jsplan/jsplan/engine"
)

func TestJUnitAndJSON(t *testing.T) {
	dir := t.TempDir()
	res := &engine.Result{Plan: "p", Board: "b", Status: engine.StatusFailed, Start: time.Now(), Seconds: 2,
		Steps: []*engine.StepResult{
			{Index: "1", Name: "boot", Type: "group", Status: engine.StatusFailed, Error: "inner failed",
				Children: []*engine.StepResult{{Index: "1.1", Name: "login", Type: "wait-for-login", Status: engine.StatusFailed, Error: "refused\nmore", Class: "failure"}}},
			{Index: "2", Name: "later", Type: "run", Status: engine.StatusSkipped},
			{Index: "3", Name: "flaky", Type: "run", Status: engine.StatusFailed, Ignored: true, Error: "ignored"},
		},
		Finally: []*engine.StepResult{{Index: "f.1", Name: "off", Type: "power", Status: engine.StatusError, Error: "relay"}},
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
