package remote

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/internal/flash"
)

// The speed goals of the agent, as benchmarks that print ratios (never
// timed tests); TestBenchmarksTiny runs each once on a tiny input so that
// make test keeps them working.
//
//	go test ./drivers/remote -run '^$' -bench . -benchtime 1x

// BenchmarkFlashThroughAgent: flashing through an agent on loopback runs
// at >= 0.9x flash.Write (what `jsplan flash` runs) here, same image and
// target file system: a 512 MiB sparse image, 10% data, zstd with a bmap.
// Each iteration takes the best of 3 flashes each way; the metrics are the
// median, min and max of the iterations' ratios (a shared machine's load
// moves single figures a lot: give -benchtime 5x or more).
func BenchmarkFlashThroughAgent(b *testing.B) {
	var ratios []float64
	for range b.N {
		local, remote := flashBench(b, 512<<20, 3)
		ratios = append(ratios, local.Seconds()/remote.Seconds())
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "x-local-median")
	b.ReportMetric(ratios[0], "x-local-min")
	b.ReportMetric(ratios[len(ratios)-1], "x-local-max")
}

// BenchmarkConsoleEcho: a key sent to a board's console through the agent
// and its echo seen, < 2 ms on loopback.
func BenchmarkConsoleEcho(b *testing.B) {
	for range b.N {
		med, p99, local := echoBench(b, 500)
		b.ReportMetric(float64(med.Microseconds()), "us-median")
		b.ReportMetric(float64(p99.Microseconds()), "us-p99")
		b.ReportMetric(float64(local.Microseconds()), "us-local-median")
	}
}

// BenchmarkConsoleStreams: 100 console streams on one agent (100 boards,
// each printing 20,000 numbered lines at once) lose nothing.
func BenchmarkConsoleStreams(b *testing.B) {
	for range b.N {
		d := streamsBench(b, 100, 20000)
		b.ReportMetric(d.Seconds(), "s")
	}
}

func TestBenchmarksTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("boots boards and flashes images")
	}
	t.Run("flash", func(t *testing.T) { flashBench(t, 8<<20, 1) })
	t.Run("echo", func(t *testing.T) { echoBench(t, 20) })
	t.Run("streams", func(t *testing.T) { streamsBench(t, 3, 500) })
}

// sparseImage writes a sparse image of size bytes, a tenth of it data in
// extents of 4 KiB to 4 MiB, compressed with zstd, with a bmap when
// bmaptool is there.
func sparseImage(tb testing.TB, dir string, size int64) (zst string) {
	tb.Helper()
	for _, tool := range []string{"zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("no %s here (internal/deps/deps.sh install)", tool)
		}
	}
	raw := filepath.Join(dir, "sparse.img")
	f, err := os.Create(raw)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	f.Truncate(size)
	var data int64
	for data < size/10 {
		n := int64(4<<10) << r.Intn(11)
		off := r.Int63n(size-n) &^ 4095
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(r.Intn(16)) // compressible, as code is
		}
		f.WriteAt(buf, off)
		data += n
	}
	f.Close()
	if _, err := exec.LookPath("bmaptool"); err == nil {
		if out, err := exec.Command("bmaptool", "create", "-o", raw+".bmap", raw).CombinedOutput(); err != nil {
			tb.Fatalf("bmaptool: %v %s", err, out)
		}
		os.Rename(raw+".bmap", raw+".zst.bmap")
	}
	if out, err := exec.Command("zstd", "-q", "-T0", "-f", raw, "-o", raw+".zst").CombinedOutput(); err != nil {
		tb.Fatalf("zstd: %v %s", err, out)
	}
	os.Remove(raw)
	return raw + ".zst"
}

// flashBench flashes one image locally and through an agent, alternating
// (and which goes first), and returns the best time of each.
func flashBench(tb testing.TB, size int64, runs int) (local, remote time.Duration) {
	a := startAgent(tb, twoBoards, func(o *Options) { o.TTL = 30 * time.Second })
	d := a.open(tb, "sim-1", nil)
	img := sparseImage(tb, a.dir, size)
	target := filepath.Join(a.state, "local-target.img")
	ctx := context.Background()
	local, remote = time.Hour, time.Hour
	var res flash.Result
	for i := range runs {
		var lr flash.Result
		here := func() {
			start := time.Now()
			var err error
			if lr, err = flash.Write(ctx, target, flash.Options{Image: img}); err != nil {
				tb.Fatal(err)
			}
			local = min(local, time.Since(start))
		}
		there := func() {
			start := time.Now()
			var err error
			if res, err = d.WriteImage(ctx, flash.Options{Image: img}); err != nil {
				tb.Fatal(err)
			}
			remote = min(remote, time.Since(start))
		}
		if i%2 == 0 {
			here()
			there()
		} else {
			there()
			here()
		}
		if res.ImageSize != lr.ImageSize || res.BytesWritten != lr.BytesWritten || res.UsedBmap == "" != (lr.UsedBmap == "") {
			tb.Fatalf("through the agent %+v, here %+v", res, lr)
		}
	}
	fi, _ := os.Stat(img)
	fmt.Printf("flash %d MiB zstd image (%d MiB compressed, bmap %v): here %s, through the agent %s: %.2fx (goal >= 0.9x); decoder %s\n",
		size>>20, fi.Size()>>20, res.UsedBmap != "", local.Round(time.Millisecond), remote.Round(time.Millisecond), local.Seconds()/remote.Seconds(), res.Decoder)
	return local, remote
}

