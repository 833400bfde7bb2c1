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
// resolves, from the file, to this schema; or, for the documents of a
// custom jsplan (a main package), to that jsplan's schema beside them.
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
		if ref == "jsplan.schema.json" && isCustomBuild(filepath.Dir(f)) {
			continue // the custom jsplan's own schema, beside it (its test checks it)
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

// isCustomBuild reports whether dir holds a custom jsplan: a main package
// with its schema (plans/examples/custom-build, whose test checks the file
// is what that jsplan prints).
func isCustomBuild(dir string) bool {
	src, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil || !bytes.Contains(src, []byte("\npackage main\n")) {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "jsplan.schema.json"))
	return err == nil
}
