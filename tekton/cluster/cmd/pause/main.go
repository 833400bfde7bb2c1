// Command pause is the pod sandbox ("pause") container of the test cluster:
// it holds a pod's namespaces until it is told to stop. It is built here and
// imported into containerd because the cluster has no registry to pull
// registry.k8s.io/pause from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