// echoBench logs in on sim-1 through the agent and times n keys from the
// write to the echo; and, for comparison, on a board opened here.
func echoBench(tb testing.TB, n int) (median, p99, localMedian time.Duration) {
	a := startAgent(tb, twoBoards, func(o *Options) { o.TTL = 30 * time.Second })
	d := a.open(tb, "sim-1", nil)
	ctx := context.Background()
	rw, err := d.OpenConsole(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := d.On(ctx); err != nil {
		tb.Fatal(err)
	}
	times := keyEcho(tb, rw, n)
	median, p99 = times[len(times)/2], times[len(times)*99/100]

	// the same board opened in this process: the floor
	inv := loadInventory(tb, twoBoards)
	b, err := engine.OpenBoard(ctx, inv.Lookup("sim-2"), drivers.Env{Board: "sim-2", StateDir: tb.TempDir(), Secret: func(string) {}})
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Close()
	cd, _ := b.ConsoleDevice()
	lrw, err := cd.OpenConsole(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	p, _ := b.Power()
	p.On(ctx)
	lt := keyEcho(tb, lrw, n)
	localMedian = lt[len(lt)/2]
	fmt.Printf("console key to echo through the agent: median %s, p99 %s (goal < 2ms); on a board here: median %s\n",
		median.Round(time.Microsecond), p99.Round(time.Microsecond), localMedian.Round(time.Microsecond))
	return median, p99, localMedian
}

// keyEcho logs in on a console and times n single keys to their echo,
// sorted.
func keyEcho(tb testing.TB, rw interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
	Close() error
}, n int) []time.Duration {
	c := newCon(tb, rw)
	c.login()
	var times []time.Duration
	for i := range n {
		k := string(rune('a' + i%26))
		start := time.Now()
		c.send(k)
		c.waitFor(k)
		times = append(times, time.Since(start))
		if i%60 == 59 { // keep the line short
			c.send("\x15")
		}
	}
	slices.Sort(times)
	return times
}

// streamsBench leases boards sim-1..sim-N of one agent, each printing
// lines numbered lines at once, and checks every line arrived in order.
func streamsBench(tb testing.TB, boards, lines int) time.Duration {
	var inv strings.Builder
	inv.WriteString("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n")
	for i := 1; i <= boards; i++ {
		fmt.Fprintf(&inv, "  - name: sim-%d\n    drivers:\n      sim: {password: sim-password, boot-delay: 5ms}\n", i)
	}
	a := startAgent(tb, inv.String(), func(o *Options) { o.TTL = time.Minute })
	ctx := context.Background()
	cons := make([]*con, boards)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for i := range boards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := a.tryOpen(fmt.Sprintf("sim-%d", i+1), nil)
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return
			}
			tb.Cleanup(func() { d.Close() })
			rw, err := d.OpenConsole(ctx)
			if err == nil {
				err = d.On(ctx)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return
			}
			cons[i] = newCon(tb, rw)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		tb.Fatal(strings.Join(errs, "\n"))
	}
	for _, c := range cons {
		c.login()
	}
	start := time.Now()
	for _, c := range cons {
		c.send(fmt.Sprintf("seq 1 %d; echo END-OF-SEQ\n", lines))
	}
	want := &bytes.Buffer{}
	for i := 1; i <= lines; i++ {
		want.WriteString(strconv.Itoa(i) + "\r\n")
	}
	for i, c := range cons {
		c.waitFor("seq 1 " + strconv.Itoa(lines) + "; echo END-OF-SEQ\r\n")
		got := c.waitFor("END-OF-SEQ\r\n")
		got = strings.TrimSuffix(got, "END-OF-SEQ\r\n")
		if got != want.String() {
			tb.Fatalf("board %d: %d of %d bytes arrived, or out of order", i+1, len(got), want.Len())
		}
	}
	d := time.Since(start)
	fmt.Printf("%d console streams on one agent, %d lines each (%d KiB): all arrived, in order, in %s\n",
		boards, lines, want.Len()>>10, d.Round(time.Millisecond))
	return d
}
