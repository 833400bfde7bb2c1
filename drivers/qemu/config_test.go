package qemu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
	"github.com/jsplan/jsplan/drivers/internal/cfg"
)

// decode decodes an inventory config strictly, as the engine does.
func decode(t *testing.T, src string) (*Device, error) {
	t.Helper()
	info, ok := drivers.Lookup("qemu")
	if !ok {
		t.Fatal("driver qemu is not registered")
	}
	dev := info.New()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(dev); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	d := dev.(*Device)
	return d, d.Validate()
}

func TestRegistration(t *testing.T) {
	info, ok := drivers.Lookup("qemu")
	if !ok {
		t.Fatal("driver qemu is not registered")
	}
	dev := info.New()
	for _, iface := range []any{(*drivers.Cycler)(nil), (*drivers.Resetter)(nil), (*drivers.PowerStater)(nil), (*drivers.Validator)(nil)} {
		if !reflect.TypeOf(dev).Implements(reflect.TypeOf(iface).Elem()) {
			t.Errorf("Device does not implement %v", reflect.TypeOf(iface).Elem())
		}
	}
	d := dev.(*Device)
	if got := d.Capabilities(); len(got) != 3 {
		t.Errorf("Capabilities without network = %v", got)
	}
	d.Network = &NetworkConfig{SSHPort: 2222}
	if got := d.Capabilities(); len(got) != 4 || got[3] != drivers.CapNetwork {
		t.Errorf("Capabilities with network = %v", got)
	}
	for _, c := range drivers.AllCapabilities {
		if !drivers.HasCapability(dev, c) {
			t.Errorf("capability %s: not served with network configured", c)
		}
	}
	if err := drivers.CheckCapabilities(dev); err != nil {
		t.Error(err)
	}
}

