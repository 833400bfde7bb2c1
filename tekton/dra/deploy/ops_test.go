package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	celtypes "github.com/google/cel-go/common/types"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	"k8s.io/kubernetes/pkg/apis/resource"
	resourcevalidation "k8s.io/kubernetes/pkg/apis/resource/validation"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/jsplan/jsplan/tekton/dra/driver"
)

// docs returns the documents of a manifest file whose kind is kind.
func docs(t *testing.T, file, kind string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, doc := range docSeparator.Split(string(b), -1) {
		var tm struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &tm); err == nil && tm.Kind == kind {
			out = append(out, []byte(doc))
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no %s", file, kind)
	}
	return out
}

func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(docs(t, "daemonset.yaml", "DaemonSet")[0], &ds); err != nil {
		t.Fatal(err)
	}
	return &ds
}

// restricted evaluates a pod against Pod Security "restricted" (latest), with
// the checks of the admission plugin itself.
func restricted(t *testing.T, meta *metav1.ObjectMeta, spec *corev1.PodSpec) policy.AggregateCheckResult {
	t.Helper()
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return policy.AggregateCheckResults(e.EvaluatePod(psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}, meta, spec))
}

// TestDaemonSetAsOperatorsRunIt: the driver's DaemonSet probes the driver
// through its sockets, runs on tainted nodes, updates with a new pod beside
// the old one (which the driver supports through its pod UID), uses the
// host network, keeps its state on the host, and is the only privileged pod.
func TestDaemonSetAsOperatorsRunIt(t *testing.T) {
	ds := daemonSet(t)
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != "ghcr.io/jsplan/jsplan-dra:v0.1.0" {
		t.Errorf("image %s", c.Image)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, []string{"jsplan-dra", "--probe"}) {
			t.Errorf("%s probe: %+v, want an exec of jsplan-dra --probe", name, p)
		}
	}
	tolerated := false
	for _, tol := range pod.Tolerations {
		tolerated = tolerated || tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}
	if !tolerated {
		t.Errorf("tolerations %+v: the driver must run on tainted board nodes", pod.Tolerations)
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil ||
		ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 1 || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("update strategy %+v, want a rolling update with maxSurge 1, maxUnavailable 0", ds.Spec.UpdateStrategy)
	}
	uid := false
	for _, e := range c.Env {
		uid = uid || e.Name == "POD_UID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.uid"
	}
	if !uid {
		t.Error("no POD_UID from the downward API: two driver pods on one node would share their sockets")
	}
	if !pod.HostNetwork {
		t.Error("hostNetwork is not set")
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if p, ok := hostPaths[m.Name]; ok && p == m.MountPath {
			mounted[p] = true
		}
	}
	for _, p := range []string{"/var/lib/kubelet/plugins/jsplan.dev", "/var/lib/kubelet/plugins_registry", "/var/run/cdi", "/var/lock/jsplan", "/var/lib/jsplan"} {
		if !mounted[p] {
			t.Errorf("%s is not a host path mounted at the same path", p)
		}
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the driver is expected to be privileged")
	}
	if r := restricted(t, &ds.Spec.Template.ObjectMeta, &pod); r.Allowed {
		t.Error("the privileged driver passes Pod Security restricted: the check below cannot fail")
	}
}

