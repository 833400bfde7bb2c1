package driver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/jsplan/jsplan/internal/shorten"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	resourceapi "k8s.io/api/resource/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	// Every driver of jsplan, so that the inventory is checked exactly as
	// `jsplan validate` and `jsplan apply` check it.
	_ "github.com/jsplan/jsplan/drivers/all"
	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/diag"
)

// LoadInventory reads a Boards inventory with jsplan's own loader: a broken
// inventory is reported as jsplan reports it (file:line:col, every error).
func LoadInventory(path string) (*engine.Inventory, error) {
	l := engine.NewLoader(engine.Options{Mode: engine.ModeValidate})
	inv := &engine.Inventory{}
	l.LoadBoards(path, inv)
	if ds := l.Diagnostics(); ds.HasErrors() {
		var b bytes.Buffer
		diag.WriteText(&b, ds, l.Sources())
		return nil, fmt.Errorf("invalid inventory %s:\n%s", path, strings.TrimRight(b.String(), "\n"))
	}
	return inv, nil
}

// Attribute names the driver itself sets; a label with one of these names
// is not published (the board's own value wins).
const (
	attrName         = "name"
	attrCapabilities = "capabilities"
	attrDrivers      = "drivers"
	// attrResource marks a shared resource's device; its value is the
	// resource's kind. Boards never carry it.
	attrResource = "resource"
	capPrefix    = "cap_"
	driverPrefix = "driver_"
	// maxAttributes is the API's limit of attributes and capacities per device.
	maxAttributes = 32
	// maxStringLen is the API's limit of a string attribute, in bytes.
	maxStringLen = 64
	// MaxSliceDevices is how many devices the driver puts in one
	// ResourceSlice: the API allows 128, but only 64 when any device of
	// the slice has a taint, and an unhealthy board is tainted.
	MaxSliceDevices = 64
)

var (
	cIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	notIdent    = regexp.MustCompile(`[^A-Za-z0-9_]`)
)

// AttributeName is the device attribute a board label is published under:
// the label's key with every character outside [A-Za-z0-9_] turned into
// "_" (attribute names are C identifiers of at most 32 characters), so
// `board-rev` is `device.attributes["jsplan.dev"].board_rev` in CEL.
func AttributeName(label string) (string, bool) {
	n := notIdent.ReplaceAllString(label, "_")
	if n != "" && n[0] >= '0' && n[0] <= '9' {
		n = "_" + n
	}
	return n, cIdentifier.MatchString(n) && len(n) <= 32
}

// DeviceName is the board's device name in the ResourceSlice: the board name
// when it is a DNS label, else a DNS label made from it plus a short hash
// (the attribute "name" always carries the board's own name).
func DeviceName(board string) string {
	if dnsLabel.MatchString(board) && len(board) <= 63 {
		return board
	}
	sum := sha256.Sum256([]byte(board))
	s := strings.Trim(regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(board), "-"), "-")
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "-")
	}
	if s == "" {
		s = "board"
	}
	return s + "-" + hex.EncodeToString(sum[:])[:8]
}

// Health is what the last check said of a board.
type Health struct {
	// Healthy is false when the board failed its check.
	Healthy bool
	// Reason says why, for the taint's value and the log.
	Reason string
}

// UnhealthyTaintKey is the device taint an unhealthy board carries.
const UnhealthyTaintKey = "jsplan.dev/unhealthy"

