package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// File is one entry of a scratch image's only layer: a regular file whose
// content comes from Source (a file on this machine), a symbolic link
// (Link), or a directory (Dir).
type File struct {
	Path   string
	Source string
	Link   string
	Dir    bool
	Mode   int64
}

// Scratch describes an image made from nothing but its files, the way ko
// builds Tekton's images: a static binary or two and no distribution.
type Scratch struct {
	Ref        string // the image's name, e.g. localhost/jsplan-cluster/pause:v1
	Files      []File
	Entrypoint []string
	User       string
	Env        []string
}

// epoch stamps the layer's files so that the same files give the same
// digest.
var epoch = time.Unix(0, 0).UTC()

// WriteOCIArchive writes s as an OCI image layout in a tar archive (what
// `ctr images import` and `skopeo copy oci-archive:` read) and returns the
// manifest's digest.
func WriteOCIArchive(s Scratch, out string) (string, error) {
	layer, diffID, err := s.layer()
	if err != nil {
		return "", err
	}
	env := s.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/ko-app"}
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       map[string]any{"Entrypoint": s.Entrypoint, "User": s.User, "Env": env},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return "", err
	}
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": digest(b), "size": len(b)}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)},
	})
	if err != nil {
		return "", err
	}
	md := desc("application/vnd.oci.image.manifest.v1+json", manifest)
	md["annotations"] = map[string]string{
		"io.containerd.image.name":          s.Ref,
		"org.opencontainers.image.ref.name": s.Ref[strings.LastIndex(s.Ref, ":")+1:],
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{md},
	})
	if err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	blob := func(b []byte) string { return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:") }
	for _, e := range []struct {
		name string
		b    []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blob(manifest), manifest},
		{blob(config), config},
		{blob(layer), layer},
	} {
		if err := add(e.name, e.b); err != nil {
			f.Close()
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return digest(manifest), os.Rename(tmp, out)
}

func digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// layer returns the gzip-compressed layer and the digest of its tar stream.
func (s Scratch) layer() ([]byte, string, error) {
	files := append([]File(nil), s.Files...)
	// Parent directories first, each once.
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(strings.TrimPrefix(f.Path, "/")); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
		if f.Dir {
			dirs[strings.TrimPrefix(f.Path, "/")] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, d := range names {
		mode := int64(0o755)
		for _, f := range files {
			if f.Dir && strings.TrimPrefix(f.Path, "/") == d && f.Mode != 0 {
				mode = f.Mode
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Mode: mode, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
			return nil, "", err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		name := strings.TrimPrefix(f.Path, "/")
		switch {
		case f.Dir:
			continue
		case f.Link != "":
			if err := tw.WriteHeader(&tar.Header{Name: name, Linkname: f.Link, Mode: 0o777, ModTime: epoch, Typeflag: tar.TypeSymlink}); err != nil {
				return nil, "", err
			}
		default:
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, "", err
			}
			mode := f.Mode
			if mode == 0 {
				mode = 0o755
			}
			if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
				return nil, "", err
			}
			if _, err := tw.Write(b); err != nil {
				return nil, "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	diffID := digest(raw.Bytes())
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, "", err
	}
	if _, err := io.Copy(zw, &raw); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), diffID, nil
}
