// Package devpath waits for device nodes (a /dev/disk/by-id link, a
// /dev/serial/by-id link) to appear or go away, by polling with a short
// interval instead of fixed sleeps, and lists by-id directories.
package devpath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Interval is the polling interval.
const Interval = 50 * time.Millisecond

// ErrTimeout is wrapped by the errors of WaitOpenable and WaitGone when
// their time runs out.
var ErrTimeout = errors.New("timed out")

// WaitOpenable polls until path exists and can be opened for reading, and
// returns nil then. It gives up when timeout passes or ctx ends, with an
// error that says what was last seen.
func WaitOpenable(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err == nil {
			f.Close()
			return nil
		}
		last := err
		if errors.Is(err, os.ErrNotExist) {
			last = errors.New("does not exist")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not become ready within %s (%v): %w", path, timeout, last, ErrTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// WaitGone polls until path no longer exists. It gives up when timeout
// passes or ctx ends.
func WaitGone(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still present after %s: %w", path, timeout, ErrTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to go away: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// Entry is one link of a by-id directory.
type Entry struct {
	// Name is the link's name, e.g. usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0.
	Name string
	// Path is the link's full path.
	Path string
	// Target is the resolved device path, e.g. /dev/ttyUSB0 (empty when
	// the link is dangling).
	Target string
}

// List returns the entries of a by-id directory, sorted by name. A missing
// directory gives no entries and no error (no such devices attached).
func List(dir string) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if de.IsDir() {
			continue
		}
		p := filepath.Join(dir, de.Name())
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			target = ""
		}
		out = append(out, Entry{Name: de.Name(), Path: p, Target: target})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
