package flash

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progressEvery is the interval of plain progress lines (a variable for
// tests).
var progressEvery = 5 * time.Second

// progress reports on a Write in flight.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	// Through SyscallConn: Fd would change the caller's file to blocking.
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	tty := false
	rc.Control(func(fd uintptr) {
		_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		tty = err == nil
	})
	return tty
}

// fraction returns how far along the write is, and the bytes done and
// total in the unit the fraction is computed from; ok is false when no
// total is known.
func (j *job) fraction() (f float64, done, total int64, ok bool) {
	if size := j.knownSize.Load(); size > 0 {
		done, total = j.outPos.Load(), size
	} else if j.img.regular && j.img.size > 0 {
		done, total = j.inPos.Load(), j.img.size
	} else {
		return 0, j.outPos.Load(), 0, false
	}
	return min(1, float64(done)/float64(total)), done, total, true
}

func (j *job) startProgress() {
	if j.opts.Progress == nil {
		return
	}
	p := &progress{w: j.opts.Progress, tty: isTerminal(j.opts.Progress), start: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{})}
	j.prog = p
	every := progressEvery
	if p.tty {
		every = 200 * time.Millisecond
	}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				j.showProgress()
			}
		}
	}()
}

func (j *job) showProgress() {
	p := j.prog
	el := time.Since(p.start)
	f, _, _, ok := j.fraction()
	out := j.outPos.Load()
	rate := float64(out) / el.Seconds()
	var eta string
	if ok && f > 0.01 {
		eta = fmtDur(time.Duration(float64(el) * (1 - f) / f))
	}
	size := "?"
	if n := j.knownSize.Load(); n > 0 {
		size = fmtBytes(n)
	}
	written := fmtBytes(j.w.written.Load())
	if p.tty {
		bar := strings.Repeat(" ", 30)
		pct := "  ?%"
		if ok {
			n := int(f * 30)
			bar = strings.Repeat("#", n) + strings.Repeat(".", 30-n)
			pct = fmt.Sprintf("%3.0f%%", f*100)
		}
		if eta != "" {
			eta = "ETA " + eta
		}
		fmt.Fprintf(p.w, "\r\033[K%s [%s] %s/%s %s/s written %s %s", pct, bar, fmtBytes(out), size, fmtBytes(int64(rate)), written, eta)
		return
	}
	line := "flash: "
	if ok {
		line += fmt.Sprintf("%.0f%%, ", f*100)
	}
	line += fmt.Sprintf("%s of %s image, %s written, %s/s", fmtBytes(out), size, written, fmtBytes(int64(rate)))
	if eta != "" {
		line += ", ETA " + eta
	}
	fmt.Fprintln(p.w, line)
}

// progressDone stops progress and prints a summary line.
func (j *job) progressDone(err error) {
	p := j.prog
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	if err != nil {
		return
	}
	el := time.Since(p.start)
	fmt.Fprintf(p.w, "flash: wrote %s of a %s %s image to %s in %s (%s/s)\n",
		fmtBytes(j.w.written.Load()), fmtBytes(j.size), j.img.format, j.t.path, fmtDur(el), fmtBytes(int64(float64(j.size)/el.Seconds())))
}

func fmtBytes(n int64) string {
	const u = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	i := -1
	for v >= 1024 && i < len(u)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, u[i])
}

func fmtDur(d time.Duration) string {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
