// Command jsplan validates and runs declarative hardware-in-the-loop test
// plans on boards from an inventory: the stock step types and drivers.
//
// A lab that adds its own builds its own command the same way (see
// plans/examples/custom-build).
package main

import (
	"github.com/jsplan/jsplan/cmd"

	_ "github.com/jsplan/jsplan/drivers/all"
	_ "github.com/jsplan/jsplan/steps"
)

func main() { cmd.Main() }
