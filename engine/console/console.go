// Package console keeps a board's console for the length of a run: one
// reader goroutine copies every byte into a timestamped log and into a
// bounded match window that steps expect against. Memory stays flat however
// chatty the console is, and every wait ends on its context, whether or not
// output keeps coming.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sync"
	"time"
)

// DefaultWindow is the default size of the match window.
const DefaultWindow = 64 << 10

// overlap is how much already-scanned text a new scan looks at again, so a
// match split across two reads is still found.
const overlap = 4 << 10

// fullScanEvery paces the scans of the whole window: a match longer than
// the overlap, arriving in pieces, is found by one of them (at most this
// long after its end arrived), and a chatty console costs at most one
// window's scan per period on top of the incremental scans. A match (an
// expect pattern or a fail-on pattern) may so span the whole window.
const fullScanEvery = 20 * time.Millisecond

// ErrClosed is returned once the console stream has ended.
var ErrClosed = errors.New("console closed")

// Options configure a Session.
type Options struct {
	// Window is the match window's size (DefaultWindow if 0).
	Window int
	// Log receives every byte read, for the console log. It may be nil.
	Log io.Writer
	// FailOn patterns end the run at once when the console prints them;
	// OnFail is called (from the reader goroutine) with the match.
	FailOn []*regexp.Regexp
	OnFail func(pattern, match string)
}

// Session is an open console.
type Session struct {
	rw   io.ReadWriteCloser
	opts Options

	mu       sync.Mutex
	buf      []byte // the window
	start    int64  // stream offset of buf[0]
	mark     int64  // stream offset up to which text is consumed
	scanned  int64  // stream offset up to which fail-on patterns were checked
	err      error  // reader error, once the stream has ended
	wake     chan struct{}
	failed   bool
	failFull int64     // stream offset up to which fail-on scanned the whole window
	lastFull time.Time // when it did
	failTmr  *time.Timer
	done     chan struct{}
	wmu      sync.Mutex
	captures []*Capture
	watch    int // generation of the silence watch (WatchSilence)
	closed   bool
	tees     []*tee
}

type tee struct{ w io.Writer }

// New starts the reader on rw.
func New(rw io.ReadWriteCloser, opts Options) *Session {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	s := &Session{rw: rw, opts: opts, wake: make(chan struct{}), done: make(chan struct{}),
		buf: make([]byte, 0, opts.Window)}
	go s.read()
	return s
}

func (s *Session) read() {
	defer close(s.done)
	p := make([]byte, 32<<10)
	for {
		n, err := s.rw.Read(p)
		if n > 0 {
			if s.opts.Log != nil {
				_, _ = s.opts.Log.Write(p[:n])
			}
			s.append(p[:n])
		}
		if err != nil {
			s.mu.Lock()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, errClosedByUs) {
				s.err = ErrClosed
			} else {
				s.err = fmt.Errorf("%w: %v", ErrClosed, err)
			}
			s.signal()
			s.mu.Unlock()
			return
		}
		// A read that returns (0, nil) means "no data yet" (serial read
		// timeouts); go round again.
	}
}

var errClosedByUs = errors.New("closed")

func (s *Session) append(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.captures {
		if len(c.buf)+len(p) > c.limit {
			c.over = true
		} else {
			c.buf = append(c.buf, p...)
		}
	}
	for _, t := range s.tees {
		_, _ = t.w.Write(p)
	}
	s.buf = append(s.buf, p...)
	if over := len(s.buf) - s.opts.Window; over > 0 {
		copy(s.buf, s.buf[over:])
		s.buf = s.buf[:len(s.buf)-over]
		s.start += int64(over)
	}
	s.checkFailOn()
	s.signal()
}

