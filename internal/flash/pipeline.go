package flash

import (
	"context"
	"errors"
	"io"
	"sync"
)

// chunk is a piece of the decoded image travelling through a pipeline.
type chunk struct {
	off   int64
	buf   []byte // pooled buffer backing data; nil for zero runs
	data  []byte
	zeros int64 // with data == nil: this many zero bytes at off
}

func (c chunk) end() int64 {
	if c.data == nil {
		return c.off + c.zeros
	}
	return c.off + int64(len(c.data))
}

// pipe is what a producer sees of a pipeline: free buffers in, chunks out.
type pipe struct {
	ctx       context.Context
	pool      chan []byte
	allocated int
	out       chan<- chunk
}

// buffer returns a free buffer of chunkSize bytes.
func (p *pipe) buffer() ([]byte, error) {
	select {
	case b := <-p.pool:
		return b, nil
	default:
	}
	if p.allocated < numBuffers {
		p.allocated++
		return make([]byte, chunkSize), nil
	}
	select {
	case b := <-p.pool:
		return b, nil
	case <-p.ctx.Done():
		return nil, context.Cause(p.ctx)
	}
}

// send passes a chunk on to the writer stage.
func (p *pipe) send(c chunk) error {
	select {
	case p.out <- c:
		return nil
	case <-p.ctx.Done():
		if c.buf != nil {
			p.pool <- c.buf
		}
		return context.Cause(p.ctx)
	}
}

// pipeline runs produce against a writer stage and, when there is
// something to hash, a hashing stage, each in its own goroutine, so
// reading/decoding, writing and hashing overlap. Chunks must come in
// increasing offset order.
func (j *job) pipeline(ctx context.Context, produce func(p *pipe) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		once  sync.Once
		first error
	)
	fail := func(err error) {
		once.Do(func() { first = err; cancel(err) })
	}
	pool := make(chan []byte, numBuffers)
	toW := make(chan chunk, numBuffers)
	hashing := j.rh != nil || (j.opts.Verify && j.bm == nil)
	toH := make(chan chunk, numBuffers)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // writer stage
		defer wg.Done()
		defer close(toH)
		for c := range toW {
			if ctx.Err() == nil {
				var err error
				if c.data != nil {
					err = j.w.put(c.off, c.data)
				} else {
					err = j.w.putZeros(c.off, c.zeros)
				}
				if err != nil {
					fail(err)
				}
				j.outPos.Store(c.end())
			}
			if hashing && ctx.Err() == nil {
				toH <- c
			} else if c.buf != nil {
				pool <- c.buf
			}
		}
	}()
	go func() { // hashing stage
		defer wg.Done()
		for c := range toH {
			if ctx.Err() == nil {
				if err := j.hashChunk(c); err != nil {
					fail(err)
				}
			}
			if c.buf != nil {
				pool <- c.buf
			}
		}
	}()

	p := &pipe{ctx: ctx, pool: pool, out: toW}
	err := produce(p)
	close(toW)
	wg.Wait()
	if first != nil {
		return first
	}
	if err != nil {
		return err
	}
	return ctx.Err()
}

// hashChunk feeds a chunk to the bmap range hasher and the Verify segments.
func (j *job) hashChunk(c chunk) error {
	if c.data == nil {
		if j.opts.Verify && j.bm == nil {
			j.segs.addZeros(c.off, c.zeros)
		}
		if j.rh != nil {
			for off := c.off; off < c.end(); off += int64(len(zeroChunk)) {
				if err := j.rh.feed(off, zeroChunk[:min(int64(len(zeroChunk)), c.end()-off)]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if j.opts.Verify && j.bm == nil {
		j.segs.add(c.off, c.data)
	}
	if j.rh != nil {
		return j.rh.feed(c.off, c.data)
	}
	return nil
}

// readFull reads into buf until it is full or r ends. Unlike io.ReadFull it
// reports the end of r as io.EOF even after a partial read, so a decoder's
// own io.ErrUnexpectedEOF (truncated input) stays distinguishable.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
		if k == 0 {
			// Readers may return 0, nil; keep going, they must progress.
			continue
		}
	}
	return n, nil
}

// isEOF reports a clean end of input.
func isEOF(err error) bool { return errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) }
