package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jsplan/jsplan/drivers/remote/remotepb"
	"github.com/jsplan/jsplan/internal/flash"
	"github.com/jsplan/jsplan/internal/lock"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// A board through the agent: power with its state, the console both
// ways, and an image flashed (zstd with a bmap) and verified on the agent.
func TestRemoteBoardPowerConsoleFlash(t *testing.T) {
	a := startAgent(t, twoBoards, nil)
	d := a.open(t, "sim-1", nil)
	ctx := ctxT(t)

	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	data := append(bytes.Repeat([]byte("jsplan-"), 300000), []byte("\nJSPLAN_IMAGE_ID=remote-7\n")...)
	data = append(data, make([]byte, 1<<20)...)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zstd", "-q", "-f", img, "-o", img+".zst").CombinedOutput(); err != nil {
		t.Skipf("zstd: %v %s", err, out)
	}
	var progress bytes.Buffer
	res, err := d.WriteImage(ctx, flash.Options{Image: img + ".zst", Verify: true, Progress: &progress})
	if err != nil {
		t.Fatalf("flash: %v", err)
	}
	if res.Format != "zstd" || res.ImageSize != int64(len(data)) || !res.Verified {
		t.Fatalf("flash result %+v", res)
	}
	onAgent, err := os.ReadFile(filepath.Join(a.state, "sim-1", "sim", "disk.img"))
	if err != nil || !bytes.Equal(onAgent[:len(data)], data) {
		t.Fatalf("the agent's disk does not hold the image (%v, %d bytes)", err, len(onAgent))
	}
	// a bad checksum is the image's fault (flash.ErrChecksum), as locally
	_, err = d.WriteImage(ctx, flash.Options{Image: img + ".zst", SHA256: strings.Repeat("0", 64)})
	if !errors.Is(err, flash.ErrChecksum) {
		t.Fatalf("bad checksum: got %v, want flash.ErrChecksum", err)
	}

	if on, err := d.PowerState(ctx); err != nil || on {
		t.Fatalf("power state before on: %v %v", on, err)
	}
	rw, err := d.OpenConsole(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := newCon(t, rw)
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	if on, err := d.PowerState(ctx); err != nil || !on {
		t.Fatalf("power state after on: %v %v", on, err)
	}
	c.waitFor("remote-7")
	c.login()
	c.send("echo $((6*7))\n")
	c.waitFor("42")
	if err := d.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitFor("login: ")
	if err := d.Off(ctx); err != nil {
		t.Fatal(err)
	}
	if on, _ := d.PowerState(ctx); on {
		t.Fatal("still on after off")
	}
}

// Waiters are served by priority, then arrival, and each sees its
// position; a holder that stops keeping alive loses the lease after the
// TTL, the board is powered off and the next waiter gets it.
func TestLeaseQueueAndExpiry(t *testing.T) {
	a := startAgent(t, twoBoards, func(o *Options) { o.TTL = 2 * time.Second })
	holder := a.open(t, "sim-1", func(d *Device) { d.Holder = "first" })
	ctx := ctxT(t)
	if err := holder.On(ctx); err != nil {
		t.Fatal(err)
	}
	// leases are kept alive well past the TTL
	time.Sleep(3 * time.Second)
	if err := holder.On(ctx); err != nil {
		t.Fatalf("the kept-alive lease ended: %v", err)
	}

	type opened struct {
		d   *Device
		err error
	}
	low, high := make(chan opened, 1), make(chan opened, 1)
	go func() {
		d, err := a.tryOpen("sim-1", func(d *Device) { d.Holder = "low" })
		low <- opened{d, err}
	}()
	if st := waitWaiting(t, a, "sim-1", 1); st.Waiting[0].Holder == "" {
		t.Fatalf("the waiter has no name: %+v", st)
	}
	go func() {
		d, err := a.tryOpen("sim-1", func(d *Device) { d.Holder = "high"; d.Priority = 5 })
		high <- opened{d, err}
	}()
	st := waitWaiting(t, a, "sim-1", 2)
	if !strings.HasSuffix(st.Holder, ": first") || !strings.HasSuffix(st.Waiting[0].Holder, ": high") ||
		!strings.HasSuffix(st.Waiting[1].Holder, ": low") {
		t.Fatalf("holder %q, queue %v: want first holding, then high, low", st.Holder, st.Waiting)
	}
	if st.SinceUnixMs == 0 || time.Since(time.UnixMilli(st.SinceUnixMs)) > time.Minute {
		t.Fatalf("since %d", st.SinceUnixMs)
	}

	holder.abandon() // as if killed
	a.log.waitLog(t, "expired")
	var h opened
	select {
	case h = <-high:
	case <-time.After(waitLimit):
		t.Fatal("the high-priority waiter never got the board")
	}
	if h.err != nil {
		t.Fatal(h.err)
	}
	defer h.d.Close()
	if !strings.Contains(a.log.String(), "ended: expired (powered off)") {
		t.Fatalf("the expired lease did not power the board off:\n%s", a.log)
	}
	if on, err := h.d.PowerState(ctx); err != nil || on {
		t.Fatalf("the next holder finds the board on=%v (%v), want off", on, err)
	}
	// the expired holder's token is worth nothing now
	if err := holder.On(ctx); err == nil {
		t.Fatal("the expired holder could still power the board")
	}
	select {
	case o := <-low:
		t.Fatalf("low got the board while high holds it: %v", o.err)
	default:
	}
	h.d.Close()
	select {
	case l := <-low:
		if l.err != nil {
			t.Fatal(l.err)
		}
		l.d.Close()
	case <-time.After(waitLimit):
		t.Fatal("the low-priority waiter never got the board")
	}
}

