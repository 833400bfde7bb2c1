package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestContainerfile checks the Task image's recipe: pinned base images,
// jsplan built with USB support, the tools the Task and plans use, and a
// non-root default user.
func TestContainerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(tektonDir, "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var lines []string // instructions, continuation lines joined
	for _, l := range strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	args := map[string]string{}
	stages, user := 0, ""
	for _, l := range lines {
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(f[1], "="); ok {
				args[k] = v
			}
		case "FROM":
			stages++
			img := regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(f[1], func(s string) string {
				return args[strings.Trim(s, "${}")]
			})
			if !imagePinned(img) {
				t.Errorf("FROM %s (%s) is not fully qualified and pinned", f[1], img)
			}
			if tag := img[strings.LastIndex(img, ":")+1:]; !strings.Contains(img, "@sha256:") && !regexp.MustCompile(`\d+\.\d+\.\d+|\d{8}`).MatchString(tag) {
				t.Errorf("FROM %s: tag %q is not an exact version or dated release", f[1], tag)
			}
		case "USER":
			user = f[1]
		}
	}
	if stages < 2 {
		t.Errorf("%d stages, want a build stage and a runtime stage", stages)
	}
	if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(user) {
		t.Errorf("final USER %q, want a bare numeric non-root uid (runAsNonRoot can check only those; uid:gid drops the supplementary groups)", user)
	}
	if !strings.Contains(text, "CGO_ENABLED=1 go build -tags usb") || !strings.Contains(text, "libusb-1.0-0-dev") {
		t.Error("jsplan is not built with -tags usb against libusb")
	}
	for _, pkg := range []string{"ansible-core", "openssh-client", "xz-utils", "zstd", "bzip2", "libusb-1.0-0 ", "curl", "git"} {
		if !strings.Contains(text, pkg) {
			t.Errorf("the runtime image lacks %s", strings.TrimSpace(pkg))
		}
	}
}
