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
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
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

// Open opens the file name inside dir for reading with the confinement of
// writing: through an os.Root, and only a regular file with one link, not
// a symlink (even one inside the directory), a FIFO or a device. Whoever
// could write the directory (a plan, the board through collect, another
// user) must not make jsplan read and publish a file from elsewhere.
func Open(dir, name string) (*os.File, error) {
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("refusing to read %q outside the artifacts directory", name)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if err := readable(dir, name, fi); err != nil {
		return nil, err
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	got, err := f.Stat()
	if err == nil && !os.SameFile(fi, got) {
		err = fmt.Errorf("%s: replaced while opened", filepath.Join(dir, name))
	}
	if err == nil {
		err = readable(dir, name, got)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads the file name inside dir as Open opens it, at most max
// bytes (an error past them).
func ReadFile(dir, name string, max int64) ([]byte, error) {
	f, err := Open(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%s: larger than %d bytes", filepath.Join(dir, name), max)
	}
	return b, err
}

// readable refuses what Open must not read.
func readable(dir, name string, fi fs.FileInfo) error {
	path := filepath.Join(dir, name)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: refusing to read a symlink in the artifacts", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: refusing to read a %s in the artifacts, not a regular file", path, fileKind(fi.Mode()))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return fmt.Errorf("%s: refusing to read a file with %d hard links in the artifacts", path, st.Nlink)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}
