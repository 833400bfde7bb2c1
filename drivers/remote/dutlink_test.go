package remote

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jsplan/jsplan/drivers/dutlink"
	"github.com/jsplan/jsplan/drivers/dutlink/dutlinktest"
	"github.com/jsplan/jsplan/internal/flash"
)

// muxBoard is a board behind a simulated DUTLink harness: at each power on
// it boots the image on its medium (the harness's storage mux) and prints
// its id, then echoes what it is typed and answers "hello".
type muxBoard struct {
	outR, inR *io.PipeReader
	outW, inW *io.PipeWriter
	mu        sync.Mutex
}

func (b *muxBoard) Read(p []byte) (int, error)  { return b.outR.Read(p) }
func (b *muxBoard) Write(p []byte) (int, error) { return b.inW.Write(p) }

func (b *muxBoard) print(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.outW.Write([]byte(s))
}

var imageID = regexp.MustCompile(`JSPLAN_IMAGE_ID=(\S+)`)

func (b *muxBoard) run(sim *dutlinktest.Sim, medium string, stop chan struct{}) {
	go func() {
		var line []byte
		buf := make([]byte, 256)
		for {
			n, err := b.inR.Read(buf)
			for _, c := range buf[:n] {
				if c < ' ' && c != '\r' {
					continue // control keys: ignored, as a boot loader's line editor does
				}
				if c != '\r' {
					line = append(line, c)
					b.print(string(c))
					continue
				}
				if strings.TrimSpace(string(line)) == "hello" {
					b.print("\r\nboard says hi\r\n# ")
				} else {
					b.print("\r\n# ")
				}
				line = line[:0]
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		boots := 0
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			on := 0
			for _, ev := range sim.Events() {
				if ev.What == "power 1" {
					on++
				}
			}
			for ; boots < on; boots++ {
				time.Sleep(300 * time.Millisecond)
				id := "none"
				if data, err := os.ReadFile(medium); err == nil {
					if m := imageID.FindSubmatch(data); m != nil {
						id = string(m[1])
					}
				}
				b.print(fmt.Sprintf("\r\nboot %d: image %s\r\n# ", boots+1, id))
			}
		}
	}()
}

// A board behind the DUTLink simulator, served by an agent: the image
// goes through the harness's storage mux on the agent's host (no device
// node on the client), then the board boots it and answers on its console.
func TestDUTLinkThroughAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("drives the DUTLink simulator")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "by-id", "usb-DUTLink_Storage_sim-0:0")
	os.MkdirAll(filepath.Dir(disk), 0o755)
	medium := filepath.Join(dir, "medium.img")
	board := &muxBoard{}
	board.outR, board.outW = io.Pipe()
	board.inR, board.inW = io.Pipe()
	sim, err := dutlinktest.New(dutlinktest.Options{DUT: board, DiskPath: disk, MediumPath: medium,
		MediumSize: 4 << 20, DiskDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	board.run(sim, medium, stop)
	t.Cleanup(func() {
		close(stop)
		sim.Close()
		board.outW.Close()
		board.inR.Close()
	})
	a := startAgent(t, fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Boards
boards:
  - name: dl-1
    drivers:
      dutlink: {port: %s, disk: %s, disk-wait: 10s}
`, sim.Path(), disk), func(o *Options) { o.TTL = 5 * time.Second })
	d := a.open(t, "dl-1", nil)
	ctx := ctxT(t)

	img := filepath.Join(dir, "image.img")
	data := append(bytes.Repeat([]byte{0x5a}, 1<<20), []byte("\nJSPLAN_IMAGE_ID=dutlink-9\n")...)
	os.WriteFile(img, data, 0o644)
	res, err := d.WriteImage(ctx, flash.Options{Image: img, Verify: true})
	if err != nil {
		t.Fatalf("flash through the storage mux: %v\nagent:\n%s", err, a.log)
	}
	if !res.Verified || res.ImageSize != int64(len(data)) {
		t.Fatalf("flash result %+v", res)
	}
	if st := sim.State(); st.Storage != "dut" {
		t.Fatalf("after the flash the storage is %q, want it given back to the board (dut)", st.Storage)
	}
	rw, err := d.OpenConsole(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := newCon(t, rw)
	if err := d.On(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitFor("image dutlink-9")
	c.send("hello\r")
	c.waitFor("board says hi")
	if err := d.Cycle(ctx, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c.waitFor("boot 2: image dutlink-9")
	// the lease ends by expiry: the agent powers the harness off
	d.abandon()
	a.log.waitLog(t, "expired (powered off)")
	if sim.State().Power {
		t.Fatal("the harness is still powered after the lease expired")
	}
}
