package repo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// SnapshotStoreTimes returns when the store received each snapshot
// manifest (its last-modified time). On S3 the server sets it, so a writer
// cannot choose it; a manifest's own times are whatever its writer said.
// Names that are not snapshot IDs are left out (listings report them).
func (r *Repository) SnapshotStoreTimes(ctx context.Context) (map[ID]time.Time, error) {
	out := map[ID]time.Time{}
	err := r.be.List(ctx, "snapshots/", func(oi storage.ObjectInfo) error {
		if id, err := ParseID(strings.TrimPrefix(oi.Name, "snapshots/")); err == nil {
			out[id] = oi.ModTime
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return out, nil
}

// CheckSnapshotTree confirms that a snapshot's tree reads back and that
// every blob it references is in idx, without reading file data: a
// manifest that points at nothing restorable is not a backup.
func (r *Repository) CheckSnapshotTree(ctx context.Context, idx *Index, s *Snapshot) error {
	missing := 0
	var first string
	err := r.WalkTree(ctx, idx, s.Tree, func(n *Node) error {
		for _, b := range n.Blocks {
			if _, _, ok := idx.Lookup(b.ID); !ok {
				if missing == 0 {
					first = fmt.Sprintf("%s: blob %s", n.Path, b.ID.Short())
				}
				missing++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tree of snapshot %s: %w", s.ID.Short(), err)
	}
	if missing > 0 {
		return fmt.Errorf("snapshot %s references %d missing blobs (first %s): %w", s.ID.Short(), missing, first, ErrCorrupt)
	}
	return nil
}
