package cluster_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jsplan/jsplan/tekton/cluster"
)

// An image written by WriteOCIArchive is read by skopeo (containers/image,
// as podman and CRI-O read it) with its entrypoint, user and files, and
// the same files give the same digest.
func TestWriteOCIArchive(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := cluster.Scratch{Ref: "localhost/test/hello:v1", Entrypoint: []string{"/ko-app/hello"}, User: "65532",
		Files: []cluster.File{{Path: "/ko-app/hello", Source: bin}, {Path: "/bin/sh", Link: "busybox"}, {Path: "/tmp", Dir: true, Mode: 0o1777}}}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	da, err := cluster.WriteOCIArchive(s, a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := cluster.WriteOCIArchive(s, b)
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Errorf("same files, digests %s and %s", da, db)
	}
	out, err := exec.Command("skopeo", "inspect", "--config", "oci-archive:"+a).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var cfg struct {
		Config struct {
			Entrypoint []string
			User       string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/ko-app/hello" || cfg.Config.User != "65532" || len(cfg.RootFS.DiffIDs) != 1 {
		t.Errorf("config %+v", cfg)
	}
	// The layer holds the files: copy it out as a directory and look.
	dst := filepath.Join(dir, "layout")
	if out, err := exec.Command("skopeo", "copy", "oci-archive:"+a, "oci:"+dst+":v1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	list, _ := exec.Command("sh", "-c", "for f in "+dst+"/blobs/sha256/*; do tar tzf $f 2>/dev/null; done").Output()
	for _, want := range []string{"ko-app/hello", "bin/sh", "tmp/"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("layer lacks %s:\n%s", want, list)
		}
	}
}

// The Tekton release the cluster runs is the one tektonbin/go.mod pins.
func TestTektonVersionPinned(t *testing.T) {
	b, err := os.ReadFile("tektonbin/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "github.com/tektoncd/pipeline "+cluster.TektonVersion+"\n") {
		t.Errorf("tektonbin/go.mod does not require tektoncd/pipeline %s:\n%s", cluster.TektonVersion, b)
	}
}
