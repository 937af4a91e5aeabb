// Package durable writes local files so that they survive a crash whole
// or not at all: the data is synced before the file gets its name, and the
// directory is synced after.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir makes a directory's entries (a new file, a rename, a removal)
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}

// WriteNew creates path with data and mode perm, failing with an error
// matching fs.ErrExist when path exists. The file is written and synced
// under a temporary name and then linked to path, so path is never seen
// half-written, even after a crash; it returns once the name is durable.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	// link(2), unlike rename(2), refuses an existing name.
	return write(path, data, perm, os.Link)
}

// Replace writes path with data and mode perm, replacing what was there:
// a reader sees the old file or the whole new one, never a mix, even after
// a crash; it returns once the new content is durable.
func Replace(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

func write(path string, data []byte, perm os.FileMode, publish func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // nothing is left to remove after a rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := publish(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}
