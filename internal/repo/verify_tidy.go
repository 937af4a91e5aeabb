package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Leftovers are what interrupted writes left in a repository. They are
// harmless (no snapshot uses them, no reader sees them) but take space, so
// verify accounts for them; expire removes them once they are older than
// its grace period.
type Leftovers struct {
	// Unreferenced are packs no index object names: left by a backup that
	// was killed or failed before it could index them.
	Unreferenced []storage.ObjectInfo
	// Temporary are partial objects of writes that died mid-way (the fs
	// backend's .tmp-* files), which are not objects at all.
	Temporary []storage.ObjectInfo
}

// UnreferencedBytes is the size of the unreferenced packs.
func (l *Leftovers) UnreferencedBytes() int64 { return totalSize(l.Unreferenced) }

// TemporaryBytes is the size of the temporary files.
func (l *Leftovers) TemporaryBytes() int64 { return totalSize(l.Temporary) }

func totalSize(ois []storage.ObjectInfo) int64 {
	var n int64
	for _, oi := range ois {
		n += oi.Size
	}
	return n
}

// verifyTidy adds to rep what verify checks beyond the snapshots' data:
// the key objects, and the temporary files interrupted writes left.
func (r *Repository) verifyTidy(ctx context.Context, rep *VerifyReport) error {
	if err := r.verifyKeys(ctx, rep); err != nil {
		return err
	}
	tl, ok := storage.Capability[storage.Temporaries](r.be)
	if !ok {
		return nil
	}
	return tl.ListTemp(ctx, func(oi storage.ObjectInfo) error {
		rep.Temporary = append(rep.Temporary, oi)
		return nil
	})
}

// verifyKeys reports every key object that Open skips without trying it:
// one whose name is not its hash, whose costs are out of bounds, or that is
// malformed. Anyone with write access to the store can put such an object;
// none is ever written by Lifeboat.
func (r *Repository) verifyKeys(ctx context.Context, rep *VerifyReport) error {
	names, err := r.listNames(ctx, "keys/")
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := readKeyObject(ctx, r.be, n)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err == nil {
			_, err = parseKeyObject(n, data)
		} else if !errors.Is(err, errBadKeyObject) {
			return fmt.Errorf("read %s: %w", n, err)
		}
		if err != nil {
			rep.addf("%s: %v; it is skipped when opening the repository (not written by lifeboat: remove it with an admin credential)", n, err)
		}
	}
	return nil
}

// removeTemporaries removes the temporary files last written before
// cutoff, for a sweep: a write still running touches its file far more
// often than a grace period. A failure is logged, not returned: the files
// are harmless, and the sweep's work is done.
func (r *Repository) removeTemporaries(ctx context.Context, cutoff time.Time, rep *SweepReport) {
	tl, ok := storage.Capability[storage.Temporaries](r.be)
	if !ok {
		return
	}
	n, err := tl.RemoveTemp(ctx, cutoff)
	rep.TempRemoved += n
	if err != nil {
		r.log.Warn("could not remove temporary files", "repository", r.Location(), "err", err)
	}
}
