// Package tests checks the Tekton resources under tekton/ without a cluster,
// with Tekton's own Go code.
//
// The tests decode every Task, Pipeline, TaskRun and PipelineRun strictly into
// Tekton's v1 types, set defaults and validate them as the admission webhook
// would, cross-check runs against the Tasks and Pipelines they name, and
// emulate TaskRuns of the jsplan Task: the reconciler's substitutions, then
// each step's script run on this machine with the pod's mounts stood in for by
// temporary directories and a freshly built jsplan on PATH.
package tests
