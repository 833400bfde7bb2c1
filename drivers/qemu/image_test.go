package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestImageIDInRawImage checks that the built image carries its id as plain
// text, where a tool reading the raw image (a virtual board) can find it.
func TestImageIDInRawImage(t *testing.T) {
	img := testImage(t)
	b, err := os.ReadFile(img.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("JSPLAN_IMAGE_ID="+img.id+"\n")) {
		t.Fatalf("%s does not contain JSPLAN_IMAGE_ID=%s", img.path, img.id)
	}
	if len(b)%512 != 0 || b[510] != 0x55 || b[511] != 0xaa {
		t.Fatalf("%s has no MBR boot signature", img.path)
	}
	if len(img.id) < 16 {
		t.Errorf("random image id %q is short", img.id)
	}
}

// TestBuildImageUsage checks that build-image.sh refuses bad arguments with a
// message, before it downloads or writes anything.
func TestBuildImageUsage(t *testing.T) {
	out := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", "usage:"},
		{[]string{out, "--id", "bad id"}, "", "image id must be"},
		{[]string{out, "--id"}, "", "--id needs a value"},
		{[]string{out, "--bogus"}, "", "unknown option --bogus"},
		{[]string{out, "other"}, "", "only one OUTDIR"},
		{[]string{out}, "IMAGE_SIZE_MB=1", "IMAGE_SIZE_MB must be"},
		{[]string{out}, "IMAGE_PASSWORD=", "IMAGE_PASSWORD must not be empty"},
		{[]string{out}, "IMAGE_COMPRESS=gz", "unknown format 'gz'"},
		{[]string{out}, "IMAGE_AUTHORIZED_KEYS=/nonexistent", "needs --ssh"},
	} {
		cmd := exec.Command("../../plans/images/build-image.sh", tc.args...)
		cmd.Env = os.Environ()
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		got, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(got), tc.want) {
			t.Errorf("build-image.sh %q (%s): err %v, output %q; want a failure saying %q", tc.args, tc.env, err, got, tc.want)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused build wrote %d files to OUTDIR", len(entries))
	}
}
