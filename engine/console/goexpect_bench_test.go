package console

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	expect "github.com/google/goexpect"
)

// bootLog is n bytes of kernel-log lines, as a board prints before its
// login prompt.
func bootLog(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "[%5d.%06d] usb 1-1: new high-speed USB device number %d using xhci_hcd\r\n", i/1000, i%1000*997, i%128)
	}
	return []byte(b.String()[:n])
}

// board feeds log and a login prompt into a pipe in 4 KiB writes, as a
// UART adapter delivers it.
func board(log []byte) (io.ReadWriteCloser, func()) {
	pr, pw := io.Pipe()
	go func() {
		for p := log; len(p) > 0; {
			n := min(len(p), 4096)
			if _, err := pw.Write(p[:n]); err != nil {
				return
			}
			p = p[n:]
		}
		pw.Write([]byte("\r\nsim login: "))
	}()
	return rwc{pr, io.Discard, pr}, func() { pw.Close() }
}

type rwc struct {
	io.Reader
	io.Writer
	io.Closer
}

// BenchmarkLoginPrompt waits for a login prompt after a boot log of the
// given size, with this package's Session and with google/goexpect (the
// design card's package) on the same stream. Session scans only new text;
// goexpect matches its whole buffer again after every read.
func BenchmarkLoginPrompt(b *testing.B) {
	login := regexp.MustCompile(`login: $`)
	for _, size := range []int{256 << 10, 2 << 20} {
		log := bootLog(size)
		b.Run(fmt.Sprintf("session/%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				c, stop := board(log)
				s := New(c, Options{})
				if _, err := s.Expect(context.Background(), []*regexp.Regexp{login}, nil); err != nil {
					b.Fatal(err)
				}
				stop()
				s.Close()
			}
		})
		b.Run(fmt.Sprintf("goexpect/%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				c, stop := board(log)
				closed := make(chan struct{})
				e, _, err := expect.SpawnGeneric(&expect.GenOptions{
					In: c, Out: c,
					Wait:  func() error { <-closed; return nil },
					Close: func() error { close(closed); return c.Close() },
					Check: func() bool { return true },
				}, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := e.Expect(login, time.Minute); err != nil {
					b.Fatal(err)
				}
				stop()
				e.Close()
			}
		})
	}
}