// waitWaiting waits until n clients wait for board and returns its status.
func waitWaiting(t *testing.T, a *testAgent, board string, n int) *statusT {
	t.Helper()
	var st *statusT
	eventually(t, "waiters", func() bool {
		s, err := Status(context.Background(), &Device{Address: "unix:" + a.sock, Board: board}, "")
		if err != nil {
			t.Fatal(err)
		}
		st = s
		return len(s.Waiting) == n
	})
	return st
}

// The agent holds the board's internal/lock lock for the lease: a local run
// and the agent's clients exclude each other.
func TestLeaseHoldsLocalLock(t *testing.T) {
	a := startAgent(t, twoBoards, nil)
	local, _, err := lock.TryAcquire(a.locks, "sim-1", lock.Holder{Board: "sim-1", Plan: "local run", PID: os.Getpid()})
	if err != nil || local == nil {
		t.Fatalf("local lock: %v", err)
	}
	got := make(chan error, 1)
	var logs logBuf
	go func() {
		d := &Device{Address: "unix:" + a.sock, Board: "sim-1"}
		err := d.Open(context.Background(), envFor(t, &logs))
		if err == nil {
			d.Close()
		}
		got <- err
	}()
	eventually(t, "the waiter told about the local run", func() bool {
		return strings.Contains(logs.String(), `position 1`) && strings.Contains(logs.String(), `local run`)
	})
	st := waitWaiting(t, a, "sim-1", 1)
	if !strings.Contains(st.LocalHolder, "local run") {
		t.Fatalf("status does not name the local holder: %+v", st)
	}
	local.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	d := a.open(t, "sim-1", nil)
	_ = d
	l, h, err := lock.TryAcquire(a.locks, "sim-1", lock.Holder{Board: "sim-1", Plan: "local run 2", PID: os.Getpid()})
	if err != nil || l != nil {
		t.Fatalf("a local run got the board while a lease holds it (%v)", err)
	}
	if h == nil || !strings.Contains(h.Plan, "lease of") {
		t.Fatalf("the local lock's holder does not name the lease: %+v", h)
	}
}

// The DRA driver's API: Grant gives a lease to a token, a Restricted
// socket serves that lease and nothing else, Release powers the board off.
func TestGrantRestrictedRelease(t *testing.T) {
	a := startAgent(t, twoBoards, nil)
	podSock := filepath.Join(a.dir, "pod.sock")
	ln, err := netListenUnix(podSock)
	if err != nil {
		t.Fatal(err)
	}
	a.serve(t, ln, agentRestricted())
	ctx := ctxT(t)
	token, err := a.srv.Grant(ctx, "sim-1", "ResourceClaim ns/claim")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.srv.Grant(ctx, "sim-1", "another claim"); err == nil {
		t.Fatal("a granted board was granted again")
	}
	tokFile := filepath.Join(a.dir, "token")
	os.WriteFile(tokFile, []byte(token+"\n"), 0o600)
	d := &Device{Address: "unix:" + podSock, Board: "sim-1", TokenFile: tokFile}
	if err := d.Open(ctx, envFor(t, nil)); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	// nothing else on that socket: no queueing for another board, and
	// the board list shows only the pod's own
	if _, err := a.tryOpenAt(podSock, "sim-2"); err == nil || !strings.Contains(err.Error(), "granted leases only") {
		t.Fatalf("acquire on the restricted socket: %v", err)
	}
	st, err := Status(ctx, &Device{Address: "unix:" + podSock, Board: "sim-2"}, "")
	if err == nil {
		t.Fatalf("the pod sees sim-2: %+v", st)
	}
	// the token's holder may not end the lease: Unprepare does
	d.Close()
	if !leaseHeld(t, a, "sim-1") {
		t.Fatal("closing the granted client ended the lease")
	}
	if err := a.srv.Release(token); err != nil {
		t.Fatal(err)
	}
	a.log.waitLog(t, "ended: released (powered off)")
	if leaseHeld(t, a, "sim-1") {
		t.Fatal("the lease lasts after Release")
	}
	d2 := &Device{Address: "unix:" + podSock, Board: "sim-1", TokenFile: tokFile}
	if err := d2.Open(ctx, envFor(t, nil)); err == nil {
		d2.Close()
		t.Fatal("a released token still opens the board")
	}
}

