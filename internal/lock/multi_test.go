package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// TestAcquireAllOppositeOrdersBothFinish starts runs wanting {A, B} and
// {B, A} at the same moment, many times: with locks taken one by one in
// the order asked, they would deadlock; AcquireAll takes each set whole,
// so both finish, one after the other, and the waiting one holds nothing.
func TestAcquireAllOppositeOrdersBothFinish(t *testing.T) {
	dir := t.TempDir()
	ab := [][]Want{{{Name: "A"}, {Name: "B"}}}
	ba := [][]Want{{{Name: "B"}, {Name: "A"}}}
	for round := range 20 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, 2)
		var inside sync.Mutex // held by whichever run holds its set
		for i, opts := range [][][]Want{ab, ba} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				set, _, err := AcquireAll(ctx, dir, opts, Holder{Plan: fmt.Sprintf("run-%d", i), PID: os.Getpid()}, time.Minute, nil)
				if err != nil {
					errs <- fmt.Errorf("round %d run %d: %w", round, i, err)
					return
				}
				if !inside.TryLock() {
					errs <- fmt.Errorf("round %d: both runs hold A and B at once", round)
				} else {
					time.Sleep(5 * time.Millisecond)
					inside.Unlock()
				}
				if err := set.Release(); err != nil {
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}

// TestAcquireAllWaiterHoldsNothing checks that a run waiting for a set
// holds none of it: the board it could have taken stays free for others.
func TestAcquireAllWaiterHoldsNothing(t *testing.T) {
	dir := t.TempDir()
	b, _, err := TryAcquire(dir, "B", Holder{Plan: "holder-of-b", PID: 4242})
	if err != nil || b == nil {
		t.Fatalf("take B: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	notified := make(chan string, 4)
	go func() {
		_, _, err := AcquireAll(ctx, dir, [][]Want{{{Name: "A"}, {Name: "B"}}}, Holder{Plan: "waiter"}, time.Minute,
			func(what string, h *Holder) {
				if h != nil {
					what += " by " + h.Plan
				}
				notified <- what
			})
		done <- err
	}()
	if got := <-notified; got != "board B by holder-of-b" {
		t.Errorf("notified %q, want board B by holder-of-b", got)
	}
	for range 5 {
		// under the allocation lock: the waiter is between two attempts
		alloc, err := lockAlloc(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		held := Held(dir, "A")
		alloc.Release()
		if held {
			t.Fatal("the waiting run holds A while it waits for B")
		}
		time.Sleep(pollEvery)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait returned %v", err)
	}
	b.Release()
	if Held(dir, "A") || Held(dir, "B") {
		t.Fatal("locks still held after the wait ended")
	}
}

// TestAcquireAllCapacity runs 5 runs on 5 boards that all want a share of
// a bus of capacity 4: four hold it together, the fifth waits until one
// lets go, then runs.
func TestAcquireAllCapacity(t *testing.T) {
	dir := t.TempDir()
	type got struct {
		i   int
		set *Set
		err error
	}
	ch := make(chan got, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 5 {
		go func() {
			set, _, err := AcquireAll(ctx, dir, [][]Want{{{Name: fmt.Sprintf("board-%d", i)}, {Name: "can0", Capacity: 4}}},
				Holder{Plan: fmt.Sprintf("run-%d", i), PID: os.Getpid()}, time.Minute, nil)
			ch <- got{i, set, err}
		}()
	}
	var running []got
	for range 4 {
		g := <-ch
		if g.err != nil {
			t.Fatal(g.err)
		}
		running = append(running, g)
	}
	if hs := ResourceHolders(dir, "can0", 4); len(hs) != 4 {
		t.Fatalf("can0 has %d holders, want 4", len(hs))
	}
	select {
	case g := <-ch:
		t.Fatalf("a fifth run (run-%d, %v) got a share of a bus of capacity 4", g.i, g.err)
	case <-time.After(5 * pollEvery):
	}
	// the fifth run's board is still free: it holds nothing while waiting
	waiting := 0 + 1 + 2 + 3 + 4
	for _, g := range running {
		waiting -= g.i
	}
	alloc, err := lockAlloc(ctx, dir) // the waiter is between two attempts
	if err != nil {
		t.Fatal(err)
	}
	held := Held(dir, fmt.Sprintf("board-%d", waiting))
	alloc.Release()
	if held {
		t.Fatalf("the waiting run-%d holds its board while it waits for the bus", waiting)
	}
	running[0].set.Release()
	g := <-ch
	if g.err != nil || g.i != waiting {
		t.Fatalf("after a release: run-%d %v, want run-%d to get the bus", g.i, g.err, waiting)
	}
	if hs := ResourceHolders(dir, "can0", 4); len(hs) != 4 {
		t.Fatalf("can0 has %d holders, want 4", len(hs))
	}
	g.set.Release()
	for _, r := range running[1:] {
		r.set.Release()
	}
	if hs := ResourceHolders(dir, "can0", 4); len(hs) != 0 {
		t.Fatalf("can0 still has holders after every run let go: %v", hs)
	}
}

// TestAcquireAllPicksAFreeOption checks the first wholly free option is
// taken and a busy one skipped without taking any of it.
func TestAcquireAllPicksAFreeOption(t *testing.T) {
	dir := t.TempDir()
	a, _, _ := TryAcquire(dir, "A", Holder{Plan: "x"})
	defer a.Release()
	set, i, err := AcquireAll(context.Background(), dir, [][]Want{{{Name: "A"}, {Name: "B"}}, {{Name: "C"}, {Name: "B"}}}, Holder{Plan: "y"}, time.Second, nil)
	if err != nil || i != 1 {
		t.Fatalf("got option %d, %v; want option 1", i, err)
	}
	defer set.Release()
	if fmt.Sprint(set.Held) != "[B C]" {
		t.Errorf("held %v, want [B C] (the global order)", set.Held)
	}
}

// TestAcquireAllGivesUp checks the wait is bounded and says who holds
// what is missing.
func TestAcquireAllGivesUp(t *testing.T) {
	dir := t.TempDir()
	s, _, err := AcquireAll(context.Background(), dir, [][]Want{{{Name: "bus", Capacity: 1}}}, Holder{Plan: "first", PID: 77}, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	_, _, err = AcquireAll(context.Background(), dir, [][]Want{{{Name: "bus", Capacity: 1}}}, Holder{Plan: "second"}, 300*time.Millisecond, nil)
	var be *BusyError
	if !errors.As(err, &be) || be.Holder == nil || be.Holder.Plan != "first" {
		t.Fatalf("want a BusyError naming the first run, got %v", err)
	}
}
