package remote

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jsplan/jsplan/drivers/dutlink"
	"github.com/jsplan/jsplan/drivers/dutlink/dutlinktest"
	"github.com/jsplan/jsplan/internal/flash"
)

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
	board, err := dutlinktest.NewBoard(dutlinktest.BoardOptions{Medium: medium})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := dutlinktest.New(dutlinktest.Options{DUT: board, DiskPath: disk, MediumPath: medium,
		MediumSize: 4 << 20, DiskDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	board.Follow(sim)
	t.Cleanup(func() {
		sim.Close()
		board.Close()
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