// A holder that stops keeping its lease alive in the middle of sending an
// image (its connection still open, sending nothing) loses the lease on
// time: the half-received flash does not keep the board from the next.
func TestLeaseExpiresDuringStalledFlash(t *testing.T) {
	a := startAgent(t, twoBoards, func(o *Options) { o.TTL = 2 * time.Second })
	d := a.open(t, "sim-1", nil)
	s, err := d.client.Flash(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&remotepb.FlashIn{Msg: &remotepb.FlashIn_Header{Header: &remotepb.FlashHeader{ImageName: "x.img"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&remotepb.FlashIn{Msg: &remotepb.FlashIn_Data{Data: make([]byte, 64<<10)}}); err != nil {
		t.Fatal(err)
	}
	d.cancel(errors.New("stalled")) // no more keepalives; the stream stays open
	d.wg.Wait()
	start := time.Now()
	next := a.open(t, "sim-1", func(d *Device) { d.Wait = cfgSecond * 20 })
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the next client waited %s", took)
	}
	_ = next
	if _, err := s.Recv(); status.Code(err) != codes.Aborted {
		t.Fatalf("the stalled flash ended with %v, want Aborted", err)
	}
}

// An image is decoded on the agent as it arrives (zstd: the zstd program
// reads the stream's pipe), except xz, received whole first for its
// parallel block path; a client that breaks off mid-image, or sends a
// second header, ends that flash only: the next one on the lease works.
func TestFlashStreamsAsItArrives(t *testing.T) {
	a := startAgent(t, twoBoards, nil)
	d := a.open(t, "sim-1", nil)
	ctx := ctxT(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	data := append(bytes.Repeat([]byte("jsplan streams "), 400000), []byte("\nJSPLAN_IMAGE_ID=stream-1\n")...)
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(a.state, "sim-1", "sim", "disk.img")
	check := func(img, decoder string) {
		t.Helper()
		res, err := d.WriteImage(ctx, flash.Options{Image: img, Verify: true, SHA256: sha256Hex(t, img)})
		if err != nil {
			t.Fatalf("%s: %v", img, err)
		}
		if !res.Verified || !strings.Contains(res.Decoder, decoder) {
			t.Fatalf("%s: %+v, want decoder %q", img, res, decoder)
		}
		got, err := os.ReadFile(disk)
		if err != nil || !bytes.Equal(got[:len(data)], data) {
			t.Fatalf("%s: the agent's disk does not hold the image (%v)", img, err)
		}
	}
	for _, c := range []struct{ tool, ext, decoder string }{{"zstd", ".zst", "zstd"}, {"xz", ".xz", "blocks"}} {
		if _, err := exec.LookPath(c.tool); err != nil {
			t.Logf("no %s here", c.tool)
			continue
		}
		if out, err := exec.Command(c.tool, "-q", "-k", "-f", "-T2", raw).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", c.tool, err, out)
		}
		check(raw+c.ext, c.decoder)
	}
	// without a checksum, the zstd program reads the stream's pipe itself
	if _, err := exec.LookPath("zstd"); err == nil {
		res, err := d.WriteImage(ctx, flash.Options{Image: raw + ".zst"})
		if err != nil || !strings.Contains(res.Decoder, "reads the pipe") {
			t.Fatalf("zstd without a checksum: %+v %v", res, err)
		}
	}

	if _, err := exec.LookPath("zstd"); err != nil {
		return
	}
	// the start of a zstd image that is still arriving
	noise := make([]byte, 4<<20)
	rand.New(rand.NewSource(1)).Read(noise)
	if err := os.WriteFile(filepath.Join(dir, "noise.img"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zstd", "-q", "-f", filepath.Join(dir, "noise.img")).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v %s", err, out)
	}
	zst, err := os.ReadFile(filepath.Join(dir, "noise.img.zst"))
	if err != nil {
		t.Fatal(err)
	}
	zst = zst[:64<<10]
	hdr := &remotepb.FlashIn{Msg: &remotepb.FlashIn_Header{Header: &remotepb.FlashHeader{ImageName: "x.zst"}}}
	chunk := &remotepb.FlashIn{Msg: &remotepb.FlashIn_Data{Data: zst}}
	// a second header after the image started
	s, err := d.client.Flash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*remotepb.FlashIn{hdr, chunk, hdr} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a second header: %v, want InvalidArgument", err)
	}
	// a client that leaves mid-image
	sctx, cancel := context.WithCancel(ctx)
	if s, err = d.client.Flash(sctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*remotepb.FlashIn{hdr, chunk} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	// the flash that follows on the lease is whole (nothing of the
	// abandoned one writes after it)
	check(raw+".zst", "zstd")
	time.Sleep(200 * time.Millisecond)
	if got, err := os.ReadFile(disk); err != nil || !bytes.Equal(got[:len(data)], data) {
		t.Fatalf("the abandoned flash wrote after the next one (%v)", err)
	}
}

func sha256Hex(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
