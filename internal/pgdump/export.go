package pgdump

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// writeFiles writes tree paths of the snapshot to the files given (tree
// path → absolute path), verified against their blob IDs and synced.
func writeFiles(ctx context.Context, r *repo.Repository, s *repo.Snapshot, files map[string]string, dir string) error {
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return err
	}
	found := 0
	_, err = r.RestoreTree(ctx, idx, s.Tree, repo.RestoreOptions{
		Dir: dir, UID: os.Getuid(), GID: os.Getgid(),
		Target: func(p string) string {
			if t, ok := files[p]; ok {
				found++
				return t
			}
			return ""
		},
	})
	if err != nil {
		return fmt.Errorf("read the dump from the repository: %w", err)
	}
	if found != len(files) {
		return fmt.Errorf("snapshot %s: its tree lacks a file its details name: %w", s.ID.Short(), repo.ErrCorrupt)
	}
	return nil
}

// ExportOptions shape Export.
type ExportOptions struct {
	// Out is the file written; it must not exist.
	Out string
	// Database names the dumped database to export ("" when the
	// snapshot holds one); Globals exports pg_dumpall's globals instead.
	Database string
	Globals  bool
}

// ExportResult says what Export wrote.
type ExportResult struct {
	File     string
	What     string // "database NAME" or "globals"
	Bytes    int64
	Database string
}

// Export writes one file of a pg_dump snapshot as pg_dump wrote it, byte
// for byte: a custom-format archive any pg_restore of that version or
// newer reads, or the globals as SQL. It writes Out.tmp, syncs it and
// moves it to Out, so Out is whole or absent; an existing Out is never
// overwritten.
func Export(ctx context.Context, r *repo.Repository, s *repo.Snapshot, o ExportOptions) (ExportResult, error) {
	var res ExportResult
	in, err := SnapshotInfo(s)
	if err != nil {
		return res, &asset.UsageError{Err: err}
	}
	var treePath string
	if o.Globals {
		if o.Database != "" {
			return res, usagef("give --database or --globals, not both")
		}
		if in.Globals == "" {
			return res, usagef("snapshot %s holds no globals", s.ID.Short())
		}
		treePath, res.What = in.Globals, "globals"
	} else {
		db, err := pickDatabase(s, in, o.Database)
		if err != nil {
			return res, err
		}
		treePath, res.What, res.Bytes, res.Database = db.File, "database "+db.Name, db.Bytes, db.Name
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return res, err
	}
	res.File = out
	tmp := out + ".tmp"
	for _, p := range []string{out, tmp} {
		if _, err := os.Lstat(p); err == nil {
			return res, usagef("%s exists: not overwriting it (remove it or choose another --out)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
	}
	done := false
	defer func() {
		if !done {
			os.Remove(tmp)
		}
	}()
	if err := writeFiles(ctx, r, s, map[string]string{treePath: tmp}, filepath.Dir(out)); err != nil {
		return res, err
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return res, err
	}
	res.Bytes = fi.Size()
	if err := publish(tmp, out); err != nil {
		return res, err
	}
	done = true
	return res, syncDir(filepath.Dir(out))
}

// publish moves tmp to out unless out exists. A hard link fails on an
// existing name where rename would silently replace it; a filesystem
// without hard links gets a check and a rename.
func publish(tmp, out string) error {
	err := os.Link(tmp, out)
	switch {
	case err == nil:
		return os.Remove(tmp)
	case errors.Is(err, fs.ErrExist):
		return usagef("%s appeared while exporting: not overwriting it", out)
	}
	if _, serr := os.Lstat(out); serr == nil {
		return usagef("%s appeared while exporting: not overwriting it", out)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("move %s into place: %w", tmp, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
