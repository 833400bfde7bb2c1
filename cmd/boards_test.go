package cmd

import (
	"encoding/json"
	"strings"
	"testing"
)

// boards list --check opens a free board's drivers and reports its power
// state and whether its console answers; a board that is off is silent.
func TestBoardsListCheck(t *testing.T) {
	e := newEnv(t)
	r := e.run("boards", "list", "--check", "--boards", e.boards, "--lock-dir", e.locks, "--state-dir", e.state, "-o", "json")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	var rows []struct {
		Name, Check string
		Locked      bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("json: %v\n%s", err, r)
	}
	if !strings.Contains(rows[0].Check, "power off") || !strings.Contains(rows[0].Check, "console silent") {
		t.Fatalf("check of an idle sim board: %q", rows[0].Check)
	}
}
