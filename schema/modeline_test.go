package schema

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var modelineRE = regexp.MustCompile(`^# yaml-language-server: \$schema=(\S+)\n`)

// TestModelines checks that every shipped plan and inventory names the
// schema for editors (yaml-language-server) by a relative path that
// resolves, from the file, to this schema.
func TestModelines(t *testing.T) {
	files := []string{"../cmd/boards.default.yaml"}
	err := filepath.WalkDir("../plans", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(src, []byte("\napiVersion: "+APIVersion+"\n")) {
			continue // not a jsplan document (an ansible playbook)
		}
		n++
		m := modelineRE.FindSubmatch(src)
		if m == nil {
			t.Errorf("%s: the first line is not a yaml-language-server modeline", f)
			continue
		}
		ref := string(m[1])
		if filepath.IsAbs(ref) || strings.Contains(ref, "://") {
			t.Errorf("%s: schema %q is not a relative path", f, ref)
			continue
		}
		got, err := os.ReadFile(filepath.Join(filepath.Dir(f), ref))
		if err != nil || !bytes.Equal(got, JSON) {
			t.Errorf("%s: schema %q does not resolve to schema/jsplan.schema.json (%v)", f, ref, err)
		}
	}
	if n < 5 {
		t.Errorf("only %d documents checked", n)
	}
}
