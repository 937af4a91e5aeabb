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

	"golang.org/x/sys/unix"

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
	created, err := checkDir(opts.Dir, opts.Delta)
	if err != nil {
		return nil, err
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	// A first pass over the tree finds the path before anything is
	// written, and refuses nodes below a symlink: a files backup never
	// records them, and a restore would write them through the link,
	// wherever it points.
	res := &RestoreResult{Target: opts.Dir}
	found := sel == ""
	symlinks := map[string]bool{}
	var links []*repo.Node
	err = r.WalkTree(ctx, idx, snap.Tree, func(n *repo.Node) error {
		for p := n.Path; ; {
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			if p = p[:i]; symlinks[p] {
				return fmt.Errorf("snapshot %s: %s lies below the symlink %s: %w", snap.ID.Short(), n.Path, p, repo.ErrCorrupt)
			}
		}
		if n.Type == repo.NodeSymlink {
			symlinks[n.Path] = true
		}
		if !selected(n.Path) {
			return nil
		}
		res.Nodes++
		if n.Path == sel {
			found = true
		}
		if n.Type == repo.NodeSymlink {
			links = append(links, n)
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
	if created {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("restore target: %w", err)
		}
	}
	target := func(p string) string {
		if !selected(p) {
			return ""
		}
		return filepath.Join(opts.Dir, filepath.FromSlash(p))
	}
	write := target
	if opts.Delta {
		// Files and directories already there may be read-only (a
		// restored 0444 file, a 0555 directory): the owner may make them
		// writable, and RestoreTree puts the recorded mode back after.
		write = func(p string) string {
			dst := target(p)
			if fi, err := os.Lstat(dst); err == nil && (fi.Mode().IsRegular() || fi.IsDir()) && fi.Mode().Perm()&0o200 == 0 {
				_ = os.Chmod(dst, fi.Mode()|0o200) // without the right to, the write below says so
			}
			return dst
		}
	}
	res.Stats, err = r.RestoreTree(ctx, idx, snap.Tree, repo.RestoreOptions{Target: write, Dir: opts.Dir,
		UID: opts.UID, GID: opts.GID, Delta: opts.Delta, Workers: opts.Workers, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	// RestoreTree sets times through the link; a symlink's own time is
	// set here. It changes no directory entry, so the times RestoreTree
	// gave the directories stand.
	for _, l := range links {
		ts := unix.NsecToTimespec(l.MTime)
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, target(l.Path), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, fmt.Errorf("set times of %s: %w", target(l.Path), err)
		}
	}
	if created {
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
		return false, fmt.Errorf("%s is not empty: restore into an empty directory, or use --delta to write over what is there (rewriting only what differs)", dir)
	}
	return false, nil
}