// Devices turns an inventory into one device per board. Boards in unhealthy
// are tainted NoSchedule when taint is true and left out when it is false.
// Labels that cannot be attributes are returned as warnings.
func Devices(inv *engine.Inventory, unhealthy map[string]Health, taint bool) ([]resourceapi.Device, []string) {
	var out []resourceapi.Device
	var warnings []string
	for _, b := range inv.Boards {
		h, bad := unhealthy[b.Name]
		bad = bad && !h.Healthy
		if bad && !taint {
			continue
		}
		attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			attrName: {StringValue: ptr.To(clip(b.Name))},
		}
		var caps []string
		for _, c := range b.Capabilities() {
			caps = append(caps, string(c))
			attrs[resourceapi.QualifiedName(capPrefix+string(c))] = resourceapi.DeviceAttribute{BoolValue: ptr.To(true)}
		}
		attrs[attrCapabilities] = resourceapi.DeviceAttribute{StringValue: ptr.To(clip(strings.Join(caps, ",")))}
		drv := b.DriverNames()
		attrs[attrDrivers] = resourceapi.DeviceAttribute{StringValue: ptr.To(clip(strings.Join(drv, ",")))}
		for _, d := range drv {
			if n, ok := AttributeName(driverPrefix + d); ok {
				attrs[resourceapi.QualifiedName(n)] = resourceapi.DeviceAttribute{BoolValue: ptr.To(true)}
			}
		}
		// A board wired to a shared resource carries the resource's name
		// under the resource's kind (a board on can0, of kind canbus, has
		// canbus=can0), as the resource's own device does: a claim's
		// matchAttribute on it picks boards wired together and their bus.
		for _, rn := range b.Resources {
			r := inv.Resource(rn)
			if r == nil || r.Kind == "" {
				continue // a resource without a kind is matched by nothing
			}
			n, ok := AttributeName(r.Kind)
			switch {
			case !ok || reserved(n):
				warnings = append(warnings, fmt.Sprintf("board %s: resource kind %q cannot be a device attribute", b.Name, r.Kind))
				continue
			case attrs[resourceapi.QualifiedName(n)].StringValue != nil:
				warnings = append(warnings, fmt.Sprintf("board %s: is wired to more than one resource of kind %q; only %s is published", b.Name, r.Kind, *attrs[resourceapi.QualifiedName(n)].StringValue))
				continue
			}
			attrs[resourceapi.QualifiedName(n)] = resourceapi.DeviceAttribute{StringValue: ptr.To(clip(r.Name))}
		}
		for _, k := range slices.Sorted(maps.Keys(b.Labels)) {
			n, ok := AttributeName(k)
			switch {
			case !ok:
				warnings = append(warnings, fmt.Sprintf("board %s: label %q cannot be a device attribute (at most 32 characters)", b.Name, k))
				continue
			case reserved(n):
				warnings = append(warnings, fmt.Sprintf("board %s: label %q collides with the attribute %q the driver sets; not published", b.Name, k, n))
				continue
			case len(attrs) >= maxAttributes:
				warnings = append(warnings, fmt.Sprintf("board %s: label %q not published: a device has at most %d attributes", b.Name, k, maxAttributes))
				continue
			}
			if _, dup := attrs[resourceapi.QualifiedName(n)]; dup {
				warnings = append(warnings, fmt.Sprintf("board %s: label %q maps to attribute %q, which another label or a resource kind already has", b.Name, k, n))
				continue
			}
			v := b.Labels[k]
			if len(v) > maxStringLen {
				warnings = append(warnings, fmt.Sprintf("board %s: label %q cut to %d bytes", b.Name, k, len(clip(v))))
			}
			attrs[resourceapi.QualifiedName(n)] = resourceapi.DeviceAttribute{StringValue: ptr.To(clip(v))}
		}
		dev := resourceapi.Device{Name: DeviceName(b.Name), Attributes: attrs}
		if bad {
			dev.Taints = []resourceapi.DeviceTaint{{
				Key:    UnhealthyTaintKey,
				Value:  taintValue(h.Reason),
				Effect: resourceapi.DeviceTaintEffectNoSchedule,
			}}
		}
		out = append(out, dev)
	}
	res, w := resourceDevices(inv, out)
	return append(out, res...), append(warnings, w...)
}

// ShareCapacity is the consumable capacity of a shared resource's device:
// a claim asks for `capacity: {requests: {share: N}}` (1 when
// it names none), and the scheduler admits claims while their shares fit
// the resource's capacity.
const ShareCapacity = "share"

// ResourceDeviceName is the device name of a shared resource: "resource-"
// and its name (a board cannot take it: DeviceName of a board with that
// very name is reported and the resource left out).
func ResourceDeviceName(resource string) string { return DeviceName("resource-" + resource) }

