package flash

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits on how much decoded data may wait in a decoder's memfd: above
// memHigh the decoder is paused (SIGSTOP) until we are down to memLow.
// Variables only so that tests can make them small.
var (
	memHigh int64 = 64 << 20
	memLow  int64 = 16 << 20
)

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{}
)

// tool returns the path of an external program, or "" if it is missing.
func tool(name string) string {
	toolMu.Lock()
	defer toolMu.Unlock()
	p, ok := toolPaths[name]
	if !ok {
		p, _ = exec.LookPath(name)
		toolPaths[name] = p
	}
	return p
}

// runSparseProc decodes the image with an external program (zstd, xz)
// whose output goes to a memfd. The memfd is a regular file, so the program
// seeks over runs of zeros instead of writing them; we follow the file as it
// grows, pass on its data extents and holes, and punch out what we have
// consumed. Nothing but data crosses between the processes, where a pipe
// would carry every zero byte. A decoder that runs too far ahead of the
// target is paused.
func (j *job) runSparseProc(ctx context.Context, path string, args ...string) error {
	mem, err := newMemfd("flash-decode")
	if err != nil {
		return fmt.Errorf("flash: memfd: %v", err)
	}
	defer mem.Close()
	// Our own open file description of the memfd: the decoder's writes go
	// through the offset of the one it inherits, which our SEEK_DATA calls
	// must not move.
	view, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", mem.Fd()), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("flash: reopening memfd: %v", err)
	}
	defer view.Close()
	memFD := int(view.Fd())

	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = time.Second // do not wait on a stdin copier stuck reading a pipe
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = mem
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	imgFD := -1
	switch {
	case j.img.regular && j.teeSum == nil:
		// The program reads the file itself; its offset is our progress.
		cmd.Stdin = j.img.f
		imgFD = int(j.img.f.Fd())
	case j.img.peeked && j.teeSum == nil:
		// The program reads the pipe itself: no copy through us.
		cmd.Stdin = j.img.f
		j.decoder += " (reads the pipe)"
	default:
		var src io.Reader = j.img.f
		if len(j.img.head) > 0 {
			src = io.MultiReader(bytes.NewReader(j.img.head), j.img.f)
		}
		in := &inputReader{ctx: ctx, r: src, pos: &j.inPos}
		if !j.img.regular {
			// Closing the pipe unblocks a read waiting on it.
			stop := context.AfterFunc(ctx, func() { j.img.f.Close() })
			defer stop()
		}
		if j.teeSum != nil {
			in.hash = newSHA256()
			defer func() { j.teeSum <- teeResult(in, err) }()
		}
		cmd.Stdin = in
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: starting %s: %v", ErrImage, path, err)
	}
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()
	exited := false
	var werr error
	killed := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			<-waitCh
		}
	}()

	stopAt := j.startBmap()
	var consumed int64
	err = j.pipeline(ctx, func(p *pipe) error {
		var punched int64
		paused := false
		defer func() {
			if paused {
				cmd.Process.Signal(unix.SIGCONT)
			}
		}()
		for {
			if !exited {
				select {
				case werr = <-waitCh:
					exited = true
				default:
				}
			}
			var st unix.Stat_t
			if err := unix.Fstat(memFD, &st); err != nil {
				return err
			}
			if imgFD >= 0 {
				if off, err := unix.Seek(imgFD, 0, io.SeekCurrent); err == nil {
					j.inPos.Store(off)
				}
			}
			size := st.Size
			if stopAt >= 0 && size > stopAt {
				size = stopAt
			}
			if size > consumed {
				if err := j.emitExtents(p, view, consumed, size); err != nil {
					return err
				}
				consumed = size
				if end := consumed &^ (pageSize - 1); end > punched {
					if err := unix.Fallocate(memFD, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, punched, end-punched); err != nil {
						return fmt.Errorf("flash: freeing decoded data: %v", err)
					}
					punched = end
				}
				if err := unix.Fstat(memFD, &st); err != nil {
					return err
				}
			}
			if stopAt >= 0 && consumed >= stopAt {
				// The rest is not mapped: no need to decode it.
				if !exited {
					killed = true
					cmd.Process.Kill()
					werr = <-waitCh
					exited = true
				}
				return nil
			}
			if exited {
				return nil
			}
			// What waits in the memfd is what we have not consumed yet.
			switch alloc := st.Blocks * 512; {
			case !paused && alloc > memHigh:
				cmd.Process.Signal(unix.SIGSTOP)
				paused = true
			case paused && alloc < memLow:
				cmd.Process.Signal(unix.SIGCONT)
				paused = false
			}
			wait := time.NewTimer(2 * time.Millisecond)
			select {
			case <-p.ctx.Done():
				wait.Stop()
				return context.Cause(p.ctx)
			case werr = <-waitCh:
				exited = true
			case <-wait.C:
			}
		}
	})
	if err != nil {
		return err
	}
	if werr != nil && !killed {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = werr.Error()
		}
		return fmt.Errorf("%w: decoding %s (%s) failed after %d bytes: %s", ErrImage, j.img.path, j.img.format, consumed, msg)
	}
	return j.streamEnd(consumed, stopAt)
}

// emitExtents passes bytes [a, b) of a decoder's memfd down the pipeline:
// data extents read into buffers, holes as zero runs.
func (j *job) emitExtents(p *pipe, mem interface {
	ReadAt([]byte, int64) (int, error)
	Fd() uintptr
}, a, b int64) error {
	fd := int(mem.Fd())
	pos := a
	for pos < b {
		data, hole := nextExtent(fd, pos, b)
		if data > pos {
			if err := p.send(chunk{off: pos, zeros: data - pos}); err != nil {
				return err
			}
			pos = data
		}
		for pos < hole {
			buf, err := p.buffer()
			if err != nil {
				return err
			}
			n := min(int64(len(buf)), hole-pos)
			if _, err := mem.ReadAt(buf[:n], pos); err != nil {
				p.pool <- buf
				return fmt.Errorf("reading decoded data: %v", err)
			}
			if err := p.send(chunk{off: pos, buf: buf, data: buf[:n]}); err != nil {
				return err
			}
			pos += n
		}
	}
	return nil
}

// streamEnd checks the decoded length of a stream, which ended after n
// bytes, and finishes its bmap checks.
func (j *job) streamEnd(n, stopAt int64) error {
	if stopAt < 0 {
		j.size = n
		j.knownSize.Store(n)
		if j.t.block && n > j.t.devSize {
			return fmt.Errorf("%w: the image is %d bytes, block device %s holds only %d", ErrTargetFull, n, j.t.path, j.t.devSize)
		}
	} else if n < stopAt {
		return fmt.Errorf("%w: %s decodes to only %d bytes, its bmap %s maps data up to byte %d (truncated image?)", ErrImage, j.img.path, n, j.bm.Path, stopAt)
	}
	if j.rh != nil {
		j.ownSums(j.rh.own)
		return j.rh.finish(j.img.path)
	}
	return nil
}
