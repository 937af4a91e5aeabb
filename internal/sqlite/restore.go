package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// ErrBadTarget is matched (errors.Is) by the errors that refuse a restore
// target: it exists, or a WAL or journal beside it does (a restore never
// overwrites a database), or its directory is missing.
var ErrBadTarget = errors.New("restore target refused")

// targetError is an ErrBadTarget that reads as its own message.
type targetError struct{ msg string }

func (e *targetError) Error() string        { return e.msg }
func (e *targetError) Is(target error) bool { return target == ErrBadTarget }

func badTarget(format string, args ...any) error {
	return &targetError{fmt.Sprintf(format, args...)}
}

// RestoreOptions describe one restore.
type RestoreOptions struct {
	To string // the database file to create
	// UID and GID, when >= 0, own the restored file instead of the
	// recorded owner.
	UID, GID int
	Workers  int
}

// RestoreResult says what a restore wrote.
type RestoreResult struct {
	Path           string
	Bytes          int64
	Info           Info   // what the snapshot recorded
	IntegrityCheck string // PRAGMA integrity_check of the restored file: "ok"
}

// Restore writes the database of snapshot s to o.To. The file is written
// and synced under a temporary name beside o.To, passes PRAGMA
// integrity_check, and only then gets its name, so o.To is either absent
// or a whole, checked database, even after a crash.
func Restore(ctx context.Context, r *repo.Repository, s *repo.Snapshot, o RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	info, err := InfoOf(s)
	if err != nil {
		return res, err
	}
	res.Info = info
	to, err := filepath.Abs(o.To)
	if err != nil {
		return res, err
	}
	res.Path = to
	// A stale WAL or hot journal beside the new file would be replayed
	// into it by the next connection and corrupt it.
	for _, p := range []string{to, to + "-wal", to + "-journal"} {
		if _, err := os.Lstat(p); err == nil {
			return res, badTarget("%s exists; remove it or choose another path", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("restore target: %w", err)
		}
	}
	dir := filepath.Dir(to)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return res, badTarget("directory %s does not exist; create it first", dir)
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return res, err
	}
	node, err := findFile(ctx, r, idx, s, info)
	if err != nil {
		return res, err
	}
	f, err := os.CreateTemp(dir, filepath.Base(to)+".tmp-*")
	if err != nil {
		return res, fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp) // after the link it is only a second name
	// RestoreTree syncs the file before it returns.
	st, err := r.RestoreTree(ctx, idx, s.Tree, repo.RestoreOptions{
		Target: func(p string) string {
			if p == node.Path {
				return tmp
			}
			return ""
		},
		Dir: dir, UID: o.UID, GID: o.GID, Workers: o.Workers,
	})
	if err != nil {
		return res, err
	}
	if st.Files != 1 || st.Bytes != node.Size {
		return res, fmt.Errorf("restored %d files of %d bytes, want 1 of %d", st.Files, st.Bytes, node.Size)
	}
	res.Bytes = node.Size
	check, err := checkCopy(ctx, tmp)
	if err != nil {
		return res, fmt.Errorf("check the restored database: %w", err)
	}
	res.IntegrityCheck = check.result
	if check.result != "ok" {
		return res, fmt.Errorf("the restored database fails PRAGMA integrity_check, left unnamed and removed: %s", firstLine(check.result))
	}
	if check.pageSize*check.pageCount != node.Size {
		return res, fmt.Errorf("the restored database has %d pages of %d, but %d bytes", check.pageCount, check.pageSize, node.Size)
	}
	// link(2), unlike rename(2), refuses a name that appeared meanwhile.
	if err := os.Link(tmp, to); errors.Is(err, fs.ErrExist) {
		return res, badTarget("%s appeared during the restore; remove it or choose another path", to)
	} else if err != nil {
		return res, fmt.Errorf("name the restored database: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return res, fmt.Errorf("remove the temporary name: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return res, err
	}
	return res, nil
}

// findFile is the database file node of a snapshot.
func findFile(ctx context.Context, r *repo.Repository, idx *repo.Index, s *repo.Snapshot, info Info) (*repo.Node, error) {
	var found *repo.Node
	files := 0
	err := r.WalkTree(ctx, idx, s.Tree, func(n *repo.Node) error {
		if n.Type != repo.NodeFile {
			return nil
		}
		files++
		if n.Path == info.File {
			c := *n
			found = &c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("snapshot %s holds no database file %q (%d files): %w", s.ID.Short(), info.File, files, repo.ErrCorrupt)
	}
	return found, nil
}
