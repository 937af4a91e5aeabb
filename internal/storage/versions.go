package storage

import (
	"context"
	"io"
	"time"
)

// Versioning is the state of a store's versioning, as the store reports
// it.
type Versioning string

// Versioning states. A store with versioning Off replaces an overwritten
// object for good; Enabled keeps every earlier version; Suspended keeps
// the versions stored while it was enabled but no new ones.
const (
	VersioningOff       Versioning = "off"
	VersioningEnabled   Versioning = "enabled"
	VersioningSuspended Versioning = "suspended"
)

// Version is one stored version of an object, on a store that keeps the
// earlier versions of objects overwritten or deleted.
type Version struct {
	Name string
	// ID is the store's id of the version, which reads it.
	ID      string
	ModTime time.Time
	Size    int64
	// Latest marks the object's current version: the one Get reads, or
	// a delete marker when the object was deleted.
	Latest bool
	// DeleteMarker marks the store's record of a delete: no content,
	// and the object is absent while it is the latest.
	DeleteMarker bool
}

// Versioned is implemented by backends whose store keeps earlier versions
// (S3 with versioning). Lifeboat never overwrites an object, but a
// credential that may put can (S3 has no create-only permission): on a
// versioned store the original stays stored, and readers find it here. It
// is optional: callers find it with Capability.
type Versioned interface {
	// Versioning reports whether the store keeps earlier versions now.
	Versioning(ctx context.Context) (Versioning, error)

	// ListVersions calls fn for every version, delete markers included,
	// of every object whose name starts with prefix: names in lexical
	// order, the versions of one name newest first. An error from fn
	// stops the listing and is returned. A credential that may not list
	// versions gets an error matching ErrPermission.
	ListVersions(ctx context.Context, prefix string, fn func(Version) error) error

	// GetVersion opens one version of an object whole.
	GetVersion(ctx context.Context, name, id string) (io.ReadCloser, error)

	// GetVersionRange opens length bytes of one version from offset; a
	// range past its end is an error, as for GetRange.
	GetVersionRange(ctx context.Context, name, id string, offset, length int64) (io.ReadCloser, error)

	// RestoreVersion makes version id of name its current version again:
	// the store copies it over the name, as a new version with the same
	// content (under the store's retention, as any new object). No
	// version is deleted: what it replaces stays stored as an earlier
	// version.
	RestoreVersion(ctx context.Context, name, id string) error
}

// Versions returns the versions of the object name alone (not of names
// that merely start with it), newest first.
func Versions(ctx context.Context, v Versioned, name string) ([]Version, error) {
	var out []Version
	err := v.ListVersions(ctx, name, func(ver Version) error {
		if ver.Name == name {
			out = append(out, ver)
		}
		return nil
	})
	return out, err
}
