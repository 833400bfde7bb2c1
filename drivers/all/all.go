// Package all links every driver of jsplan into a program:
//
//	import _ "github.com/jsplan/jsplan/drivers/all"
package all

import (
	_ "github.com/jsplan/jsplan/drivers/blockdev"
	_ "github.com/jsplan/jsplan/drivers/command"
	_ "github.com/jsplan/jsplan/drivers/dutlink"
	_ "github.com/jsplan/jsplan/drivers/qemu"
	_ "github.com/jsplan/jsplan/drivers/remote"
	_ "github.com/jsplan/jsplan/drivers/serial"
	_ "github.com/jsplan/jsplan/drivers/sim"
)
