package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"

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
var syncOrder = []string{"data/", "index/", "meta/", "wal/", "restorepoints/", "snapshots/", "pins/"}

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
