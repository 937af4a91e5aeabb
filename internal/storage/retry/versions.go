package retry

import (
	"context"
	"io"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Versions are an optional capability too, forwarded with retries: a
// restore that reads an object's earlier version must ride out a dropped
// connection as any other read does.

// versioned is the decorator for backends with versions.
type versioned struct {
	*backend
	versionOps
}

// retainerVersioned is the decorator for backends with both retention and
// versions (S3).
type retainerVersioned struct {
	*retainer
	versionOps
}

// withVersions returns d with storage.Versioned added when be has it.
func withVersions(be storage.Backend, b *backend, d storage.Backend) storage.Backend {
	v, ok := be.(storage.Versioned)
	if !ok {
		return d
	}
	ops := versionOps{b: b, v: v}
	if r, ok := d.(*retainer); ok {
		return &retainerVersioned{retainer: r, versionOps: ops}
	}
	return &versioned{backend: b, versionOps: ops}
}

// versionOps forwards storage.Versioned with retries.
type versionOps struct {
	b *backend
	v storage.Versioned
}

func (o versionOps) Versioning(ctx context.Context) (storage.Versioning, error) {
	var st storage.Versioning
	n, err := o.b.do(ctx, "read versioning", "", func(int) error {
		var err error
		st, err = o.v.Versioning(ctx)
		return err
	})
	return st, annotate(ctx, "read versioning", o.b.Location(), n, err)
}

// ListVersions resumes a failed listing after the versions it delivered,
// which come in a fixed order, so fn never sees a version twice.
func (o versionOps) ListVersions(ctx context.Context, prefix string, fn func(storage.Version) error) error {
	delivered := 0
	var fnErr *callerError
	n, err := o.b.do(ctx, "list versions", prefix, func(int) error {
		seen := 0
		err := o.v.ListVersions(ctx, prefix, func(v storage.Version) error {
			seen++
			if seen <= delivered {
				return nil
			}
			if err := fn(v); err != nil {
				fnErr = &callerError{err}
				return storage.Permanent(fnErr)
			}
			delivered++
			return nil
		})
		if fnErr != nil {
			return storage.Permanent(fnErr)
		}
		return err
	})
	if fnErr != nil {
		return fnErr.err
	}
	return annotate(ctx, "list versions", prefix, n, err)
}

func (o versionOps) GetVersion(ctx context.Context, name, id string) (io.ReadCloser, error) {
	var rc io.ReadCloser
	n, err := o.b.do(ctx, "get version", name, func(int) error {
		var err error
		rc, err = o.v.GetVersion(ctx, name, id)
		return err
	})
	if err != nil {
		return nil, annotate(ctx, "get version", name, n, err)
	}
	return rc, nil
}

func (o versionOps) GetVersionRange(ctx context.Context, name, id string, offset, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	n, err := o.b.do(ctx, "get range of version", name, func(int) error {
		var err error
		rc, err = o.v.GetVersionRange(ctx, name, id, offset, length)
		return err
	})
	if err != nil {
		return nil, annotate(ctx, "get range of version", name, n, err)
	}
	return rc, nil
}

// RestoreVersion copies a version over its name; a second copy after a
// lost answer only makes one more identical version.
func (o versionOps) RestoreVersion(ctx context.Context, name, id string) error {
	n, err := o.b.do(ctx, "restore version", name, func(int) error {
		return o.v.RestoreVersion(ctx, name, id)
	})
	return annotate(ctx, "restore version", name, n, err)
}