// TestRunPodsAreRestricted: the pods that run plans pass Pod Security
// "restricted": the sample pod of resourceclaimtemplate.yaml and a pod of
// the catalog Task's steps (with its volumes and the workspaces as
// emptyDirs).
func TestRunPodsAreRestricted(t *testing.T) {
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(docs(t, "resourceclaimtemplate.yaml", "Pod")[0], &pod); err != nil {
		t.Fatal(err)
	}
	if r := restricted(t, &pod.ObjectMeta, &pod.Spec); !r.Allowed {
		t.Errorf("resourceclaimtemplate.yaml's pod: %v: %v", r.ForbiddenReasons, r.ForbiddenDetails)
	}

	b, err := os.ReadFile(filepath.Join("..", "..", "task", "jsplan", "0.1", "jsplan.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var task struct {
		Spec struct {
			Volumes []corev1.Volume `json:"volumes"`
			Steps   []struct {
				Name            string                  `json:"name"`
				SecurityContext *corev1.SecurityContext `json:"securityContext"`
				VolumeMounts    []corev1.VolumeMount    `json:"volumeMounts"`
			} `json:"steps"`
			Workspaces []struct {
				Name string `json:"name"`
			} `json:"workspaces"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &task); err != nil {
		t.Fatal(err)
	}
	spec := corev1.PodSpec{Volumes: task.Spec.Volumes}
	for _, w := range task.Spec.Workspaces {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "ws-" + w.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	for _, s := range task.Spec.Steps {
		spec.Containers = append(spec.Containers, corev1.Container{Name: "step-" + s.Name, Image: "jsplan", SecurityContext: s.SecurityContext, VolumeMounts: s.VolumeMounts})
	}
	if len(spec.Containers) == 0 {
		t.Fatal("the Task has no steps")
	}
	if r := restricted(t, &metav1.ObjectMeta{}, &spec); !r.Allowed {
		t.Errorf("the Task's steps: %v: %v", r.ForbiddenReasons, r.ForbiddenDetails)
	}
}

// sliceErrors validates a node's ResourceSlice holding devs as the API
// server does, after the trip through JSON that the driver's request makes.
func sliceErrors(t *testing.T, devs []resourcev1.Device) []string {
	t.Helper()
	s := &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a-jsplan.dev-x"},
		Spec: resourcev1.ResourceSliceSpec{Driver: driver.DefaultDriverName, NodeName: ptr.To("node-a"),
			Pool: resourcev1.ResourcePool{Name: "node-a", ResourceSliceCount: 1}, Devices: devs},
	}
	wire, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got resourcev1.ResourceSlice
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	legacyscheme.Scheme.Default(&got)
	var in resource.ResourceSlice
	if err := legacyscheme.Scheme.Convert(&got, &in, nil); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range resourcevalidation.ValidateResourceSlice(&in) {
		out = append(out, e.Error())
	}
	return out
}

// TestNonASCIILabelsPassSliceValidation: boards whose labels and names are
// long non-ASCII strings are published in a slice the API server accepts,
// also with a tainted board among the most devices the driver puts in one
// slice; a value cut inside a character would not be, nor a tainted slice of
// more devices.
func TestNonASCIILabelsPassSliceValidation(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: jsplan.dev/v1\nkind: Boards\nboards:\n")
	for i := 0; i < driver.MaxSliceDevices; i++ {
		fmt.Fprintf(&b, "  - name: carte-%d\n    labels: {lieu: %q, owner: %q, note: %q}\n    drivers:\n      sim: {password: x}\n",
			i, "a"+strings.Repeat("é", 40), strings.Repeat("日本", 20), "ab"+strings.Repeat("🛠", 20))
	}
	inv := filepath.Join(t.TempDir(), "boards.yaml")
	if err := os.WriteFile(inv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	boards, err := driver.LoadInventory(inv)
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := driver.Devices(boards, map[string]driver.Health{"carte-3": {Reason: "console cannot open: «tty» absent"}}, true)
	if len(devs[3].Taints) != 1 {
		t.Fatalf("carte-3 not tainted: %+v", devs[3])
	}
	if errs := sliceErrors(t, devs); len(errs) != 0 {
		t.Errorf("the driver's slice is refused: %v", errs)
	}
	// What the API server does with a value cut inside a character.
	cut := devs[0].DeepCopy()
	cut.Name = "cut"
	cut.Attributes["lieu"] = resourcev1.DeviceAttribute{StringValue: ptr.To(("a" + strings.Repeat("é", 40))[:64])}
	if errs := sliceErrors(t, []resourcev1.Device{*cut}); len(errs) == 0 {
		t.Error("a value cut inside a character passes: the test above cannot fail")
	}
	extra := devs[1].DeepCopy()
	extra.Name = "one-more"
	if errs := sliceErrors(t, append(devs, *extra)); len(errs) == 0 {
		t.Errorf("a tainted slice of %d devices passes: MaxSliceDevices could be larger", len(devs)+1)
	}
}

// TestNodeScopedSlicePolicy evaluates the ValidatingAdmissionPolicy's CEL
// with Kubernetes' CEL environment: the driver's service account may write
// only the slices of the node its token names.
func TestNodeScopedSlicePolicy(t *testing.T) {
	var vap admissionregistrationv1.ValidatingAdmissionPolicy
	if err := yaml.UnmarshalStrict(docs(t, "validatingadmissionpolicy.yaml", "ValidatingAdmissionPolicy")[0], &vap); err != nil {
		t.Fatal(err)
	}
	var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
	if err := yaml.UnmarshalStrict(docs(t, "validatingadmissionpolicy.yaml", "ValidatingAdmissionPolicyBinding")[0], &binding); err != nil {
		t.Fatal(err)
	}
	if binding.Spec.PolicyName != vap.Name || !slices.Contains(binding.Spec.ValidationActions, admissionregistrationv1.Deny) {
		t.Fatalf("binding %+v does not deny with policy %s", binding.Spec, vap.Name)
	}
	env, err := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).NewExpressionsEnv().Extend(
		cel.Variable("request", cel.DynType), cel.Variable("object", cel.DynType), cel.Variable("oldObject", cel.DynType),
		cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		t.Fatal(err)
	}
	eval := func(expr string, act map[string]any) any {
		t.Helper()
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := prg.Eval(act)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v.Value()
	}
	// admit is what the policy says of a request: "" allowed, else the
	// denial's message.
	admit := func(user, tokenNode, op string, sliceNode *string) string {
		extra := map[string]any{}
		if tokenNode != "" {
			extra["authentication.kubernetes.io/node-name"] = []any{tokenNode}
		}
		slice := map[string]any{"spec": map[string]any{"driver": "jsplan.dev"}}
		if sliceNode != nil {
			slice["spec"].(map[string]any)["nodeName"] = *sliceNode
		}
		var object, oldObject any = slice, celtypes.NullValue
		if op == "DELETE" {
			object, oldObject = celtypes.NullValue, slice
		}
		vars := map[string]any{}
		act := map[string]any{"object": object, "oldObject": oldObject, "variables": vars,
			"request": map[string]any{"operation": op, "userInfo": map[string]any{"username": user, "extra": extra}}}
		for _, m := range vap.Spec.MatchConditions {
			if eval(m.Expression, act) != true {
				return ""
			}
		}
		for _, v := range vap.Spec.Variables {
			vars[v.Name] = eval(v.Expression, act)
		}
		for _, v := range vap.Spec.Validations {
			if eval(v.Expression, act) != true {
				if v.MessageExpression != "" {
					return fmt.Sprint(eval(v.MessageExpression, act))
				}
				return v.Message
			}
		}
		return ""
	}
	const sa = "system:serviceaccount:jsplan-dra:jsplan-dra"
	a, b := ptr.To("node-a"), ptr.To("node-b")
	for _, tc := range []struct {
		user, tokenNode, op string
		sliceNode           *string
		denied              string
	}{
		{sa, "node-a", "CREATE", a, ""},
		{sa, "node-a", "UPDATE", a, ""},
		{sa, "node-a", "DELETE", a, ""},
		{sa, "node-a", "CREATE", b, "may only write its own node's ResourceSlices, not node node-b's"},
		{sa, "node-a", "UPDATE", b, "not node node-b's"},
		{sa, "node-a", "DELETE", b, "not node node-b's"},
		{sa, "node-a", "CREATE", nil, "not slices without a node"},
		{sa, "", "CREATE", a, "token names no node"},
		// Other users (the scheduler, an admin, another driver) are not
		// this policy's business.
		{"system:serviceaccount:other:driver", "node-a", "CREATE", b, ""},
		{"kubernetes-admin", "", "DELETE", nil, ""},
	} {
		got := admit(tc.user, tc.tokenNode, tc.op, tc.sliceNode)
		if tc.denied == "" && got != "" || tc.denied != "" && !strings.Contains(got, tc.denied) {
			node := "<none>"
			if tc.sliceNode != nil {
				node = *tc.sliceNode
			}
			t.Errorf("%s on %s: %s of node %s's slice: got %q, want %q", tc.user, tc.tokenNode, tc.op, node, got, tc.denied)
		}
	}
}
