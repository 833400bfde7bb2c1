//go:build tools

// Package tektonbin pins the Tekton Pipelines release the test cluster runs
// (its controller, resolvers and the images its pods use), built from
// tektoncd/pipeline's own requirements: a module of its own, because
// `go install ...@version` needs the proxy's version list, which is not
// served here, and Tekton's dependencies (knative, an older client-go) must
// not mix with Kubernetes v1.37's in the cluster module.
package tektonbin

import (
	_ "github.com/tektoncd/pipeline/cmd/controller"
	_ "github.com/tektoncd/pipeline/cmd/entrypoint"
	_ "github.com/tektoncd/pipeline/cmd/nop"
	_ "github.com/tektoncd/pipeline/cmd/resolvers"
	_ "github.com/tektoncd/pipeline/cmd/sidecarlogresults"
	_ "github.com/tektoncd/pipeline/cmd/workingdirinit"
)
