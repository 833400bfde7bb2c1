package lock

// Taking several locks at once: the boards of a run on several boards and
// shares of shared resources. A resource of capacity N has N slot files
// (resource.NAME.0 ... N-1): holding a share is holding one slot. A run
// takes everything it needs together, in one global order (sorted by
// name), under the lock directory's allocation lock, and only when all of
// it is free: a run that waits holds nothing, so no two runs can wait on
// each other (no deadlock, no half-held set).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Want is one thing a run needs: a board (Capacity 0: exclusive) or a
// share of a resource with Capacity slots.
type Want struct {
	Name     string
	Capacity int
}

// IsResource reports whether w is a share of a resource.
func (w Want) IsResource() bool { return w.Capacity > 0 }

func (w Want) String() string {
	if w.IsResource() {
		return "resource " + w.Name
	}
	return "board " + w.Name
}

// ResourceSlot is the lock name of slot i of resource name.
func ResourceSlot(name string, i int) string { return "resource." + name + "." + strconv.Itoa(i) }

// Set is a held set of locks.
type Set struct {
	locks []*Lock
	// Held names what is held, in the order taken (resource slots as
	// ResourceSlot names).
	Held []string
}

// Release drops every lock of the set, in reverse order.
func (s *Set) Release() error {
	if s == nil {
		return nil
	}
	var first error
	for i := len(s.locks) - 1; i >= 0; i-- {
		if err := s.locks[i].Release(); err != nil && first == nil {
			first = err
		}
	}
	s.locks, s.Held = nil, nil
	return first
}

// allocName is the lock serializing allocation attempts in a directory:
// held only while one run tries its sets, never while it waits.
const allocName = ".alloc"

// AcquireAll takes every lock of one of options (each a set of wants),
// the first that is wholly free, waiting up to wait while none is. It
// returns the held set and the index of the option taken. While it waits
// it holds nothing. notify is called when a want it needs is busy, once
// per holder change.
func AcquireAll(ctx context.Context, dir string, options [][]Want, me Holder, wait time.Duration, notify func(what string, h *Holder)) (*Set, int, error) {
	if len(options) == 0 {
		return nil, -1, errors.New("nothing to lock")
	}
	start := time.Now()
	seen := map[string]Holder{}
	var last *Holder
	var lastBusy string
	for {
		set, i, busy, err := tryAll(ctx, dir, options, me)
		if err != nil || set != nil {
			return set, i, err
		}
		for name, h := range busy {
			lastBusy = name
			var hv Holder
			if h != nil {
				hv, last = *h, h
			}
			if prev, ok := seen[name]; !ok || prev != hv {
				seen[name] = hv
				if notify != nil {
					notify(name, h)
				}
			}
		}
		if time.Since(start) >= wait {
			return nil, -1, &BusyError{What: lastBusy, Holder: last, Waited: time.Since(start)}
		}
		select {
		case <-ctx.Done():
			return nil, -1, context.Cause(ctx)
		case <-time.After(pollEvery):
		}
	}
}

// pollEvery is how often a waiting AcquireAll tries again.
var pollEvery = 100 * time.Millisecond

// tryAll tries each option in turn under the allocation lock. busy names
// what stopped the options (the first busy want of each) and who holds it.
func tryAll(ctx context.Context, dir string, options [][]Want, me Holder) (*Set, int, map[string]*Holder, error) {
	alloc, err := lockAlloc(ctx, dir)
	if err != nil {
		return nil, -1, nil, err
	}
	defer alloc.Release()
	busy := map[string]*Holder{}
	for i, opt := range options {
		set, name, h, err := tryOne(dir, opt, me)
		if err != nil {
			return nil, -1, nil, err
		}
		if set != nil {
			return set, i, nil, nil
		}
		busy[name] = h
	}
	return nil, -1, busy, nil
}

// lockAlloc takes the allocation lock, waiting (briefly: it is held only
// while a run tries its sets).
func lockAlloc(ctx context.Context, dir string) (*Lock, error) {
	for {
		l, _, err := TryAcquire(dir, allocName, Holder{})
		if err != nil || l != nil {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// tryOne takes every want of opt, in the global order, or none. On a busy
// want it releases what it took and names it.
func tryOne(dir string, opt []Want, me Holder) (*Set, string, *Holder, error) {
	wants := append([]Want(nil), opt...)
	sort.Slice(wants, func(i, j int) bool { return orderKey(wants[i]) < orderKey(wants[j]) })
	set := &Set{}
	for _, w := range wants {
		l, name, h, err := tryWant(dir, w, me)
		if err != nil || l == nil {
			_ = set.Release()
			if err != nil {
				return nil, "", nil, err
			}
			return nil, w.String(), h, nil
		}
		set.locks = append(set.locks, l)
		set.Held = append(set.Held, name)
	}
	return set, "", nil, nil
}

// orderKey is the global order locks are taken in: boards, then
// resources, each by name.
func orderKey(w Want) string {
	if w.IsResource() {
		return "2/" + w.Name
	}
	return "1/" + w.Name
}

// tryWant takes a board's lock or a free slot of a resource.
func tryWant(dir string, w Want, me Holder) (*Lock, string, *Holder, error) {
	if !w.IsResource() {
		l, h, err := TryAcquire(dir, w.Name, me)
		return l, w.Name, h, err
	}
	var holder *Holder
	for i := range w.Capacity {
		slot := ResourceSlot(w.Name, i)
		l, h, err := TryAcquire(dir, slot, me)
		if err != nil || l != nil {
			return l, slot, nil, err
		}
		if holder == nil {
			holder = h
		}
	}
	return nil, "", holder, nil
}

// ResourceHolders lists who holds the slots of a resource of capacity n
// in dir (one entry per held slot), without taking anything: a slot is
// held when its file is flocked. Holders whose record is unreadable are
// listed as a zero Holder.
func ResourceHolders(dir, name string, n int) []Holder {
	var out []Holder
	for i := range n {
		slot := ResourceSlot(name, i)
		if !Held(dir, slot) {
			continue
		}
		h := ReadHolder(dir, slot)
		if h == nil {
			h = &Holder{}
		}
		out = append(out, *h)
	}
	return out
}

// Held reports whether the lock name in dir is held by someone, by trying
// a shared flock on a read-only descriptor (released at once): it creates
// nothing and never writes.
func Held(dir, name string) bool {
	f, err := openReadOnly(Path(dir, name))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Describe says who holds what of a busy set, for messages.
func Describe(what string, h *Holder) string {
	who := "another run"
	if h != nil && h.PID != 0 {
		who = h.String()
	}
	return fmt.Sprintf("%s is busy, held by %s", strings.TrimSpace(what), who)
}

func openReadOnly(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	return f, nil
}
