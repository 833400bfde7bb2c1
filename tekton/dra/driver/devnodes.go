package driver

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jsplan/jsplan/drivers/serial"
	"github.com/jsplan/jsplan/engine"
)

// DeviceNode is a device node a board's drivers open: Path is where the
// container sees it (the path the inventory names), HostPath the node it
// resolves to, as the driver sees it (the host's path in the DaemonSet,
// which mounts the host's /dev at /dev).
type DeviceNode struct {
	Path     string
	HostPath string
}

// Host is the view of the node's /dev and /sys the driver resolves device
// nodes in. Root is "/" in the DaemonSet; tests point it at a directory.
type Host struct {
	Root string
}

func (h Host) join(p string) string { return filepath.Join(h.Root, p) }

// strip turns a host path under Root back into the path on the node.
func (h Host) strip(p string) string {
	if h.Root == "" || h.Root == "/" {
		return p
	}
	rel, err := filepath.Rel(h.Root, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	return "/" + rel
}

// DeviceNodes lists the device nodes of board b that exist now, and the
// ones its configuration names that do not (yet) exist.
//
// It reads the drivers' configurations, not their code: every string that is
// a path under /dev; the value of a "port" or "console-port" key that is a
// bare name (a /dev/serial/by-id name, as the serial and dutlink drivers take
// it); and for a "serial-number" key, the USB device with that serial number
// in /sys/bus/usb/devices (its /dev/bus/usb node and its ttys). Symbolic
// links (/dev/serial/by-id, /dev/disk/by-id) are kept as the container path
// and resolved for the host path, since a container gets a device node, not
// a link.
func (h Host) DeviceNodes(b *engine.BoardSpec) (nodes []DeviceNode, missing []Missing) {
	seen := map[string]bool{}
	add := func(p string, fixed bool) {
		if seen[p] {
			return
		}
		seen[p] = true
		target, err := filepath.EvalSymlinks(h.join(p))
		if err != nil {
			missing = append(missing, Missing{Path: p, Fixed: fixed})
			return
		}
		fi, err := os.Stat(target)
		if err != nil || fi.Mode()&os.ModeDevice == 0 {
			missing = append(missing, Missing{Path: p, Fixed: fixed})
			return
		}
		nodes = append(nodes, DeviceNode{Path: p, HostPath: target})
		if t := h.strip(target); t != p && strings.HasPrefix(t, "/dev/") && !seen[t] {
			seen[t] = true
			nodes = append(nodes, DeviceNode{Path: t, HostPath: target})
		}
	}
	for _, name := range b.DriverNames() {
		walkStrings(b.Drivers[name], "", func(key, v string) {
			switch {
			case (key == "port" || key == "console-port") && v != "":
				add(filepath.Clean(serial.ResolvePort(v, serial.ByIDDir)), true)
			case strings.HasPrefix(v, "/dev/"):
				add(filepath.Clean(v), strings.HasPrefix(v, "/dev/serial/"))
			case key == "serial-number" && v != "":
				found := h.usbNodes(v)
				if len(found) == 0 {
					missing = append(missing, Missing{Path: "USB device with serial number " + v, Fixed: true})
				}
				for _, p := range found {
					add(p, true)
				}
			}
		})
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Path < nodes[j].Path })
	sort.Slice(missing, func(i, j int) bool { return missing[i].Path < missing[j].Path })
	return nodes, missing
}

// Missing is a device node a board's configuration names that is not there.
// Fixed ones (serial consoles, USB devices found by serial number) are
// hardware that should always be attached: their absence makes the board
// unhealthy. Others (a /dev/disk/by-id path) may appear only while a
// storage mux shows the card to the host.
type Missing struct {
	Path  string
	Fixed bool
}

// walkStrings calls fn for every scalar string under n with the key it is
// the value of (the nearest mapping key for sequence items).
func walkStrings(n *yaml.Node, key string, fn func(key, value string)) {
	if n == nil {
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		fn(key, n.Value)
	case yaml.SequenceNode:
		for _, c := range n.Content {
			walkStrings(c, key, fn)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkStrings(n.Content[i+1], n.Content[i].Value, fn)
		}
	case yaml.AliasNode:
		walkStrings(n.Alias, key, fn)
	}
}

// usbNodes finds the USB devices whose serial number is sn and returns
// their /dev/bus/usb node and the ttys of their interfaces.
func (h Host) usbNodes(sn string) []string {
	var out []string
	dirs, _ := filepath.Glob(h.join("/sys/bus/usb/devices/*"))
	for _, d := range dirs {
		if strings.Contains(filepath.Base(d), ":") || readAttr(d, "serial") != sn {
			continue
		}
		bus, dev := readAttr(d, "busnum"), readAttr(d, "devnum")
		var b, n int
		if _, err := fmt.Sscan(bus, &b); err == nil {
			if _, err := fmt.Sscan(dev, &n); err == nil {
				out = append(out, fmt.Sprintf("/dev/bus/usb/%03d/%03d", b, n))
			}
		}
		ttys, _ := filepath.Glob(filepath.Join(d, filepath.Base(d)+":*", "tty", "*"))
		more, _ := filepath.Glob(filepath.Join(d, filepath.Base(d)+":*", "tty*"))
		for _, t := range append(ttys, more...) {
			if name := filepath.Base(t); strings.HasPrefix(name, "tty") && name != "tty" {
				out = append(out, "/dev/"+name)
			}
		}
	}
	return out
}

func readAttr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
