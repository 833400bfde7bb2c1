package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// README's pattern, a console step that sends Ctrl-C and expects the
// prompt between two run steps, on the QEMU board (a real kernel, a real
// UART, a real BusyBox shell, under TCG): the expect matches the prompt
// printed after the Ctrl-C, so the next command is never wiped out and never
// waits for its timeout (TestConsoleExpectAfterSend does it on the virtual
// board). JSPLAN_QEMU_EXPECT_N sets the repetitions (default 300).
func TestQEMUConsoleExpectAfterSend(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU: skipped under -short")
	}
	e2eNeedTool(t, "qemu-system-x86_64", "qemu-system-x86")
	n := 300
	if v, err := strconv.Atoi(os.Getenv("JSPLAN_QEMU_EXPECT_N")); err == nil && v > 0 {
		n = v
	}
	dir := t.TempDir()
	image, _ := e2eBuildImage(t, filepath.Join(dir, "image"))
	e := &e2e{dir: dir, image: image, boards: filepath.Join(dir, "boards.yaml")}
	if err := os.WriteFile(e.boards, []byte("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n  - name: qemu-1\n    drivers:\n      qemu: {memory: 256}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("apiVersion: jsplan.dev/v1\nkind: Plan\nname: expect-after-send\nparams:\n  image: {type: path}\n  image-id: {type: string, default: \"\"}\n")
	b.WriteString("steps:\n  - flash: \"${{ params.image }}\"\n  - power: on\n  - {wait-for-login: {username: root, password: " + e2ePassword + "}, timeout: 5m}\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {run: uname -a, timeout: 60s}\n")
		fmt.Fprintf(&b, "  - {console: {send: \"<CTRL-C>\", expect: [\"# $\", \"login:\"]}, timeout: 60s}\n")
		fmt.Fprintf(&b, "  - {run: {command: \"echo after-%d\", expect-output: \"^after-%d$\"}, timeout: 60s}\n", i, i)
	}
	b.WriteString("finally:\n  - power: off\n")
	plan := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(plan, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.apply(t, plan, "qemu-1")
	if r.code != 0 {
		t.Fatalf("%d repetitions on QEMU: %s", n, r.output())
	}
	t.Logf("%d repetitions in %v", n, r.wall)
}
