package cmd

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jsplan/jsplan/internal/artifact"
)

// ownFile records, in an artifacts directory, what jsplan runs wrote there,
// so that a run into a reused directory removes the previous run's files
// (its report would list them as its own) and leaves everything else alone.
const ownFile = ".jsplan-artifacts"

// ownership is the content of ownFile.
type ownership struct {
	// Start is when the run that wrote it started.
	Start time.Time `json:"start"`
	// Foreign lists the files that were there before that run and are
	// not jsplan's (the Tekton Task's jsplan.log, a person's notes).
	Foreign []string `json:"foreign"`
	// Written lists the files the run wrote, once it has ended; a run that
	// was killed leaves it null and the next one goes by Start.
	Written []string `json:"written"`
}

// artifactsOwner tracks one run's artifacts directory.
type artifactsOwner struct {
	dir     string
	start   time.Time
	foreign []string
}

// claimArtifacts clears what earlier jsplan runs left in dir and records
// the start of this one. say is told what was removed and what is left.
func claimArtifacts(dir string, say func(string)) (*artifactsOwner, error) {
	o := &artifactsOwner{dir: dir, start: time.Now()}
	files, err := listArtifacts(dir)
	if err != nil {
		return nil, err
	}
	var prev ownership
	if b, err := os.ReadFile(filepath.Join(dir, ownFile)); err == nil {
		_ = json.Unmarshal(b, &prev)
	}
	var gone []string
	if !prev.Start.IsZero() {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			mine := slices.Contains(prev.Written, f)
			if prev.Written == nil && !slices.Contains(prev.Foreign, f) {
				// the previous run did not end: what changed since it started
				if fi, err := root.Lstat(f); err == nil && !fi.ModTime().Before(prev.Start) {
					mine = true
				}
			}
			if mine {
				if err := root.Remove(f); err != nil && !os.IsNotExist(err) {
					root.Close()
					return nil, fmt.Errorf("removing %s of the previous run: %v", f, err)
				}
				gone = append(gone, f)
			}
		}
		removeEmptyDirs(root, dir)
		root.Close()
	}
	for _, f := range files {
		if !slices.Contains(gone, f) {
			o.foreign = append(o.foreign, f)
		}
	}
	if len(gone) > 0 {
		say(fmt.Sprintf("artifacts: removed %s of the previous run (started %s) from %s",
			plural(len(gone), "file"), prev.Start.Local().Format("2006-01-02 15:04:05"), dir))
	}
	if len(o.foreign) > 0 {
		say(fmt.Sprintf("artifacts: %s also holds %s no jsplan run wrote, left as they are: %s",
			dir, plural(len(o.foreign), "file"), clipList(o.foreign, 5)))
	}
	return o, o.write(nil)
}

// done records the files this run wrote (all but the foreign ones).
func (o *artifactsOwner) done() error {
	files, err := listArtifacts(o.dir)
	if err != nil {
		return err
	}
	written := []string{}
	for _, f := range files {
		if !slices.Contains(o.foreign, f) {
			written = append(written, f)
		}
	}
	return o.write(written)
}

func (o *artifactsOwner) write(written []string) error {
	b, err := json.MarshalIndent(ownership{Start: o.start, Foreign: o.foreign, Written: written}, "", "  ")
	if err != nil {
		return err
	}
	return artifact.WriteFile(o.dir, ownFile, append(b, '\n'))
}

// listArtifacts lists the files under dir (relative, slash-separated),
// without ownFile and without following symbolic links.
func listArtifacts(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == ownFile {
			return nil
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if os.IsNotExist(err) {
		err = nil
	}
	sort.Strings(out)
	return out, err
}

// removeEmptyDirs removes the directories under dir left empty, deepest
// first.
func removeEmptyDirs(root *os.Root, dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != dir {
			rel, _ := filepath.Rel(dir, p)
			dirs = append(dirs, rel)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = root.Remove(dirs[i]) // fails unless empty
	}
}

func clipList(l []string, n int) string {
	if len(l) <= n {
		return strings.Join(l, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(l[:n], ", "), len(l)-n)
}
