// Package boardenv names the environment variables that tell a jsplan
// command which board a role of its plan runs on. The DRA driver sets them
// in a claim's container (one per request of the claim) and the CLI reads
// them: both name them here.
package boardenv

import "strings"

// Prefixes of the variables.
const (
	// Board prefixes the variable naming a role's board (JSPLAN_BOARD_DUT).
	Board = "JSPLAN_BOARD_"
	// Resource prefixes the variable naming a request's shared resource.
	Resource = "JSPLAN_RESOURCE_"
)

// Name is the variable for role (a request's name): prefix and the role in
// upper case, characters outside [A-Z0-9] as "_" (role "dut" with Board is
// JSPLAN_BOARD_DUT).
func Name(prefix, role string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToUpper(role) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
