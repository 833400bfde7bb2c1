// Package image holds image.sh, which builds jsplan's container images from
// their Containerfiles offline with podman (local Debian bases made with
// mmdebstrap, the project's own container storage under ~/.cache/jsplan/containers)
// and exports them as OCI archives; test-image.sh, which runs the Task's image
// as the jsplan Tekton Task runs it; and the test that keeps the image's
// reference the same in the Makefile, the Containerfile, the Tekton resources
// and the READMEs.
package image