// resourceDevices publishes each shared resource of the inventory as one
// device that several claims may hold at once (allowMultipleAllocations),
// each taking shares of its capacity.
func resourceDevices(inv *engine.Inventory, boards []resourceapi.Device) ([]resourceapi.Device, []string) {
	taken := map[string]bool{}
	for _, d := range boards {
		taken[d.Name] = true
	}
	var out []resourceapi.Device
	var warnings []string
	for _, r := range inv.Resources {
		name := ResourceDeviceName(r.Name)
		if taken[name] {
			warnings = append(warnings, fmt.Sprintf("resource %s: its device name %q is a board's; not published", r.Name, name))
			continue
		}
		attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			attrName:     {StringValue: ptr.To(clip(r.Name))},
			attrResource: {StringValue: ptr.To(clip(r.Kind))},
		}
		if n, ok := AttributeName(r.Kind); ok && !reserved(n) {
			attrs[resourceapi.QualifiedName(n)] = resourceapi.DeviceAttribute{StringValue: ptr.To(clip(r.Name))}
		} else if r.Kind != "" {
			warnings = append(warnings, fmt.Sprintf("resource %s: kind %q cannot be a device attribute", r.Name, r.Kind))
		}
		capacity := max(r.Capacity, 1)
		out = append(out, resourceapi.Device{
			Name:                     name,
			Attributes:               attrs,
			AllowMultipleAllocations: ptr.To(true),
			Capacity: map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
				ShareCapacity: {
					Value: *apiresource.NewQuantity(int64(capacity), apiresource.DecimalSI),
					RequestPolicy: &resourceapi.CapacityRequestPolicy{
						Default: apiresource.NewQuantity(1, apiresource.DecimalSI),
						ValidRange: &resourceapi.CapacityRequestPolicyRange{
							Min:  apiresource.NewQuantity(1, apiresource.DecimalSI),
							Max:  apiresource.NewQuantity(int64(capacity), apiresource.DecimalSI),
							Step: apiresource.NewQuantity(1, apiresource.DecimalSI),
						},
					},
				},
			},
		})
		taken[name] = true
	}
	return out, warnings
}

func reserved(n string) bool {
	return n == attrName || n == attrCapabilities || n == attrDrivers || n == attrResource ||
		strings.HasPrefix(n, capPrefix) || strings.HasPrefix(n, driverPrefix)
}

// clip cuts s to the API's limit of a string attribute (64 bytes) at a
// character boundary: a cut inside a UTF-8 sequence would reach the API
// server as U+FFFD, longer than the limit, and the whole slice (every board
// of the node) would be refused.
func clip(s string) string {
	s, _ = shorten.Cut(strings.ToValidUTF8(s, "\uFFFD"), maxStringLen)
	return s
}

var notLabelValue = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// taintValue squeezes a reason into a label value (63 characters of
// [A-Za-z0-9._-], starting and ending alphanumeric).
func taintValue(reason string) string {
	v := strings.Trim(notLabelValue.ReplaceAllString(reason, "-"), "-._")
	if len(v) > 63 {
		v = strings.TrimRight(v[:63], "-._")
	}
	return v
}

// BoardsDocument is a Boards inventory holding only the given boards, for
// the container that runs on them, and of each board only what a run reads:
//
//   - name, labels and vars (a plan selects the board by them and reads
//     ${{ board.vars.* }});
//   - for each capability the board has, which driver serves it;
//   - the configuration of those serving drivers, copied whole (a run opens
//     them: the console port, the power commands and their env, the sim's
//     login), with aliases expanded.
//
// Left out: the node's other boards, every comment, and drivers that serve
// none of the board's capabilities (their configuration, credentials
// included, is of no use to the run). Relative paths in a driver's
// configuration are not rewritten: give the node's inventory absolute paths.
func BoardsDocument(boards []*engine.BoardSpec, shares []Share) ([]byte, error) {
	return boardsDocument(boards, shares, nil)
}

