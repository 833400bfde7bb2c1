package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	"k8s.io/kubernetes/pkg/apis/admissionregistration"
	_ "k8s.io/kubernetes/pkg/apis/admissionregistration/install"
	admissionvalidation "k8s.io/kubernetes/pkg/apis/admissionregistration/validation"
	"k8s.io/kubernetes/pkg/apis/apps"
	_ "k8s.io/kubernetes/pkg/apis/apps/install"
	appsvalidation "k8s.io/kubernetes/pkg/apis/apps/validation"
	"k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	corevalidation "k8s.io/kubernetes/pkg/apis/core/validation"
	"k8s.io/kubernetes/pkg/apis/rbac"
	_ "k8s.io/kubernetes/pkg/apis/rbac/install"
	rbacvalidation "k8s.io/kubernetes/pkg/apis/rbac/validation"
	"k8s.io/kubernetes/pkg/apis/resource"
	_ "k8s.io/kubernetes/pkg/apis/resource/install"
	resourcevalidation "k8s.io/kubernetes/pkg/apis/resource/validation"
	"k8s.io/kubernetes/pkg/capabilities"
	"sigs.k8s.io/yaml"
)

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// validate decodes one document strictly into its v1 type, defaults it,
// converts it to the internal type and runs the API server's validation.
func validate(t *testing.T, file string, raw []byte) (string, field.ErrorList) {
	var tm struct{ APIVersion, Kind string }
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var ext, in runtime.Object
	var check func() field.ErrorList
	podOpts := corevalidation.PodValidationOptions{}
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		o := &core.Namespace{}
		ext, in, check = &corev1.Namespace{}, o, func() field.ErrorList { return corevalidation.ValidateNamespace(o) }
	case "v1/ServiceAccount":
		o := &core.ServiceAccount{}
		ext, in, check = &corev1.ServiceAccount{}, o, func() field.ErrorList { return corevalidation.ValidateServiceAccount(o) }
	case "v1/Pod":
		o := &core.Pod{}
		ext, in, check = &corev1.Pod{}, o, func() field.ErrorList { return corevalidation.ValidatePodCreate(o, podOpts) }
	case "apps/v1/DaemonSet":
		o := &apps.DaemonSet{}
		ext, in, check = &appsv1.DaemonSet{}, o, func() field.ErrorList { return appsvalidation.ValidateDaemonSet(o, podOpts) }
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		o := &rbac.ClusterRole{}
		ext, in, check = &rbacv1.ClusterRole{}, o, func() field.ErrorList {
			return rbacvalidation.ValidateClusterRole(o, rbacvalidation.ClusterRoleValidationOptions{})
		}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		o := &rbac.ClusterRoleBinding{}
		ext, in, check = &rbacv1.ClusterRoleBinding{}, o, func() field.ErrorList { return rbacvalidation.ValidateClusterRoleBinding(o) }
	case "resource.k8s.io/v1/DeviceClass":
		o := &resource.DeviceClass{}
		ext, in, check = &resourcev1.DeviceClass{}, o, func() field.ErrorList { return resourcevalidation.ValidateDeviceClass(o) }
	case "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy":
		o := &admissionregistration.ValidatingAdmissionPolicy{}
		ext, in, check = &admissionregistrationv1.ValidatingAdmissionPolicy{}, o, func() field.ErrorList {
			return admissionvalidation.ValidateValidatingAdmissionPolicy(o)
		}
	case "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding":
		o := &admissionregistration.ValidatingAdmissionPolicyBinding{}
		ext, in, check = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}, o, func() field.ErrorList {
			return admissionvalidation.ValidateValidatingAdmissionPolicyBinding(o)
		}
	case "resource.k8s.io/v1/ResourceClaimTemplate":
		o := &resource.ResourceClaimTemplate{}
		ext, in, check = &resourcev1.ResourceClaimTemplate{}, o, func() field.ErrorList { return resourcevalidation.ValidateResourceClaimTemplate(o) }
	default:
		t.Fatalf("%s: unexpected %s %s", file, tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(raw, ext); err != nil {
		t.Fatalf("%s: strict decoding as %s: %v", file, tm.Kind, err)
	}
	legacyscheme.Scheme.Default(ext)
	if err := legacyscheme.Scheme.Convert(ext, in, nil); err != nil {
		t.Fatalf("%s: converting %s: %v", file, tm.Kind, err)
	}
	return tm.Kind, check()
}

// TestManifestsValidate: every manifest of the driver passes the API
// server's validation of its kind (the CEL selectors compile, the extended
// resource names are valid, the DaemonSet's pod is a valid pod).
func TestManifestsValidate(t *testing.T) {
	// The driver's DaemonSet is privileged (its health check opens the
	// boards' devices): allowed as kubeadm's --allow-privileged=true does.
	capabilities.Initialize(capabilities.Capabilities{AllowPrivileged: true})
	files, _ := filepath.Glob("*.yaml")
	kinds := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			kind, errs := validate(t, f, []byte(doc))
			kinds[kind]++
			for _, e := range errs {
				t.Errorf("%s#%d (%s): %v", f, i, kind, e)
			}
		}
	}
	for _, k := range []string{"DaemonSet", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "DeviceClass", "ResourceClaimTemplate", "Pod",
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
	t.Logf("validated: %v", kinds)
}

// TestValidationCatchesMistakes: the same path rejects a broken CEL
// selector and an invalid extended resource name, so the test above can fail.
func TestValidationCatchesMistakes(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: x}\nspec:\n  selectors:\n    - cel: {expression: 'device.attributes[\"jsplan.dev\"].soc =='}\n",
		"apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: x}\nspec:\n  extendedResourceName: kubernetes.io/board\n",
		"apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: x}\nspec:\n  failurePolicy: Fail\n" +
			"  matchConstraints: {resourceRules: [{apiGroups: [resource.k8s.io], apiVersions: ['*'], operations: [CREATE], resources: [resourceslices]}]}\n" +
			"  validations: [{expression: 'object.spec.nodeName =='}]\n",
	} {
		if _, errs := validate(t, "mistake.yaml", []byte(doc)); len(errs) == 0 {
			t.Errorf("accepted:\n%s", doc)
		}
	}
}
