// Command jsplan-lab is jsplan built the way a lab builds its own: the
// stock step types and drivers, plus the lab's step type (expect-power,
// package expectpower) and driver (relay, package relay). Each registers
// itself when its package is imported, as database/sql drivers and Caddy
// modules do; validation, rendering, the schema and runs then know them
// like the stock ones. See README.md.
package main

import (
	"github.com/jsplan/jsplan/cmd"

	_ "github.com/jsplan/jsplan/drivers/all"
	_ "github.com/jsplan/jsplan/steps"

	_ "github.com/jsplan/jsplan/plans/examples/custom-build/expectpower"
	_ "github.com/jsplan/jsplan/plans/examples/custom-build/relay"
)

func main() { cmd.Main() }
