// Package fsutil writes files whole: a reader sees the old content or the
// new one, never a part (the artifacts directory has its own confined
// writer, internal/artifact).
package fsutil

import (
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path through a new temporary file in the
// same directory, synced and renamed over path, with mode whatever the
// umask. A symlink planted at path is replaced, not written through.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
