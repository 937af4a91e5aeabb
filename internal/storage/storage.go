// Package storage defines the contract between Lifeboat's repository and the
// places its objects live (a local directory, an S3 bucket). A backend stores
// immutable, named objects and knows nothing of what they contain.
//
// The contract every backend keeps, checked by storagetest.Run:
//
//   - Put is atomic: an object is either absent or complete. A reader never
//     sees a partial object, even if the writer dies mid-way.
//   - Put never overwrites: if the name exists, Put returns ErrExists and the
//     stored object is unchanged. Objects are immutable once written; this is
//     what makes write-once credentials and object lock possible.
//   - Put returns nil only once the object is durable (fsynced, or
//     acknowledged by the object store).
//   - Read after write: an object whose Put returned nil is visible to Get,
//     Stat and List at once.
//   - A missing object is reported as an error matching ErrNotFound with
//     errors.Is; every other failure is a different error.
//   - Errors wrapped with Permanent are not worth retrying (the retry
//     decorator stops at once); all others may be transient.
//   - Close ends the backend's life: it releases what the backend holds
//     (connections, handles) and may be called more than once. Every call
//     made after it, Location and Close aside, fails with an error matching
//     ErrClosed, which is permanent.
//   - Names are slash-separated relative paths of [A-Za-z0-9._-] segments,
//     none empty or beginning with a dot (see ValidateName); an invalid name
//     is rejected with a permanent error before anything is written.
//     List returns names relative to the backend root, in lexical order.
//   - A store may refuse an operation: for lack of rights (a put-only
//     credential may not delete) the error matches ErrPermission; for an
//     object lock that still protects the object, Delete returns a
//     *RetainedError (matching ErrRetained) naming the date it becomes
//     deletable. Both are permanent. Backends with write-once retention
//     implement Retainer; retention is only ever lengthened, never cut.
//   - A write the store refuses for lack of space matches ErrNoSpace, and
//     nothing of it was stored: the caller may remove what it wrote before
//     and try again once there is room.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrExists is returned (wrapped) by Put when an object of that name exists.
var ErrExists = errors.New("object already exists")

// ErrDamaged is returned (wrapped) by a read whose bytes did not match the
// checksum the store keeps for the object: damaged on the way, most
// likely, so a second read may well succeed.
var ErrDamaged = errors.New("object damaged in transit")

// ErrClosed is returned (wrapped, and permanent) by a call made on a
// backend after its Close: a bug in the caller's lifetimes, which no retry
// cures.
var ErrClosed = errors.New("backend closed")

// ErrPermission is returned (wrapped, and permanent) when the store refuses
// an operation because the credential lacks the right to it (S3
// AccessDenied). Callers tell "this credential may not delete" apart from
// other failures with errors.Is.
var ErrPermission = errors.New("permission denied")

// ErrNoSpace is returned (wrapped) by Put when the store refused the
// object for lack of space (a full disk or quota: ENOSPC, EDQUOT). It is
// definite: nothing of the object was stored. It is not permanent, since
// space may be freed.
var ErrNoSpace = errors.New("no space left in the store")

// ErrRetained matches a *RetainedError with errors.Is.
var ErrRetained = errors.New("object is under retention")

// RetainedError is returned (wrapped, and permanent) by Delete when an
// object lock forbids deleting the object yet. Asking again before Until
// changes nothing; callers report the date instead.
type RetainedError struct {
	Name string
	// Until is when the retention ends and the object becomes deletable.
	// It is zero for a legal hold, which lasts until it is lifted.
	Until time.Time
	// Mode is the lock's mode as the store names it (COMPLIANCE,
	// GOVERNANCE), or LEGAL_HOLD.
	Mode string
}

func (e *RetainedError) Error() string {
	if e.Until.IsZero() {
		return fmt.Sprintf("%s is under %s and cannot be deleted until the hold is lifted", e.Name, e.Mode)
	}
	return fmt.Sprintf("%s is under %s retention until %s and cannot be deleted before then",
		e.Name, e.Mode, e.Until.UTC().Format("2006-01-02 15:04:05 UTC")) // lifeboat.TimeLayout; storage imports none of ours
}

