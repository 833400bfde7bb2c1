package engine_test

import (
	"strings"
	"testing"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

const boardsHead = "apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n  - name: b1\n    drivers:\n"

// loadBoards loads an inventory held in memory and returns the loader.
func loadBoards(t *testing.T, src string) (*engine.Loader, *engine.Inventory) {
	t.Helper()
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	inv := &engine.Inventory{}
	l.LoadBoardsBytes("boards.yaml", []byte(src), inv)
	return l, inv
}

// TestDriverErrorsAtTheirKeys checks that a driver's own validation (beyond
// the schema) reports each error at the key it is about, with its path.
func TestDriverErrorsAtTheirKeys(t *testing.T) {
	cases := []struct {
		name, drivers string
		want          []string // "line:col path" of each diagnostic, sorted
		summary       string
	}{
		{
			name:    "too short a timeout",
			drivers: "      command:\n        on: [echo, on]\n        off: [echo, off]\n        timeout: 0.5ms\n",
			want:    []string{"9:18 boards[0].drivers.command.timeout"},
			summary: "timeout: 500µs is too short",
		},
		{
			name:    "key of a map",
			drivers: "      dutlink:\n        serial-number: abc\n        firmware-config:\n          power_on: p1,bL,w5,bZ,p1,bL,w5,bZ,p1,bL,w5,bZ\n",
			want:    []string{"9:21 boards[0].drivers.dutlink.firmware-config.power_on"},
			summary: "the firmware keeps 32",
		},
		{
			name:    "a value's own decoding error",
			drivers: "      command:\n        on: [\"\", x]\n        off: [echo, off]\n",
			want:    []string{"7:13 boards[0].drivers.command"},
			summary: "needs at least the program name",
		},
		{
			name:    "nested key",
			drivers: "      sim:\n        ssh: {host: 10.1.2.3, port: 22}\n",
			want:    []string{"7:21 boards[0].drivers.sim.ssh.host"},
			summary: "not a loopback address",
		},
		{
			name:    "several errors of one driver",
			drivers: "      qemu:\n        memory: 4\n        accel: fast\n",
			want:    []string{"7:17 boards[0].drivers.qemu.memory", "8:16 boards[0].drivers.qemu.accel"},
		},
		{
			name:    "an error about the whole block",
			drivers: "      dutlink:\n        disk: /dev/sdz\n",
			want:    []string{"7:9 boards[0].drivers.dutlink"},
			summary: "serial-number or port",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, inv := loadBoards(t, boardsHead+tc.drivers)
			ds := l.Diagnostics().Sort()
			var got []string
			for _, d := range ds {
				got = append(got, strings.TrimPrefix(d.Subject.String(), "boards.yaml:")+" "+d.Path)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("diagnostics at\n%s\nwant\n%s\n%v", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), ds)
			}
			if tc.summary != "" && !strings.Contains(ds[0].Summary, tc.summary) {
				t.Errorf("summary %q does not contain %q", ds[0].Summary, tc.summary)
			}
			if len(inv.Boards) != 0 {
				t.Errorf("the invalid board was kept")
			}
		})
	}
}

// TestKeyNameErrorsNameTheKey checks that a key that is not a valid name is
// reported by its own text, at the key, with the rule of that map.
func TestKeyNameErrorsNameTheKey(t *testing.T) {
	t.Run("params", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"plan.yaml": head + "params:\n  \"bad name\": {type: string}\nsteps:\n  - log: hi\n"})
		l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
		l.LoadPlan(dir + "/plan.yaml")
		ds := l.Diagnostics()
		if len(ds) != 1 {
			t.Fatalf("want 1 diagnostic, got %v", ds)
		}
		d := ds[0]
		if !strings.HasSuffix(d.Subject.String(), "plan.yaml:5:3") || !strings.Contains(d.Summary, `"bad name" is not a valid name`) ||
			!strings.Contains(d.Summary, "digits, _ or -") {
			t.Errorf("got %s: %s", d.Subject, d.Summary)
		}
	})
	t.Run("env", func(t *testing.T) {
		l, _ := loadBoards(t, boardsHead+"      command: {on: [echo, on], off: [echo, off], env: {\"A=B\": x}}\n")
		ds := l.Diagnostics()
		if len(ds) != 1 {
			t.Fatalf("want 1 diagnostic, got %v", ds)
		}
		d := ds[0]
		if d.Subject.String() != "boards.yaml:6:57" || !strings.Contains(d.Summary, `"A=B" is not a valid name`) ||
			strings.Contains(d.Summary, " or -") || !strings.Contains(d.Summary, "digits or _") {
			t.Errorf("got %s: %s", d.Subject, d.Summary)
		}
	})
}

// TestInvalidBoardDoesNotCascade checks that a plan selecting a board that
// was dropped for its own error gets that error only.
func TestInvalidBoardDoesNotCascade(t *testing.T) {
	for name, drv := range map[string]string{
		"driver validation": "      command: {on: [echo, on], off: [echo, off], timeout: 0.5ms}\n",
		"schema":            "      command: {on: [echo, on], off: [echo, off], timout: 1s}\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"plan.yaml": head + "board: {name: b1}\nsteps:\n  - power: on\n"})
			l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
			p := l.LoadPlan(dir + "/plan.yaml")
			if p == nil {
				t.Fatal(l.Diagnostics())
			}
			inv := &engine.Inventory{}
			l.LoadBoardsBytes("boards.yaml", []byte(boardsHead+drv), inv)
			if able := l.CheckBoard(p, inv, engine.BoardSelector{}); len(able) != 0 {
				t.Fatalf("the invalid board was selected")
			}
			ds := l.Diagnostics()
			if len(ds) != 1 || !strings.HasPrefix(ds[0].Subject.String(), "boards.yaml:6:") {
				t.Fatalf("want the board's error only, got %v", ds)
			}
		})
	}
}

// TestRetryWarning checks the Warning severity: retries that cannot all run
// within the plan's timeout are reported once, without failing validation.
func TestRetryWarning(t *testing.T) {
	dir := writeFiles(t, map[string]string{"plan.yaml": head +
		"timeout: 1m\nsteps:\n  - log: a\n    timeout: 20s\n    retry: {attempts: 3, delay: 5s}\n  - log: b\n    timeout: 10s\n    retry: {attempts: 3}\n"})
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	if p := l.LoadPlan(dir + "/plan.yaml"); p == nil {
		t.Fatal(l.Diagnostics())
	}
	ds := l.Diagnostics()
	if ds.HasErrors() || len(ds) != 1 {
		t.Fatalf("want one warning, got %v", ds)
	}
	d := ds[0]
	if d.Severity != diag.Warning || d.Path != "steps[0].retry" || !strings.HasSuffix(d.Subject.String(), "plan.yaml:6:5") ||
		!strings.Contains(d.Error(), "3 attempts of up to 20s each can take 1m10s") {
		t.Errorf("got %s %s at %s: %s", d.Severity, d.Path, d.Subject, d.Error())
	}
}
