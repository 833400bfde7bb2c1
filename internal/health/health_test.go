package health

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRules(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Get("b1")
	if err != nil || r.State != Unknown || r.LastCheck != nil {
		t.Fatalf("a new board: %+v, %v", r, err)
	}
	pol := Policy{Every: 24 * time.Hour, AfterFailures: 2}
	if due, why := Due(r, pol, time.Now()); !due || why != "never checked" {
		t.Fatalf("a board never checked is due: %v %q", due, why)
	}
	now := time.Now()
	if r, _ = s.RecordCheck("b1", Check{Passed: true, ExitCode: 0, Time: now}); r.State != Good {
		t.Fatalf("passing check: %s", r.State)
	}
	if due, _ := Due(r, pol, now.Add(time.Hour)); due {
		t.Fatal("a board checked an hour ago is not due")
	}
	if due, why := Due(r, pol, now.Add(25*time.Hour)); !due || !strings.Contains(why, "every: 24h") {
		t.Fatalf("after 25h: %v %q", due, why)
	}
	if r, _ = s.RecordRun("b1", Run{ExitCode: 3, Reason: "power"}); r.State != Suspect || r.InfraFailures != 1 {
		t.Fatalf("exit 3: %+v", r)
	}
	if due, _ := Due(r, pol, now); due {
		t.Fatal("one infrastructure failure of two is not due")
	}
	if r, _ = s.RecordRun("b1", Run{ExitCode: 2}); r.InfraFailures != 1 {
		t.Fatal("an invalid plan says nothing about the board")
	}
	r, _ = s.RecordRun("b1", Run{ExitCode: 3})
	if due, why := Due(r, pol, now); !due || !strings.Contains(why, "2 infrastructure failures in a row") {
		t.Fatalf("two failures in a row: %v %q", due, why)
	}
	if r, _ = s.RecordCheck("b1", Check{Passed: false, ExitCode: 1, Reason: "login refused"}); r.State != Bad || r.InfraFailures != 0 {
		t.Fatalf("failing check: %+v", r)
	}
	since := r.Since
	if r, _ = s.RecordRun("b1", Run{ExitCode: 3}); r.State != Bad || !r.Since.Equal(since) {
		t.Fatalf("a bad board stays bad, since unchanged: %+v", r)
	}
	r, _ = s.RecordCheck("b1", Check{Passed: true})
	r, _ = s.RecordRun("b1", Run{ExitCode: 3})
	if r, _ = s.RecordRun("b1", Run{ExitCode: 1}); r.State != Good || r.InfraFailures != 0 {
		t.Fatalf("a completed run clears suspect: %+v", r)
	}
	if len(r.History) != 8 || r.History[0].Kind != "check" || r.History[1].State != Suspect {
		t.Fatalf("history: %+v", r.History)
	}
	all, err := s.List()
	if err != nil || len(all) != 1 || all[0].Board != "b1" || all[0].State != Good {
		t.Fatalf("List: %+v %v", all, err)
	}
	if _, err := s.Get("../x"); err == nil {
		t.Fatal("a path as board name must be refused")
	}
}

func TestBoundedHistory(t *testing.T) {
	s, _ := Open(t.TempDir())
	var r Record
	for i := 0; i < MaxHistory+20; i++ {
		r, _ = s.RecordRun("b", Run{ExitCode: 1 + 2*(i%2), Plan: "p"})
	}
	if len(r.History) != MaxHistory {
		t.Fatalf("history holds %d events, want %d", len(r.History), MaxHistory)
	}
	if got, _ := s.Get("b"); len(got.History) != MaxHistory || got.History[MaxHistory-1].ExitCode != 3 {
		t.Fatalf("stored history: %d", len(got.History))
	}
}

// Concurrent runs (each Update opens its own descriptor, so flock works
// between goroutines as between processes) lose no update, and readers
// never see a torn file.
func TestConcurrentUpdates(t *testing.T) {
	root := t.TempDir()
	const n = 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		s, _ := Open(root)
		for {
			select {
			case <-stop:
				close(readErr)
				return
			default:
			}
			if _, err := s.Get("b"); err != nil {
				readErr <- err
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(root)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := s.RecordRun("b", Run{ExitCode: 3}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-readErr; err != nil {
		t.Fatalf("a reader saw a damaged record: %v", err)
	}
	s, _ := Open(root)
	r, _ := s.Get("b")
	if r.InfraFailures != n || len(r.History) != n {
		t.Fatalf("lost updates: %d failures, %d events, want %d", r.InfraFailures, len(r.History), n)
	}
	left, _ := filepath.Glob(filepath.Join(Dir(root), "*.tmp"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestDamagedRecordIsReplaced(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	if err := os.WriteFile(filepath.Join(Dir(root), "b.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("b"); err == nil {
		t.Fatal("Get must report a damaged record")
	}
	if r, err := s.RecordCheck("b", Check{Passed: true}); err != nil || r.State != Good {
		t.Fatalf("an update replaces it: %+v %v", r, err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	root := t.TempDir()
	ro := OpenReadOnly(filepath.Join(root, "not-yet"))
	if all, err := ro.List(); err != nil || len(all) != 0 {
		t.Fatalf("List of a missing directory: %v %v", all, err)
	}
	if r, err := ro.Get("b"); err != nil || r.State != Unknown {
		t.Fatalf("Get: %+v %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(root, "not-yet")); !os.IsNotExist(err) {
		t.Fatal("OpenReadOnly created the directory")
	}
	if _, err := ro.RecordRun("b", Run{ExitCode: 3}); err == nil {
		t.Fatal("a read-only store must refuse updates")
	}
	s, _ := Open(root)
	if _, err := s.RecordCheck("b", Check{Passed: false, Reason: "no console"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := OpenReadOnly(root).Get("b"); r.State != Bad || r.LastCheck.Reason != "no console" {
		t.Fatalf("read-only Get: %+v", r)
	}
}
