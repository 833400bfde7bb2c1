package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jsplan/jsplan/engine"
)

// The watcher filters what the board prints as jsplan console does: an OSC
// 52 clipboard write never reaches the watcher's terminal.
func TestConsoleWatchFiltersEscapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pf := e.write("p.yaml", plan("watched",
		"  - name: ticks\n    run: for i in 1 2 3 4 5 6; do printf 'tick-%s \\033]52;c;Zm9v\\007\\n' $i; sleep 0.5; done\n", powerOff))
	run := e.start(e.applyArgs(pf, e.art)...)
	run.waitRun("ticks")
	w := e.start("console", "--watch", "sim-1", "--boards", e.boards, "--lock-dir", e.locks)
	w.waitLine("a tick from the watched run", func(l string) bool { return strings.Contains(l, "tick-") })
	if code := run.wait(); code != 0 {
		t.Fatalf("the watched run: exit %d\n%s", code, run.stdout())
	}
	if code := w.wait(); code != 0 {
		t.Errorf("the watcher: exit %d\n%s", code, w.stderrText())
	}
	if out := w.stdout(); !strings.Contains(out, "tick-6") || strings.Contains(out, "\x1b]52") {
		t.Errorf("the watcher showed an OSC 52 string or missed the end:\n%q", out)
	}
}

// A published link is followed to a regular file only.
func TestOpenPublishedRefusesAFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	link := filepath.Join(dir, "b.lock.console")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	if f, err := openPublished(link, filepath.Join(dir, "b.lock"), fifo); err == nil {
		f.Close()
		t.Fatal("a FIFO was opened")
	}
	reg := filepath.Join(dir, "console.log")
	if err := os.WriteFile(reg, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openPublished(link, filepath.Join(dir, "b.lock"), reg)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// apply --console shows a board's line without its escape sequences, and
// what control characters remain (C1, invalid UTF-8) escaped.
func TestHumanViewConsoleLineIsText(t *testing.T) {
	var b strings.Builder
	v := &humanView{w: &b, console: true}
	v.Event(engine.Event{Type: "console", Step: "1", Message: "a\x1b[31mred\x1b[0m \x1b]52;c;Zm9v\x07b\u009b2Jc\xff"})
	got := b.String()
	if strings.ContainsAny(got, "\x1b\x07\u009b") || !strings.Contains(got, "ared b") || strings.Contains(got, "52;c") {
		t.Errorf("console line shown as %q", got)
	}
}
