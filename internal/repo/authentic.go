package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Nothing read from the store is trusted before it authenticates. A
// credential that may only create objects (a backup host's, or a stolen
// one) can still put anything under any free name: junk, a truncated copy,
// a genuine object replayed under another name, a name that sorts after
// every genuine one. Such an object fails its hash or its authentication.
// A reader skips it, reports it (a warning naming it, and the list below
// that verify and check report), and carries on with the genuine objects:
// one planted object must not stop every backup and restore.
//
// This file is the one path by which standalone objects are read whole.

// ErrUnauthentic is matched (errors.Is) by an object that failed its hash
// check or its authentication, or is larger than any genuine object of its
// kind: planted by someone without the key, or damaged at rest. It matches
// ErrCorrupt too.
var ErrUnauthentic error = unauthentic{}

type unauthentic struct{}

func (unauthentic) Error() string { return "not authentic (planted without the key, or damaged)" }

// Is makes ErrUnauthentic match ErrCorrupt as well.
func (unauthentic) Is(target error) bool { return target == ErrCorrupt }

// unauthenticError is a check failure classified as ErrUnauthentic; its
// message is the failure's.
type unauthenticError struct{ err error }

func (e *unauthenticError) Error() string   { return e.err.Error() }
func (e *unauthenticError) Unwrap() error   { return e.err }
func (e *unauthenticError) Is(t error) bool { return t == ErrUnauthentic }

// asUnauthentic classifies a failed hash check or authentication.
func asUnauthentic(err error) error {
	if err == nil || errors.Is(err, ErrUnauthentic) {
		return err
	}
	return &unauthenticError{err}
}

// Size caps of objects read whole, by class. A genuine object never comes
// near its cap (writers split index objects well below it, and refuse a
// snapshot manifest above it); a larger object is refused before it is
// read into memory, as unauthentic.
const (
	maxConfigSize   = 1 << 20
	maxKeySize      = 64 << 10
	maxIndexSize    = 512 << 20
	maxSnapshotSize = 64 << 20
	maxMarkSize     = 256 << 20
	maxLockSize     = 64 << 10
	maxPinSize      = 64 << 10
	// maxNamedPayload is the largest payload of a named object, but for
	// the areas in largeNamedAreas.
	maxNamedPayload = 16 << 20
	// maxPackFloor bounds a pack read whole (verify --read-data, copy):
	// packs close at pack_size plus one frame.
	maxPackFloor = 256 << 20
)

// largeNamedAreas are the named-object areas whose payloads may exceed
// maxNamedPayload, with their own limit: WAL files, as large as
// PostgreSQL's largest segment (1 GiB).
var largeNamedAreas = map[string]int64{"wal": 1 << 30}

// sealedBound is the largest stored size of a named object whose payload
// has at most n bytes: framing, nonce and tag, and compression's worst case
// (S2 may grow incompressible data by a sixth; zstd by far less).
func sealedBound(n int64) int64 { return n + n/6 + 1024 }

// objectCap is the largest size of the object name that is read whole.
func (r *Repository) objectCap(name string) int64 {
	area, _, _ := strings.Cut(name, "/")
	switch area {
	case configName:
		return maxConfigSize
	case "keys":
		return maxKeySize
	case "index":
		return maxIndexSize
	case "snapshots":
		return maxSnapshotSize
	case "marks":
		return maxMarkSize
	case "locks":
		return maxLockSize
	case "pins":
		return maxPinSize
	case "data":
		return r.maxPackSize()
	}
	if n, ok := largeNamedAreas[area]; ok {
		return sealedBound(n)
	}
	return sealedBound(maxNamedPayload)
}

func (r *Repository) maxPackSize() int64 {
	return max(maxPackFloor, 4*int64(r.cfg.PackSize)+4*int64(r.cfg.FrameSize))
}

// readCapped reads a whole object of at most limit bytes; a larger one is
// refused as unauthentic, having read no more than limit+1 bytes of it.
func readCapped(ctx context.Context, be storage.Backend, name string, limit int64) ([]byte, error) {
	rc, err := be.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, asUnauthentic(fmt.Errorf("%s is larger than %d bytes, the most an object of its kind may have: %w", name, limit, ErrCorrupt))
	}
	return data, nil
}

