package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/qemu"
)

// BenchmarkQEMUPlanOverhead measures jsplan's overhead on a real QEMU board.
// Each iteration does the same work twice on the same image: directly
// through the qemu driver (copy the image onto the disk, power on, log in on
// the console, power off) and as `jsplan apply` of a plan that uses
// plans/lib/flash-and-boot.yaml and powers off. It reports both times and
// their difference, jsplan's cost per run (process start, plan loading,
// board lock, console log, reports, the pause before the password).
//
//	go test -run '^$' -bench QEMUPlanOverhead -benchtime 3x ./cmd
func BenchmarkQEMUPlanOverhead(b *testing.B) {
	e2eNeedTool(b, "qemu-system-x86_64", "qemu-system-x86")
	dir := b.TempDir()
	image, _ := e2eBuildImage(b, filepath.Join(dir, "image"))
	lib, err := filepath.Abs("../plans/lib/flash-and-boot.yaml")
	if err != nil {
		b.Fatal(err)
	}
	plan := filepath.Join(dir, "boot.yaml")
	boards := filepath.Join(dir, "boards.yaml")
	files := map[string]string{
		plan: fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Plan
name: boot
params:
  image: {type: path, required: true}
steps:
  - use:
      plan: %s
      with: {image: "${{ params.image }}", password: %s, boot-timeout: 5m}
finally:
  - power: off
`, lib, e2ePassword),
		boards: "apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n  - name: qemu-1\n    drivers:\n      qemu: {}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}

	var bare, plans time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run := filepath.Join(dir, fmt.Sprint("run", i))
		// Alternate the order so a change of the machine's load hits both.
		for j := 0; j < 2; j++ {
			if (i+j)%2 == 0 {
				d := benchBareBoot(b, image, filepath.Join(run, "bare"))
				b.Logf("driver: %v", d.Round(10*time.Millisecond))
				bare += d
				continue
			}
			start := time.Now()
			cmd := exec.Command(os.Args[0], "apply", plan, "--boards", boards, "--board", "qemu-1", "--set", "image="+image,
				"--artifacts", filepath.Join(run, "artifacts"), "--state-dir", filepath.Join(run, "state"), "--lock-dir", filepath.Join(run, "locks"))
			cmd.Env = append(os.Environ(), e2eMainEnv+"=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("jsplan apply: %v\n%s", err, out)
			}
			b.Logf("jsplan: %v", time.Since(start).Round(10*time.Millisecond))
			plans += time.Since(start)
		}
	}
	n := float64(b.N)
	b.ReportMetric(bare.Seconds()/n, "driver-s/op")
	b.ReportMetric(plans.Seconds()/n, "jsplan-s/op")
	b.ReportMetric((plans-bare).Seconds()/n, "overhead-s/op")
}

// benchBareBoot flashes, boots, logs in and powers off through the qemu
// driver alone, and returns how long that took.
func benchBareBoot(b *testing.B, image, state string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	d := &qemu.Device{}
	if err := d.Open(ctx, drivers.Env{Board: "bare", StateDir: state}); err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	disk, err := d.AttachHost(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := benchCopy(image, disk); err != nil {
		b.Fatal(err)
	}
	if err := d.AttachBoard(ctx); err != nil {
		b.Fatal(err)
	}
	rw, err := d.OpenConsole(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer rw.Close()
	con := &benchConsole{rw: rw}
	go con.pump()
	if err := d.On(ctx); err != nil {
		b.Fatal(err)
	}
	con.expect(b, "login:")
	io.WriteString(rw, "root\n")
	con.expect(b, "Password:")
	io.WriteString(rw, e2ePassword+"\n")
	con.expect(b, "root@qemu:~# ")
	if err := d.Off(ctx); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func benchCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// benchConsole collects what the console prints.
type benchConsole struct {
	rw   io.ReadWriteCloser
	mu   sync.Mutex
	buf  bytes.Buffer
	seen int // bytes already matched
}

func (c *benchConsole) pump() {
	p := make([]byte, 4096)
	for {
		n, err := c.rw.Read(p)
		c.mu.Lock()
		c.buf.Write(p[:n])
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// expect waits for s after what was matched before.
func (c *benchConsole) expect(b *testing.B, s string) {
	b.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		i := bytes.Index(c.buf.Bytes()[c.seen:], []byte(s))
		if i >= 0 {
			c.seen += i + len(s)
		}
		c.mu.Unlock()
		if i >= 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b.Fatalf("no %q on the console:\n%s", s, c.buf.Bytes()[c.seen:])
}