// checkFailOn scans new text for the run's fail-on patterns; call with mu
// held.
func (s *Session) checkFailOn() {
	if len(s.opts.FailOn) == 0 || s.failed {
		return
	}
	end := s.start + int64(len(s.buf))
	from := s.scanned - overlap
	if s.failFull < end && time.Since(s.lastFull) >= fullScanEvery {
		from, s.failFull, s.lastFull = s.start, end, time.Now()
	}
	if from < s.start {
		from = s.start
	}
	defer func() {
		// Text not yet covered by a whole-window scan gets one soon,
		// even if the console falls silent.
		if !s.failed && s.failFull < end && s.failTmr == nil {
			s.failTmr = time.AfterFunc(fullScanEvery, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.failTmr = nil
				s.checkFailOn()
			})
		}
	}()
	text := s.buf[from-s.start:]
	for _, re := range s.opts.FailOn {
		if loc := re.FindIndex(text); loc != nil {
			s.failed = true
			if s.opts.OnFail != nil {
				go s.opts.OnFail(re.String(), string(text[loc[0]:loc[1]]))
			}
			break
		}
	}
	s.scanned = end
}

// signal wakes every waiter; call with mu held.
func (s *Session) signal() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// Write sends bytes to the board.
func (s *Session) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return s.rw.Write(p)
}

// Send writes text, in small pieces with a pause between them when pace is
// positive (slow UARTs and line editors drop fast input).
func (s *Session) Send(ctx context.Context, text []byte, pace time.Duration) error {
	if pace <= 0 {
		_, err := s.Write(text)
		return err
	}
	for len(text) > 0 {
		n := min(len(text), 16)
		if _, err := s.Write(text[:n]); err != nil {
			return err
		}
		text = text[n:]
		if len(text) > 0 {
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(pace):
			}
		}
	}
	return nil
}

// Match is the result of Expect.
type Match struct {
	// Index is the index of the pattern that matched.
	Index int
	// Text is the matched text; Groups its submatches.
	Text   string
	Groups []string
	// Before is the unconsumed text before the match (up to the window).
	Before string
}

// FailOnError is returned by Expect when a fail-on pattern matched.
type FailOnError struct {
	Pattern string
	Text    string
}

func (e *FailOnError) Error() string {
	return fmt.Sprintf("console printed %q (fail-on pattern %q)", e.Text, e.Pattern)
}

// Expect waits until one of patterns matches the unconsumed console text
// and consumes the text through the match. A match of one of failOn first
// returns a *FailOnError. It ends with the context's cause, or ErrClosed
// when the stream ends.
func (s *Session) Expect(ctx context.Context, patterns []*regexp.Regexp, failOn []*regexp.Regexp) (*Match, error) {
	scanFrom := int64(-1)
	fullEnd := int64(-1) // stream offset up to which the whole window was scanned
	var lastFull time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		from := s.mark
		if from < s.start {
			from = s.start
		}
		end := s.start + int64(len(s.buf))
		if fullEnd < end && time.Since(lastFull) >= fullScanEvery {
			// All the unconsumed text: a long match that arrived in
			// pieces.
			fullEnd, lastFull = end, time.Now()
		} else if scanFrom > from {
			// Only look again at what is new, plus an overlap.
			from = scanFrom
		}
		text := s.buf[from-s.start:]
		best, bestIdx, bestFail := []int(nil), -1, false
		for i, re := range failOn {
			if loc := re.FindSubmatchIndex(text); loc != nil && (best == nil || loc[0] < best[0]) {
				best, bestIdx, bestFail = loc, i, true
			}
		}
		for i, re := range patterns {
			if loc := re.FindSubmatchIndex(text); loc != nil && (best == nil || loc[0] < best[0]) {
				best, bestIdx, bestFail = loc, i, false
			}
		}
		if best != nil {
			m := &Match{Index: bestIdx, Text: string(text[best[0]:best[1]])}
			mfrom := s.mark
			if mfrom < s.start {
				mfrom = s.start
			}
			m.Before = string(s.buf[mfrom-s.start : from-s.start+int64(best[0])])
			for g := 2; g+1 < len(best); g += 2 {
				if best[g] >= 0 {
					m.Groups = append(m.Groups, string(text[best[g]:best[g+1]]))
				} else {
					m.Groups = append(m.Groups, "")
				}
			}
			s.mark = from + int64(best[1])
			s.mu.Unlock()
			if bestFail {
				return m, &FailOnError{Pattern: failOn[bestIdx].String(), Text: m.Text}
			}
			return m, nil
		}
		scanFrom = end - overlap
		err, wake := s.err, s.wake
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		var full <-chan time.Time
		if fullEnd < end {
			if timer == nil {
				timer = time.NewTimer(fullScanEvery - time.Since(lastFull))
			} else {
				timer.Reset(fullScanEvery - time.Since(lastFull))
			}
			full = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-wake:
		case <-full:
		}
	}
}

