// Package deploy holds the Kubernetes manifests of the jsplan DRA driver;
// its test validates them with Kubernetes' own validation code.
package deploy
