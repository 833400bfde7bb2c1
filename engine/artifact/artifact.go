// Package artifact writes files into a run's artifacts directory without
// ever leaving it. The directory may be shared with others or hold what a
// previous run (or a hostile plan, or the board) left there: every write
// goes through an os.Root, so neither ".." nor a symlink leads out of it,
// and files are written under a fresh name and renamed into place, so a
// planted symlink or hard link is replaced, never written through.
package artifact

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FileMode is the mode of the files jsplan writes in the artifacts.
const FileMode fs.FileMode = 0o644

// DirMode is the mode of the directories it creates there.
const DirMode fs.FileMode = 0o755

// OpenRoot creates dir when missing and opens it as a root.
func OpenRoot(dir string) (*os.Root, error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, err
	}
	return os.OpenRoot(dir)
}

// Create creates (or replaces) the file name inside dir and returns it open
// for writing, for files written as the run goes (console.log).
func Create(dir, name string) (*os.File, error) {
	root, err := OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return CreateIn(root, name)
}

// CreateIn is Create inside an open root.
func CreateIn(root *os.Root, name string) (*os.File, error) {
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("refusing to write %q outside the artifacts directory", name)
	}
	if d := filepath.Dir(name); d != "." {
		if err := root.MkdirAll(d, DirMode); err != nil {
			return nil, err
		}
	}
	f, tmp, err := createTemp(root, name)
	if err != nil {
		return nil, err
	}
	if err := root.Rename(tmp, name); err != nil {
		f.Close()
		_ = root.Remove(tmp)
		return nil, err
	}
	return f, nil
}

// WriteFile writes data to the file name inside dir, atomically.
func WriteFile(dir, name string, data []byte) error {
	root, err := OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return WriteFileIn(root, name, data)
}

// WriteFileIn is WriteFile inside an open root.
func WriteFileIn(root *os.Root, name string, data []byte) error {
	if !filepath.IsLocal(name) {
		return fmt.Errorf("refusing to write %q outside the artifacts directory", name)
	}
	if d := filepath.Dir(name); d != "." {
		if err := root.MkdirAll(d, DirMode); err != nil {
			return err
		}
	}
	f, tmp, err := createTemp(root, name)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		_ = root.Remove(tmp)
	}
	return err
}

// createTemp creates a new file next to name, with a name nobody can have
// planted (O_EXCL), with FileMode whatever the umask.
func createTemp(root *os.Root, name string) (*os.File, string, error) {
	for range 10 {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+"."+hex.EncodeToString(b))
		f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		_ = f.Chmod(FileMode)
		return f, tmp, nil
	}
	return nil, "", fmt.Errorf("cannot create a temporary file for %s", name)
}