// Tail returns up to n bytes of the most recent console text.
func (s *Session) Tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > n {
		return string(s.buf[len(s.buf)-n:])
	}
	return string(s.buf)
}

// Discard consumes everything received so far.
func (s *Session) Discard() {
	s.mu.Lock()
	s.mark = s.start + int64(len(s.buf))
	s.mu.Unlock()
}

// Err returns the reader's error once the stream has ended.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// WatchSilence calls warn, from another goroutine, each time interval passes
// with no console output since the call, with the total silent time; it stops
// once output arrives, the stream ends or WatchSilence is called again. A
// board that prints nothing after power on gets a reason in the log while a
// step keeps waiting.
func (s *Session) WatchSilence(interval time.Duration, warn func(silent time.Duration)) {
	if interval <= 0 {
		return
	}
	s.mu.Lock()
	s.watch++
	gen, from := s.watch, s.start+int64(len(s.buf))
	s.mu.Unlock()
	var silent time.Duration
	var tick func()
	tick = func() {
		s.mu.Lock()
		quiet := gen == s.watch && s.err == nil && !s.closed && s.start+int64(len(s.buf)) == from
		s.mu.Unlock()
		if !quiet {
			return
		}
		silent += interval
		warn(silent)
		time.AfterFunc(interval, tick)
	}
	time.AfterFunc(interval, tick)
}

// Close closes the stream and waits for the reader to stop (bounded).
func (s *Session) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.rw.Close()
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
	}
	return err
}

// Tee sends every byte the console receives from now on to w, in order,
// until stop is called (after stop returns, w gets nothing more). With
// pending, the text already received but not consumed by an Expect is sent
// first, so nothing printed before the call is missed. w is called from the
// console's reader and must not block for long nor use the session.
func (s *Session) Tee(w io.Writer, pending bool) (stop func()) {
	t := &tee{w: w}
	s.mu.Lock()
	if pending {
		from := s.mark
		if from < s.start {
			from = s.start
		}
		if text := s.buf[from-s.start:]; len(text) > 0 {
			_, _ = w.Write(text)
		}
	}
	s.tees = append(s.tees, t)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.tees {
			if x == t {
				s.tees = append(s.tees[:i], s.tees[i+1:]...)
				break
			}
		}
	}
}

// Capture collects every byte the console receives from now on, up to a
// limit, beyond the match window (for file transfers over the console).
type Capture struct {
	s     *Session
	limit int
	buf   []byte
	over  bool
}

// Capture starts a capture of at most limit bytes.
func (s *Session) Capture(limit int) *Capture {
	c := &Capture{s: s, limit: limit}
	s.mu.Lock()
	s.captures = append(s.captures, c)
	s.mu.Unlock()
	return c
}

// Stop ends the capture and returns what was collected; ok is false when
// the limit was exceeded.
func (c *Capture) Stop() (data []byte, ok bool) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for i, x := range c.s.captures {
		if x == c {
			c.s.captures = append(c.s.captures[:i], c.s.captures[i+1:]...)
			break
		}
	}
	return c.buf, !c.over
}
