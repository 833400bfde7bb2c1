// Package driver is jsplan's DRA kubelet plugin: it publishes the boards of
// a node's jsplan inventory as devices of a ResourceSlice, keeps the slice
// current as the inventory and the boards' health change, and prepares an
// allocated board for a container as a CDI device: JSPLAN_BOARD, an
// inventory holding only that board, the board's device nodes and the host's
// lock directory, with nothing privileged.
package driver