func TestConfigDecode(t *testing.T) {
	d, err := decode(t, `
disk: disks/board.img
machine: pc
cpu: qemu64,+ssse3
memory: 512
accel: tcg
extra-args: [-smp, "2"]
network: {ssh-port: 2222, user: admin, key-file: keys/id}
qemu-binary: /usr/bin/qemu-system-x86_64
powerdown-timeout: 2s
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Disk: "disks/board.img", Machine: "pc", CPU: "qemu64,+ssse3", Memory: 512, Accel: "tcg",
		ExtraArgs: []string{"-smp", "2"}, QEMUBinary: "/usr/bin/qemu-system-x86_64", PowerdownTimeout: dur(2 * time.Second),
		Network: &NetworkConfig{SSHPort: 2222, User: "admin", KeyFile: "keys/id"},
	}
	if !reflect.DeepEqual(d.Config, want) {
		t.Fatalf("decoded %+v\nwant    %+v", d.Config, want)
	}
	if _, err := decode(t, "{}"); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"memroy: 256", "field memroy not found"},
		{"network: {port: 22}", "field port not found"},
		{"memory: lots", "cannot unmarshal"},
		{"memory: 8", "memory: 8"},
		{"accel: hvf", `accel: "hvf"`},
		{"machine: 'q35 -kernel x'", "machine"},
		{"cpu: ''", ""}, // empty means default
		{"network: {}", "network.ssh-port: 0"},
		{"network: {ssh-port: 70000}", "network.ssh-port: 70000"},
		{"network: {ssh-port: 22, user: 'a b'}", "network.user"},
		{"extra-args: ['']", "extra-args[0]: is empty"},
		{"extra-args: [-daemonize]", "-daemonize is not allowed"},
		{"powerdown-timeout: soon", "bad duration"},
		{"powerdown-timeout: -1s", "negative"},
	} {
		_, err := decode(t, tc.src)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.src, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.src, err, tc.want)
		}
	}
}

// TestSchemaMatchesConfig checks that the schema lists exactly the yaml keys
// of Config, each with a description, and refuses unknown keys.
func TestSchemaMatchesConfig(t *testing.T) {
	info, _ := drivers.Lookup("qemu")
	check := func(name string, schema map[string]any, typ reflect.Type) {
		if schema["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties is not false", name)
		}
		props, _ := schema["properties"].(map[string]any)
		var keys, fields []string
		for k, v := range props {
			keys = append(keys, k)
			p, _ := v.(map[string]any)
			if desc, _ := p["description"].(string); desc == "" {
				t.Errorf("%s.%s has no description", name, k)
			}
		}
		for i := 0; i < typ.NumField(); i++ {
			tag := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
			fields = append(fields, tag)
		}
		sort.Strings(keys)
		sort.Strings(fields)
		if !reflect.DeepEqual(keys, fields) {
			t.Errorf("%s: schema keys %v, struct keys %v", name, keys, fields)
		}
	}
	check("config", info.Schema, reflect.TypeOf(Config{}))
	net, _ := info.Schema["properties"].(map[string]any)["network"].(map[string]any)
	check("network", net, reflect.TypeOf(NetworkConfig{}))
}

func TestPathsAndEndpoint(t *testing.T) {
	d, err := decode(t, "disk: disks/b.img\nnetwork: {ssh-port: 2200, key-file: k/id}\nqemu-binary: \"true\"")
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	if err := d.Open(context.Background(), drivers.Env{StateDir: t.TempDir(), BaseDir: base}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if want := filepath.Join(base, "disks/b.img"); d.DiskPath() != want {
		t.Errorf("disk %s, want %s", d.DiskPath(), want)
	}
	ep, err := d.Endpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ep.Host != "127.0.0.1" || ep.Port != 2200 || ep.User != "root" || ep.KeyFile != filepath.Join(base, "k/id") {
		t.Errorf("Endpoint = %+v", ep)
	}
	// AttachHost creates the directory and an empty disk.
	target, err := d.AttachHost(context.Background())
	if err != nil || target != d.DiskPath() {
		t.Fatalf("AttachHost = %q, %v", target, err)
	}
	// Powering on while the disk is with the host is refused, and an empty
	// disk too, both before anything is started.
	if err := d.On(context.Background()); err == nil || !strings.Contains(err.Error(), "attached to the host") {
		t.Errorf("On while attached to host = %v", err)
	}
	d.AttachBoard(context.Background())
	var de *drivers.Error
	if err := d.On(context.Background()); !errors.As(err, &de) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("On with an empty disk = %v, want a *drivers.Error", err)
	}
}

func TestOpenErrors(t *testing.T) {
	d := &Device{Config: Config{QEMUBinary: "no-such-qemu-binary"}}
	err := d.Open(context.Background(), drivers.Env{StateDir: t.TempDir()})
	var de *drivers.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "no-such-qemu-binary") {
		t.Fatalf("Open = %v, want a *drivers.Error naming the binary", err)
	}
	d = &Device{Config: Config{QEMUBinary: "true"}}
	if _, err := d.Endpoint(context.Background()); err == nil {
		t.Error("Endpoint without network succeeded")
	}
	if err := d.On(context.Background()); err == nil {
		t.Error("On before Open succeeded")
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close before Open: %v", err)
	}
}

// TestConsoleRelay drives the console relay with real unix socket clients in
// the place of QEMU: the stream outlives each client, input while no client
// is connected is dropped, a new stream ends the old one and Close ends all.
func TestConsoleRelay(t *testing.T) {
	d := &Device{Config: Config{QEMUBinary: "true"}}
	if err := d.Open(context.Background(), drivers.Env{StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := d.OpenConsole(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("nobody listens\n")); err != nil {
		t.Fatalf("write with no QEMU: %v", err)
	}
	readN := func(s io.Reader, n int) string {
		t.Helper()
		b := make([]byte, n)
		done := make(chan error, 1)
		go func() { _, err := io.ReadFull(s, b); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("read: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("read timed out")
		}
		return string(b)
	}
	for i, boot := range []string{"first boot\n", "second boot\n"} {
		q, err := net.Dial("unix", d.console.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Write([]byte(boot)); err != nil {
			t.Fatal(err)
		}
		if got := readN(s, len(boot)); got != boot {
			t.Fatalf("boot %d: read %q, want %q", i, got, boot)
		}
		// Input reaches the connected "QEMU".
		for !d.console.connected() {
			time.Sleep(time.Millisecond)
		}
		if _, err := s.Write([]byte("root\n")); err != nil {
			t.Fatal(err)
		}
		q.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 5)
		if _, err := io.ReadFull(q, got); err != nil || string(got) != "root\n" {
			t.Fatalf("boot %d: QEMU side read %q, %v", i, got, err)
		}
		q.Close()
		for d.console.connected() {
			time.Sleep(time.Millisecond)
		}
	}
	// Output while nobody reads is kept for the next stream; the old stream ends.
	q, err := net.Dial("unix", d.console.path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Write([]byte("buffered"))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		d.console.mu.Lock()
		n := len(d.console.buf)
		d.console.mu.Unlock()
		if n == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay buffered %d bytes, want 8", n)
		}
	}
	s2, err := d.OpenConsole(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("old stream Read = %d, %v; want EOF", n, err)
	}
	if got := readN(s2, 8); got != "buffered" {
		t.Fatalf("new stream read %q", got)
	}
	done := make(chan error, 1)
	go func() { _, err := s2.Read(make([]byte, 10)); done <- err }()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != io.EOF {
			t.Fatalf("Read after Close = %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not end after Close")
	}
	var buf bytes.Buffer
	if n, _ := buf.ReadFrom(s2); n != 0 {
		t.Fatal("read data after Close")
	}
}

func dur(d time.Duration) *cfg.Duration { c := cfg.Duration(d); return &c }
