package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// ErrNotInSnapshot is returned for a restore of a path the snapshot does
// not hold.
var ErrNotInSnapshot = errors.New("not in the snapshot")

// RestoreOptions shape Restore.
type RestoreOptions struct {
	// Dir is the absolute directory the tree is written below: a file
	// backed up as /etc/drop/app.conf lands at Dir/etc/drop/app.conf.
	Dir string
	// Path, when not empty, restores only this file or directory (and
	// the directories above it): a path as it was backed up, absolute.
	Path string
	// Delta writes into a Dir that is not empty, rewriting only the
	// blocks of files that differ; without it Dir must be empty or absent.
	Delta bool
	// UID and GID, when >= 0, own every restored file; -1 keeps the
	// recorded owners (which only root can give away).
	UID, GID int
	Workers  int
	Progress func(written int64)
}

// RestoreResult says what a restore wrote.
type RestoreResult struct {
	Stats repo.RestoreStats
	Nodes int // files, directories and symlinks written
	// Target is where Path (or the whole tree, Dir) was written.
	Target string
}

// SnapshotInfo decodes what a files snapshot records beside its tree.
func SnapshotInfo(s *repo.Snapshot) (*Info, error) {
	if s.Kind != KindName {
		return nil, fmt.Errorf("snapshot %s is of kind %s, not %s", s.ID.Short(), s.Kind, KindName)
	}
	var info Info
	if len(s.Extra) > 0 {
		if err := json.Unmarshal(s.Extra, &info); err != nil {
			return nil, fmt.Errorf("snapshot %s: details: %v: %w", s.ID.Short(), err, repo.ErrCorrupt)
		}
	}
	return &info, nil
}

// Restore writes snapshot snap, or the part of it opts.Path names, below
// opts.Dir, with the recorded modes, modification times, symlinks and
// (as root, or with UID/GID) owners. Every file and directory written is
// synced before it returns.
func Restore(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, opts RestoreOptions) (*RestoreResult, error) {
	info, err := SnapshotInfo(snap)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("restore target %q is not an absolute path", opts.Dir)
	}
	sel := ""
	if opts.Path != "" {
		if !filepath.IsAbs(opts.Path) {
			return nil, fmt.Errorf("path %q: give it as it was backed up, absolute (like /etc/drop/app.conf)", opts.Path)
		}
		sel = treePath(opts.Path)
	}
	selected := func(p string) bool {
		return sel == "" || p == sel || strings.HasPrefix(p, sel+"/") || strings.HasPrefix(sel, p+"/")
	}
	if _, err := checkDir(opts.Dir, opts.Delta); err != nil {
		return nil, err
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	// A first pass over the tree finds the path before anything is
	// written. Nodes below a symlink are refused by the tree restore
	// itself, before it writes anything.
	res := &RestoreResult{Target: opts.Dir}
	found := sel == ""
	err = r.WalkTree(ctx, idx, snap.Tree, func(n *repo.Node) error {
		if !selected(n.Path) {
			return nil
		}
		res.Nodes++
		if n.Path == sel {
			found = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s is not in snapshot %s (it holds %s): %w", filepath.Clean(opts.Path), snap.ID.Short(),
			strings.Join(info.Paths, ", "), ErrNotInSnapshot)
	}
	if sel != "" {
		res.Target = filepath.Join(opts.Dir, filepath.FromSlash(sel))
	}
	// The target is the restore's own: as root, one another user owns is
	// root's and 0700 while the restore runs, and given back after.
	dir, err := repo.OpenRestoreDir(opts.Dir, repo.DirOptions{Create: true, TakeOver: true})
	if err != nil {
		return nil, fmt.Errorf("restore target: %w", err)
	}
	defer dir.Close()
	if !opts.Delta {
		// Checked again on the open directory: nobody else can add a
		// name to it any more.
		if names, err := dir.Names(); err != nil {
			return nil, err
		} else if len(names) > 0 {
			return nil, notEmpty(opts.Dir)
		}
	}
	target := func(p string) string {
		if !selected(p) {
			return ""
		}
		return filepath.Join(opts.Dir, filepath.FromSlash(p))
	}
	res.Stats, err = r.RestoreTree(ctx, idx, snap.Tree, repo.RestoreOptions{Root: dir, Target: target,
		UID: opts.UID, GID: opts.GID, Delta: opts.Delta, Workers: opts.Workers, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	if err := dir.Close(); err != nil {
		return nil, err
	}
	if dir.Created() {
		if err := durable.SyncDir(filepath.Dir(opts.Dir)); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// checkDir accepts an absent or empty directory, or with delta any
// directory; it reports whether the directory must be created.
func checkDir(dir string, delta bool) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("restore target: %w", err)
	}
	if len(entries) > 0 && !delta {
		return false, notEmpty(dir)
	}
	return false, nil
}

func notEmpty(dir string) error {
	return fmt.Errorf("%s is not empty: restore into an empty directory, or use --delta to write over what is there (rewriting only what differs)", dir)
}
