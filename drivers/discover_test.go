package drivers

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestInventorySnippet(t *testing.T) {
	found := []Found{
		{Driver: "serial", ID: "usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0", Description: "serial port /dev/ttyUSB0", Config: map[string]any{"port": "usb-FTDI_FT232R_USB_UART_A10K1ABC-if00-port0"}},
		{Driver: "dutlink", ID: "e6058905", Description: "DUTLink harness, firmware 0.08,\ncontrol port /dev/ttyACM0", Config: map[string]any{"serial-number": "e6058905"}},
		{Driver: "dutlink", ID: "E6058905", Description: "", Config: map[string]any{"serial-number": "E6058905", "reply-timeout": "3s"}},
		{Driver: "blockdev", ID: "usb-Generic_SD-0:0", Config: nil},
	}
	out := InventorySnippet(found)
	var inv struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Boards     []struct {
			Name    string                    `yaml:"name"`
			Drivers map[string]map[string]any `yaml:"drivers"`
		} `yaml:"boards"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(out)))
	dec.KnownFields(true)
	if err := dec.Decode(&inv); err != nil {
		t.Fatalf("snippet does not parse: %v\n%s", err, out)
	}
	if inv.APIVersion != "jsplan.dev/v1" || inv.Kind != "Boards" || len(inv.Boards) != 4 {
		t.Fatalf("snippet:\n%s", out)
	}
	names := []string{}
	for _, b := range inv.Boards {
		names = append(names, b.Name)
	}
	want := "blockdev-usb-generic-sd-0-0,dutlink-e6058905,dutlink-e6058905-2,serial-usb-ftdi-ft232r-usb-uart-a10k1abc-if00-port0"
	if got := strings.Join(names, ","); got != want {
		t.Errorf("names %s, want %s", got, want)
	}
	if inv.Boards[1].Drivers["dutlink"]["serial-number"] != "E6058905" {
		// sorted by ID: "E6058905" < "e6058905"
		t.Errorf("order: %+v", inv.Boards)
	}
	if v := inv.Boards[2].Drivers["dutlink"]["serial-number"]; v != "e6058905" {
		t.Errorf("config value %v", v)
	}
	if !strings.Contains(string(out), "# DUTLink harness, firmware 0.08, control port /dev/ttyACM0\n") {
		t.Errorf("description comment missing:\n%s", out)
	}
	if string(InventorySnippet(found)) != string(out) {
		t.Error("output not stable")
	}
	empty := string(InventorySnippet(nil))
	if !strings.Contains(empty, "boards: []") || !strings.Contains(empty, "No devices found") {
		t.Errorf("empty snippet:\n%s", empty)
	}
	if n := boardName(Found{Driver: "x", ID: strings.Repeat("a", 100)}); len(n) != 63 {
		t.Errorf("long name %q", n)
	}
}