// Is makes errors.Is(err, ErrRetained) hold for a *RetainedError.
func (e *RetainedError) Is(target error) bool { return target == ErrRetained }

// Retainer is implemented by backends that can keep objects write-once for
// a retention period (S3 object lock). It is optional: callers check for it
// with a type assertion.
type Retainer interface {
	// Retention reports until when the object is retained and in which
	// mode. An object without retention yields the zero time, "" and nil.
	Retention(ctx context.Context, name string) (until time.Time, mode string, err error)

	// ExtendRetention moves the object's retain-until date to until. It
	// never shortens: if the current date is later or equal it does nothing
	// and returns nil.
	ExtendRetention(ctx context.Context, name string, until time.Time) error
}

// Temporaries is implemented by backends whose interrupted writes can leave
// data that is no object behind (the fs backend's temporary files, left
// by a process killed in the middle of a Put). Such data is never listed
// by List nor read as an object; it only takes space. It is optional:
// callers find it with Capability.
type Temporaries interface {
	// ListTemp calls fn for every such leftover, with its path relative
	// to the backend's root as Name.
	ListTemp(ctx context.Context, fn func(ObjectInfo) error) error
	// RemoveTemp removes the leftovers last modified before cutoff and
	// returns how many it removed. A cutoff well before any write that may
	// still run keeps it from removing a live writer's data.
	RemoveTemp(ctx context.Context, cutoff time.Time) (int, error)
}

// Capability returns the first backend implementing T in be's chain of
// decorators (each exposing its wrapped backend with Unwrap), for optional
// capabilities a decorator does not forward.
func Capability[T any](be Backend) (T, bool) {
	for be != nil {
		if c, ok := be.(T); ok {
			return c, true
		}
		u, ok := be.(interface{ Unwrap() Backend })
		if !ok {
			break
		}
		be = u.Unwrap()
	}
	var zero T
	return zero, false
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Backend stores immutable named objects. Implementations are safe for
// concurrent use.
type Backend interface {
	// Location names the backend for messages, without secrets
	// (for example "file:///var/lib/lifeboat/repo").
	Location() string

	// Put stores size bytes read from body under name, atomically and
	// durably. body may be read more than once (after Seek to the start) by
	// a retrying caller.
	Put(ctx context.Context, name string, body io.ReadSeeker, size int64) error

	// Get opens the whole object.
	Get(ctx context.Context, name string) (io.ReadCloser, error)

	// GetRange opens length bytes starting at offset. A range past the end
	// of the object is an error, not a short read.
	GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)

	// Stat returns the object's size and modification time.
	Stat(ctx context.Context, name string) (ObjectInfo, error)

	// List calls fn for every object whose name starts with prefix, in
	// lexical order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// Delete removes the object. Deleting a missing object returns an error
	// matching ErrNotFound.
	Delete(ctx context.Context, name string) error

	// Close releases what the backend holds: the connections of its HTTP
	// client, open handles. Its owner calls it after its last call, once
	// every stream it opened is closed; a call or a stream still running
	// may fail (cancel its context first to stop it cleanly). Close is
	// idempotent: calls after the first do nothing and return nil, so
	// that owners sharing a backend (a decorator, a repository, the
	// command that opened it) may each close it. After Close every call
	// but Location and Close fails with an error matching ErrClosed,
	// without touching the store.
	Close() error
}

// permanentError marks an error that retrying will not cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that IsPermanent reports true for it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or an error it wraps) is permanent.
// ErrNotFound, ErrExists and ErrClosed are permanent too: asking again
// changes nothing.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) ||
		errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled)
}

// ReadAll reads a whole object into memory. Callers use it for objects of
// bounded size (manifests, index files, WAL segments, packs).
func ReadAll(ctx context.Context, be Backend, name string) ([]byte, error) {
	rc, err := be.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}