// boardsDocument is BoardsDocument where the boards named in remote are
// served by the claim's agent: their drivers are one `remote` driver on
// the agent's socket in ContainerLeaseDir, with the lease token in the
// file remote names there, and no configuration of the hardware at all.
func boardsDocument(boards []*engine.BoardSpec, shares []Share, remote map[string]string) ([]byte, error) {
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	var buf bytes.Buffer
	held := map[string]bool{}
	for _, s := range shares {
		held[s.Resource] = true
	}
	for _, b := range boards {
		bn := runBoardNode(b, held)
		if tok, ok := remote[b.Name]; ok {
			bn = remoteBoardNode(b, held, tok)
		}
		seq.Content = append(seq.Content, bn)
		fmt.Fprintf(&buf, "# Board %s, for one ResourceClaim (written by the jsplan DRA driver).\n", b.Name)
	}
	out := mapping("apiVersion", scalar("jsplan.dev/v1"), "kind", scalar("Boards"))
	if len(shares) > 0 {
		// The claim's shares of shared resources, each with the capacity
		// the claim holds: the run's own locks admit no more than that.
		res := &yaml.Node{Kind: yaml.SequenceNode}
		for _, s := range shares {
			res.Content = append(res.Content, mapping("name", scalar(s.Resource), "kind", scalar(s.Kind),
				"capacity", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(max(s.Count, 1))}))
		}
		out.Content = append(out.Content, scalar("resources"), res)
	}
	out.Content = append(out.Content, scalar("boards"), seq)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Share is a claim's share of a shared resource.
type Share struct {
	Resource, Kind string
	Count          int
}

// runBoardNode is board b as BoardsDocument writes it, with the resources
// it is wired to among those the claim holds.
func runBoardNode(b *engine.BoardSpec, held map[string]bool) *yaml.Node {
	bn := mapping("name", scalar(b.Name))
	if len(b.Labels) > 0 {
		bn.Content = append(bn.Content, scalar("labels"), stringMap(b.Labels))
	}
	if len(b.Vars) > 0 {
		bn.Content = append(bn.Content, scalar("vars"), stringMap(b.Vars))
	}
	serving := map[string]bool{}
	for _, c := range b.Capabilities() {
		drv := b.Serve[c]
		serving[drv] = true
		bn.Content = append(bn.Content, scalar(string(c)), scalar(drv))
	}
	var wired []*yaml.Node
	for _, r := range b.Resources {
		if held[r] {
			wired = append(wired, scalar(r))
		}
	}
	if len(wired) > 0 {
		bn.Content = append(bn.Content, scalar("resources"), &yaml.Node{Kind: yaml.SequenceNode, Content: wired})
	}
	drvs := mapping()
	for _, name := range b.DriverNames() {
		if serving[name] {
			drvs.Content = append(drvs.Content, scalar(name), plain(b.Drivers[name]))
		}
	}
	bn.Content = append(bn.Content, scalar("drivers"), drvs)
	return bn
}

// remoteBoardNode is board b served by the claim's agent: what plans read
// (name, labels, vars, wired resources) and a remote driver serving every
// capability the board has.
func remoteBoardNode(b *engine.BoardSpec, held map[string]bool, token string) *yaml.Node {
	bn := runBoardNode(b, held)
	// Keep name, labels, vars and resources; replace the rest.
	var kept []*yaml.Node
	for i := 0; i+1 < len(bn.Content); i += 2 {
		switch bn.Content[i].Value {
		case "name", "labels", "vars", "resources":
			kept = append(kept, bn.Content[i], bn.Content[i+1])
		}
	}
	bn.Content = kept
	caps := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, c := range b.Capabilities() {
		bn.Content = append(bn.Content, scalar(string(c)), scalar("remote"))
		caps.Content = append(caps.Content, scalar(string(c)))
	}
	cfg := mapping(
		"address", scalar("unix:"+ContainerLeaseDir+"/"+agentSocket),
		"board", scalar(b.Name),
		"token-file", scalar(ContainerLeaseDir+"/"+token),
		"capabilities", caps,
	)
	bn.Content = append(bn.Content, scalar("drivers"), mapping("remote", cfg))
	return bn
}

func scalar(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
}

// mapping is a mapping node of alternating keys (strings) and values.
func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Content = append(n.Content, scalar(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return n
}

func stringMap(m map[string]string) *yaml.Node {
	n := mapping()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		n.Content = append(n.Content, scalar(k), scalar(m[k]))
	}
	return n
}

// plain is a deep copy of n without comments, anchors or aliases.
func plain(n *yaml.Node) *yaml.Node {
	if n == nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	if n.Kind == yaml.AliasNode {
		return plain(n.Alias)
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return plain(n.Content[0])
	}
	c := &yaml.Node{Kind: n.Kind, Style: n.Style &^ (yaml.TaggedStyle), Tag: n.Tag, Value: n.Value}
	for _, child := range n.Content {
		c.Content = append(c.Content, plain(child))
	}
	return c
}
