package deps

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestInstallWouldSucceed asks apt to resolve every package deps.sh may install on
// this machine, installed or not, so a green run means a fresh machine of this
// shape (for instance one shipping its own Node.js) installs cleanly too.
func TestInstallWouldSucceed(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no apt-get: not a Debian machine; deps.sh only installs with apt")
	}
	out, err := exec.Command("./deps.sh", "simulate").CombinedOutput()
	if err != nil {
		t.Fatalf("apt-get install --simulate of deps.sh's packages fails: %v\n%s", err, out)
	}
}

// TestEverythingInstalled fails where make deps left something out: make test runs
// make deps first, so every mapped command must now be there.
func TestEverythingInstalled(t *testing.T) {
	out, err := exec.Command("./deps.sh", "check").CombinedOutput()
	if err != nil {
		t.Fatalf("%s", out)
	}
}

// TestMakefileUsesTheMap keeps the package list in one place: the Makefile must
// not name Debian packages itself, nor install with apt-get directly.
func TestMakefileUsesTheMap(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?m)^[^#]*apt-get install`).Match(mk) {
		t.Error("Makefile calls apt-get install itself; use internal/deps/deps.sh")
	}
	if !strings.Contains(string(mk), "internal/deps/deps.sh") {
		t.Error("Makefile does not call internal/deps/deps.sh")
	}
}

// TestToolchainsKept: a machine with node and npm already (from any source) is
// never asked to install Debian's nodejs or npm over them.
func TestToolchainsKept(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed here", tool)
		}
	}
	cmd := exec.Command("bash", "-c", `source <(sed -n '/^MAP=(/,/^cmd=/p' deps.sh | sed '$d'); all_pkgs`)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "nodejs" || pkg == "npm" {
			t.Errorf("deps.sh would install %s although the machine has node and npm", pkg)
		}
	}
}
