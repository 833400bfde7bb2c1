package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// TektonFeatureFlags are the values of Tekton's feature-flags ConfigMap an
// operator sets for jsplan's DRA route (README: Running in a cluster):
// no affinity assistant (it would pin every task to the node its own pod
// landed on, which knows nothing of boards), and security contexts on
// Tekton's own init containers so that run pods pass Pod Security
// "restricted".
var TektonFeatureFlags = map[string]string{
	"coschedule":           "disabled",
	"set-security-context": "true",
}

// InstallTekton installs Tekton Pipelines from its release configuration
// (config/ of the tektoncd/pipeline module) the way its release.yaml does,
// with the images built here in place of ko:// references: the namespace,
// RBAC, CRDs, ConfigMaps, and the controller's and resolvers' Deployments.
// Left out: the admission and conversion webhook (the API server could not
// reach its Service without kube-proxy), so the CRDs convert nothing (v1
// is stored and used) and objects are defaulted by the controller only.
func InstallTekton(ctx context.Context, n *Node, configDir string) error {
	out := n.path("tekton")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var files []string
	for _, g := range []string{"100-namespace/*.yaml", "200-*.yaml", "201-*.yaml", "300-crds/*.yaml", "config-*.yaml", "controller.yaml",
		"resolvers/1*.yaml", "resolvers/2*.yaml", "resolvers/*-config.yaml", "resolvers/config-*.yaml", "resolvers/resolvers-deployment.yaml"} {
		m, err := filepath.Glob(filepath.Join(configDir, g))
		if err != nil {
			return err
		}
		files = append(files, m...)
	}
	ko := regexp.MustCompile(`ko://github.com/tektoncd/pipeline/cmd/([a-z]+)`)
	shell := regexp.MustCompile(`cgr.dev/chainguard/busybox@sha256:[0-9a-f]+`)
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(configDir, f)
		text := ko.ReplaceAllStringFunc(string(b), func(s string) string { return TektonImage(ko.FindStringSubmatch(s)[1]) })
		text = shell.ReplaceAllString(text, ShellImage)
		switch {
		case strings.HasPrefix(rel, "300-crds/"):
			if text, err = noConversion(text); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		case rel == "config-feature-flags.yaml":
			if text, err = setData(text, TektonFeatureFlags); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		case rel == "resolvers/resolvers-deployment.yaml":
			// The image holds only the binary (no tini).
			text = strings.Replace(text, "- /sbin/tini\n        - --\n", "", 1)
		}
		name := filepath.Join(out, fmt.Sprintf("%03d-%s", i, strings.ReplaceAll(rel, "/", "-")))
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if _, err := n.Kubectl(ctx, "apply", "--server-side", "-f", out); err != nil {
		return err
	}
	if _, err := n.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "pipelineruns.tekton.dev", "taskruns.tekton.dev", "tasks.tekton.dev", "pipelines.tekton.dev"); err != nil {
		return err
	}
	for _, d := range []struct{ ns, name string }{{"tekton-pipelines", "tekton-pipelines-controller"}, {"tekton-pipelines-resolvers", "tekton-pipelines-remote-resolvers"}} {
		if _, err := n.Kubectl(ctx, "-n", d.ns, "rollout", "status", "deployment/"+d.name, "--timeout=180s"); err != nil {
			logs, _ := n.Kubectl(ctx, "-n", d.ns, "logs", "deployment/"+d.name, "--tail=40")
			return fmt.Errorf("%w\n%s\nlogs:\n%s", err, n.Describe(ctx, d.ns, "pods"), logs)
		}
	}
	n.logf("Tekton %s running", TektonVersion)
	return nil
}

// Describe returns `kubectl describe` of a kind in a namespace, for
// failure messages.
func (n *Node) Describe(ctx context.Context, ns, what string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	out, err := n.Kubectl(ctx, append([]string{"-n", ns, "describe"}, strings.Fields(what)...)...)
	if err != nil {
		return err.Error()
	}
	return out
}

// noConversion turns a CRD's webhook conversion off.
func noConversion(doc string) (string, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		return "", err
	}
	spec, _ := m["spec"].(map[string]any)
	if spec == nil {
		return doc, nil
	}
	spec["conversion"] = map[string]any{"strategy": "None"}
	b, err := yaml.Marshal(m)
	return string(b), err
}

// setData sets keys of a ConfigMap's data.
func setData(doc string, kv map[string]string) (string, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		return "", err
	}
	data, _ := m["data"].(map[string]any)
	if data == nil {
		data = map[string]any{}
		m["data"] = data
	}
	for k, v := range kv {
		data[k] = v
	}
	b, err := yaml.Marshal(m)
	return string(b), err
}