// readVerified reads an object of at most limit bytes and opens it with
// open, which checks its hash and authenticates it; a failure of open is
// ErrUnauthentic. A read that fails a check is read once more: damage on
// the way (a flipped bit in a proxy, an error page instead of the object)
// passes with a second read, damage at rest or a planted object fails it
// too and is reported then.
func readVerified(ctx context.Context, be storage.Backend, log *slog.Logger, name string, limit int64, open func([]byte) ([]byte, error)) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		data, err := readCapped(ctx, be, name, limit)
		if errors.Is(err, ErrUnauthentic) {
			return nil, err // too large: reading it again reads as much
		}
		if err == nil {
			if data, err = open(data); err != nil && errors.Is(err, ErrCorrupt) {
				err = asUnauthentic(err)
			}
		}
		if err == nil || attempt > 0 || !damaged(err) {
			return data, err
		}
		log.Info("read failed its check; reading it again", "object", name, "err", err)
	}
}

// readObject reads the object name whole (within its class's cap) and
// opens it with open: the read path of every standalone object.
func (r *Repository) readObject(ctx context.Context, name string, limit int64, open func([]byte) ([]byte, error)) ([]byte, error) {
	if limit <= 0 {
		limit = r.objectCap(name)
	}
	data, err := readVerified(ctx, r.reads(), r.log, name, limit, open)
	if errors.Is(err, ErrUnauthentic) && r.recoverVersion(ctx, name, limit, func(b []byte) error { _, err := open(b); return err }, err) {
		return readVerified(ctx, r.reads(), r.log, name, limit, open) // from the authentic earlier version (versions.go)
	}
	return data, err
}

// getContentObject reads kind/<id>, checks its hash and opens it.
func (r *Repository) getContentObject(ctx context.Context, kind string, id ID) ([]byte, error) {
	name := kind + "/" + id.String()
	return r.readObject(ctx, name, 0, func(data []byte) ([]byte, error) {
		return r.openContent(kind, id, data)
	})
}

// openContent checks that data, stored as kind/<id>, hashes to id and
// authenticates as an object of that kind.
func (r *Repository) openContent(kind string, id ID, data []byte) ([]byte, error) {
	if hashObject(data) != id {
		return nil, fmt.Errorf("%s/%s: content does not match its name: %w", kind, id.String(), ErrCorrupt)
	}
	return r.crypt.openObject(kind, data)
}

// getObject reads and opens a sealed object bound to its name.
func (r *Repository) getObject(ctx context.Context, name string) ([]byte, error) {
	return r.readObject(ctx, name, 0, func(data []byte) ([]byte, error) {
		return r.crypt.openObject(name, data)
	})
}

// Unauthentic is an object a reader met that failed its hash check or its
// authentication, and was skipped.
type Unauthentic struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// metObjects collects the unauthentic objects the repository met, shared
// by copies of the Repository struct. Each is remembered with the number
// of the last time it was met, so that a caller (verify, check) can ask
// what was met since it started.
type metObjects struct {
	mu      sync.Mutex
	seq     uint64
	objects map[string]metObject
}

type metObject struct {
	reason string
	seq    uint64
}

// noteUnauthentic records an object that failed its check and was
// skipped. The first time in this process it is logged as a warning.
func (r *Repository) noteUnauthentic(name string, err error) {
	m := r.met
	if m == nil {
		return
	}
	m.mu.Lock()
	_, known := m.objects[name]
	m.seq++
	m.objects[name] = metObject{reason: err.Error(), seq: m.seq}
	m.mu.Unlock()
	if !known {
		r.log.Warn("skipped an object that failed its check: planted by someone without the key, or damaged; run lifeboat verify",
			"object", name, "repository", r.Location(), "err", err)
	}
}

// UnauthenticMark returns a mark: UnauthenticSince(mark) lists the
// unauthentic objects met after it was taken.
func (r *Repository) UnauthenticMark() uint64 {
	r.met.mu.Lock()
	defer r.met.mu.Unlock()
	return r.met.seq
}

// UnauthenticSince lists, by name, the unauthentic objects met after mark
// was taken (0: every one this process met).
func (r *Repository) UnauthenticSince(mark uint64) []Unauthentic {
	r.met.mu.Lock()
	defer r.met.mu.Unlock()
	var out []Unauthentic
	for name, o := range r.met.objects {
		if o.seq > mark {
			out = append(out, Unauthentic{Name: name, Reason: o.reason})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// skippable reports whether a listing may skip the object that failed
// with err (noting it): it is unauthentic. Anything else (the store
// unreachable, an authentic object that does not parse) stops the caller.
func (r *Repository) skippable(name string, err error) bool {
	if !errors.Is(err, ErrUnauthentic) {
		return false
	}
	r.noteUnauthentic(name, err)
	return true
}
