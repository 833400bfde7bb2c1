//go:build linux

package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v5"
	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers"
)

func TestImageID(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sum := func(b []byte) string {
		s := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(s[:])[:12]
	}
	zeros := func(n int) []byte { return make([]byte, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	plain := []byte("no marker here\n")
	// A marker whose token straddles the 1 MiB read window.
	straddle := cat(zeros(1<<20-len(imageMarker)-3), []byte(imageMarker+"v1.2.3-rc1 trailing"))
	// A marker with an empty token is skipped.
	emptyFirst := cat([]byte(imageMarker+"\n"), zeros(10), []byte(imageMarker+"real\x00"))
	tests := map[string]struct {
		path string
		want string
	}{
		"missing":     {filepath.Join(dir, "nope.img"), "none"},
		"empty":       {write("empty.img", nil), sum(nil)},
		"no marker":   {write("plain.img", plain), sum(plain)},
		"marker":      {write("m.img", []byte("x\nJSPLAN_IMAGE_ID=abc\ny")), "abc"},
		"at end":      {write("end.img", []byte("JSPLAN_IMAGE_ID=last")), "last"},
		"straddle":    {write("straddle.img", straddle), "v1.2.3-rc1"},
		"empty token": {write("emptytok.img", emptyFirst), "real"},
		"long token":  {write("long.img", []byte(imageMarker+strings.Repeat("x", 200))), strings.Repeat("x", maxTokenLen)},
	}
	for name, tc := range tests {
		got, err := imageID(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("%s: imageID = %q, %v; want %q", name, got, err, tc.want)
		}
	}

	// Only the first 64 MiB are searched: a marker beyond that is not seen
	// (a sparse file, so this costs no disk space).
	far := filepath.Join(dir, "far.img")
	f, err := os.Create(far)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(imageMarker+"late"), imageScanLimit+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := imageID(far); err != nil || !strings.HasPrefix(got, "sha256:") {
		t.Errorf("marker beyond 64 MiB: imageID = %q, %v; want a sha256 id", got, err)
	}
}

func TestRegistered(t *testing.T) {
	info, ok := drivers.Lookup("sim")
	if !ok {
		t.Fatal("sim is not registered")
	}
	dev := info.New()
	dev.(*Device).SSH = &SSH{Host: "127.0.0.1", Port: 2222}
	if err := drivers.CheckCapabilities(dev); err != nil {
		t.Errorf("sim: %v", err)
	}
	for _, c := range drivers.AllCapabilities {
		if !drivers.HasCapability(dev, c) {
			t.Errorf("sim with ssh does not list %s", c)
		}
	}
}

func TestSchema(t *testing.T) {
	info, _ := drivers.Lookup("sim")
	raw, err := json.Marshal(info.Schema)
	if err != nil {
		t.Fatal(err)
	}
	// Every object is closed and every property described.
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		if s["type"] == "object" && s["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties is not false", path)
		}
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			ps := p.(map[string]any)
			if d, _ := ps["description"].(string); d == "" {
				t.Errorf("%s.%s has no description", path, name)
			}
			walk(path+"."+name, ps)
		}
	}
	walk("sim", info.Schema)

	c := jsonschema.NewCompiler()
	if err := c.AddResource("sim.json", bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("sim.json")
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	check := func(cfg string) error {
		var v any
		if err := yaml.Unmarshal([]byte(cfg), &v); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		var j any
		_ = json.Unmarshal(b, &j)
		if j == nil {
			j = map[string]any{}
		}
		return sch.Validate(j)
	}
	full := `
hostname: dut
username: root
password: pw
prompt: '# '
boot-delay: 5ms
ssh: {host: 127.0.0.1, port: 2222, user: root, key-file: id, options: [A=b]}
faults: {boot-hang: false, kernel-panic: false, login-refused: false, power-fail: false, console-drop-after: 2s}
`
	if err := check(full); err != nil {
		t.Errorf("full config rejected by the schema: %v", err)
	}
	// The schema and the struct agree: the full config decodes strictly.
	decode(t, full)
	for _, bad := range []string{"hostnme: x\n", "ssh: {hots: x}\n", "faults: {boot-hang: yes please}\n", "ssh: {port: 0}\n"} {
		if err := check(bad); err == nil {
			t.Errorf("schema accepted %q", bad)
		}
	}
}
