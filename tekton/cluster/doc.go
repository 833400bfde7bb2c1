// Package cluster runs a real one-node Kubernetes cluster for jsplan's tests.
package cluster
