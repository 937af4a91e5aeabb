// Package asof shows a versioned store as it was at a moment: every
// object read as its newest version stored at or before that time, and
// listings of what existed then (an object deleted or overwritten later is
// there as it was; one stored later is not). It is how a repository is
// restored from before an attack that overwrote or deleted objects, and it
// is read-only.
package asof

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// ErrNoVersions is matched by New's refusal of a store that keeps no
// earlier versions.
var ErrNoVersions = errors.New("the store keeps no earlier versions of its objects")

// ErrReadOnly is matched by a write to the view.
var ErrReadOnly = errors.New("a store seen as of a past time is read-only")

// New returns be as it was at t. It refuses, with an error matching
// ErrNoVersions, a store without versions (a directory) or a bucket whose
// versioning has never been on. The view owns be: closing it closes be.
func New(ctx context.Context, be storage.Backend, t time.Time) (storage.Backend, error) {
	v, ok := storage.Capability[storage.Versioned](be)
	if !ok {
		return nil, fmt.Errorf("%s: %w (only an S3 bucket with versioning can be read as of a time)", be.Location(), ErrNoVersions)
	}
	st, err := v.Versioning(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: read its versioning: %w", be.Location(), err)
	}
	if st == storage.VersioningOff {
		return nil, fmt.Errorf("%s: %w (versioning is off on the bucket)", be.Location(), ErrNoVersions)
	}
	return &view{be: be, v: v, at: t, resolved: map[string]storage.Version{}}, nil
}

type view struct {
	be storage.Backend
	v  storage.Versioned
	at time.Time

	mu sync.Mutex
	// resolved holds the version each name had at the time; a zero ID
	// means the name did not exist then.
	resolved map[string]storage.Version
}

var (
	_ storage.Backend   = (*view)(nil)
	_ storage.Versioned = (*view)(nil)
)

func (w *view) Location() string {
	return w.be.Location() + " as of " + w.at.UTC().Format(time.RFC3339)
}

func (w *view) Close() error { return w.be.Close() }

// current reports whether ver is the one name had at the time: the first
// (newest) version of a name stored at or before it.
func (w *view) inTime(ver storage.Version) bool { return !ver.ModTime.After(w.at) }

// resolve finds the version name had at the time.
func (w *view) resolve(ctx context.Context, name string) (storage.Version, error) {
	w.mu.Lock()
	ver, ok := w.resolved[name]
	w.mu.Unlock()
	if !ok {
		vers, err := storage.Versions(ctx, w.v, name)
		if err != nil {
			return storage.Version{}, fmt.Errorf("versions of %s: %w", name, err)
		}
		ver = storage.Version{Name: name}
		for _, v := range vers {
			if w.inTime(v) {
				ver = v
				break
			}
		}
		w.remember(ver)
	}
	if ver.ID == "" || ver.DeleteMarker {
		return storage.Version{}, fmt.Errorf("%s as of %s: %w", name, w.at.UTC().Format(time.RFC3339), storage.ErrNotFound)
	}
	return ver, nil
}

func (w *view) remember(ver storage.Version) {
	w.mu.Lock()
	w.resolved[ver.Name] = ver
	w.mu.Unlock()
}

func (w *view) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	ver, err := w.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	return w.v.GetVersion(ctx, name, ver.ID)
}

func (w *view) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	ver, err := w.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	if length == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return w.v.GetVersionRange(ctx, name, ver.ID, offset, length)
}

func (w *view) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	ver, err := w.resolve(ctx, name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Name: name, Size: ver.Size, ModTime: ver.ModTime}, nil
}

// List lists the objects that existed at the time, with the size and time
// of the version each had. The versions it passes are remembered, so that
// reading what was listed costs no second look-up.
func (w *view) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return w.ListVersions(ctx, prefix, func(v storage.Version) error {
		if !v.Latest {
			return nil
		}
		w.remember(v)
		if v.DeleteMarker {
			return nil
		}
		return fn(storage.ObjectInfo{Name: v.Name, Size: v.Size, ModTime: v.ModTime})
	})
}

// ListVersions lists the versions stored at or before the time, the one
// each name had then marked Latest. A name whose versions all came later
// is remembered as absent.
func (w *view) ListVersions(ctx context.Context, prefix string, fn func(storage.Version) error) error {
	name, found := "", false
	err := w.v.ListVersions(ctx, prefix, func(v storage.Version) error {
		if v.Name != name {
			if name != "" && !found {
				w.remember(storage.Version{Name: name})
			}
			name, found = v.Name, false
		}
		if !w.inTime(v) {
			return nil
		}
		v.Latest = !found
		found = true
		return fn(v)
	})
	if err == nil && name != "" && !found {
		w.remember(storage.Version{Name: name})
	}
	return err
}

func (w *view) Versioning(ctx context.Context) (storage.Versioning, error) {
	return w.v.Versioning(ctx)
}

// GetVersion reads a version stored by the time; a later one is not
// there as of the time.
func (w *view) GetVersion(ctx context.Context, name, id string) (io.ReadCloser, error) {
	if err := w.checkVersion(ctx, name, id); err != nil {
		return nil, err
	}
	return w.v.GetVersion(ctx, name, id)
}

func (w *view) GetVersionRange(ctx context.Context, name, id string, offset, length int64) (io.ReadCloser, error) {
	if err := w.checkVersion(ctx, name, id); err != nil {
		return nil, err
	}
	return w.v.GetVersionRange(ctx, name, id, offset, length)
}

func (w *view) checkVersion(ctx context.Context, name, id string) error {
	vers, err := storage.Versions(ctx, w.v, name)
	if err != nil {
		return fmt.Errorf("versions of %s: %w", name, err)
	}
	for _, v := range vers {
		if v.ID == id && w.inTime(v) && !v.DeleteMarker {
			return nil
		}
	}
	return fmt.Errorf("%s version %s as of %s: %w", name, id, w.at.UTC().Format(time.RFC3339), storage.ErrNotFound)
}

func (w *view) Put(_ context.Context, name string, _ io.ReadSeeker, _ int64) error {
	return w.readOnly("put", name)
}

func (w *view) Delete(_ context.Context, name string) error { return w.readOnly("delete", name) }

func (w *view) RestoreVersion(_ context.Context, name, _ string) error {
	return w.readOnly("restore a version of", name)
}

func (w *view) readOnly(op, name string) error {
	return storage.Permanent(fmt.Errorf("%s %s in %s: %w", op, name, w.Location(), ErrReadOnly))
}
