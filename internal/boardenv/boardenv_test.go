package boardenv

import "testing"

func TestName(t *testing.T) {
	for role, want := range map[string]string{
		"dut":      "JSPLAN_BOARD_DUT",
		"host-2":   "JSPLAN_BOARD_HOST_2",
		"rx.side":  "JSPLAN_BOARD_RX_SIDE",
		"émetteur": "JSPLAN_BOARD__METTEUR",
		"":         "JSPLAN_BOARD_",
	} {
		if got := Name(Board, role); got != want {
			t.Errorf("Name(Board, %q) = %q, want %q", role, got, want)
		}
	}
	if got := Name(Resource, "bus"); got != "JSPLAN_RESOURCE_BUS" {
		t.Errorf("Name(Resource, bus) = %q", got)
	}
}
