package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// InitCopy makes the empty backend dst a copy of r: it shares r's master
// key, wrapped by the copy's own secret s, and r's configuration. Objects
// then have the same names and bytes in both, so copying is a byte-for-byte
// transfer of immutable objects, and the copy restores alone with its own
// key file or passphrase.
func (r *Repository) InitCopy(ctx context.Context, dst storage.Backend, s Secret) error {
	if _, err := dst.Stat(ctx, configName); err == nil {
		return fmt.Errorf("%s already holds a repository", dst.Location())
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("check %s: %w", dst.Location(), err)
	}
	name, data, err := wrapKey(s, r.mk)
	if err != nil {
		return err
	}
	if err := dst.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("store key: %w", err)
	}
	return copyObject(ctx, r.be, dst, configName)
}

// CopyStats counts what Sync transferred.
type CopyStats struct {
	Objects int
	Bytes   int64
	Present int // objects the copy already had
}

// syncOrder lists what a copy holds, in the order it is filled: data before
// the index that names it, the index before the snapshots that use it, so
// a snapshot never appears in the copy before everything it needs.
var syncOrder = []string{"data/", "index/", "meta/", "wal/", "restorepoints/", "snapshots/", "pins/", "drills/"}

// Sync copies to dst every object of r that dst lacks. Keys, locks and the
// configuration are not copied: the copy has its own key.
func (r *Repository) Sync(ctx context.Context, dst storage.Backend) (CopyStats, error) {
	var st CopyStats
	for _, prefix := range syncOrder {
		have := make(map[string]bool)
		if err := dst.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			have[oi.Name] = true
			return nil
		}); err != nil {
			return st, fmt.Errorf("list %s in %s: %w", prefix, dst.Location(), err)
		}
		names, err := r.listNames(ctx, prefix)
		if err != nil {
			return st, err
		}
		for _, n := range names {
			if have[n] {
				st.Present++
				continue
			}
			size, err := copyObjectSize(ctx, r.be, dst, n)
			if err != nil {
				return st, err
			}
			st.Objects++
			st.Bytes += size
		}
	}
	return st, nil
}

// CopyQueued delivers one object named by the copy queue to dst: stored
// is the object's bytes as the primary src stored them, or nil to read
// them from src. An object dst already holds is left alone.
func CopyQueued(ctx context.Context, src, dst storage.Backend, name string, stored []byte) error {
	if stored == nil {
		if _, err := dst.Stat(ctx, name); err == nil {
			return nil
		}
		return copyObject(ctx, src, dst, name)
	}
	err := dst.Put(ctx, name, bytes.NewReader(stored), int64(len(stored)))
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("copy %s to %s: %w", name, dst.Location(), err)
	}
	return nil
}

func copyObject(ctx context.Context, src, dst storage.Backend, name string) error {
	_, err := copyObjectSize(ctx, src, dst, name)
	return err
}

// copyObjectSize copies one object. An object dst already has under the
// name is left alone: objects are immutable, and content-named ones equal.
func copyObjectSize(ctx context.Context, src, dst storage.Backend, name string) (int64, error) {
	data, err := storage.ReadAll(ctx, src, name)
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", name, err)
	}
	err = dst.Put(ctx, name, bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return 0, fmt.Errorf("copy %s to %s: %w", name, dst.Location(), err)
	}
	return int64(len(data)), nil
}

// Lag is how far a copy is behind its primary under one prefix.
type Lag struct {
	Missing int   // objects the primary holds and the copy lacks
	Bytes   int64 // their size
	// Oldest is when the oldest missing object was stored in the
	// primary; zero when nothing is missing.
	Oldest time.Time
}

// LagOf counts the objects under prefix that r holds and dst lacks. With
// ordered (names that grow with time, such as WAL), names below dst's
// lowest name under the prefix are not counted: the copy expired them.
func (r *Repository) LagOf(ctx context.Context, dst storage.Backend, prefix string, ordered bool) (Lag, error) {
	have := make(map[string]bool)
	lowest := ""
	if err := dst.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		have[oi.Name] = true
		if lowest == "" || oi.Name < lowest {
			lowest = oi.Name
		}
		return nil
	}); err != nil {
		return Lag{}, fmt.Errorf("list %s in %s: %w", prefix, dst.Location(), err)
	}
	var lag Lag
	err := r.be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if have[oi.Name] || (ordered && oi.Name < lowest) {
			return nil
		}
		lag.Missing++
		lag.Bytes += oi.Size
		if lag.Oldest.IsZero() || oi.ModTime.Before(lag.Oldest) {
			lag.Oldest = oi.ModTime
		}
		return nil
	})
	if err != nil {
		return Lag{}, fmt.Errorf("list %s in %s: %w", prefix, r.be.Location(), err)
	}
	return lag, nil
}
