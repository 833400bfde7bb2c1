//go:build tools

// The Kubernetes node components the cluster test builds from this module's
// requirements (k8s.io/kubernetes with its staging modules replaced by their
// published versions, see go.mod).
package cluster

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
