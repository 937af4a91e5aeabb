package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
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
	if r.rcp != nil {
		if err := r.copyDataKeys(ctx, dst); err != nil {
			return err
		}
	}
	return copyObject(ctx, r.be, dst, configName)
}

// CopyStats counts what Sync transferred.
type CopyStats struct {
	Objects int
	Bytes   int64
	Present int // objects the copy already had
	// Skipped are objects of the primary that failed their hash or
	// authentication: copying them would spread what someone planted.
	Skipped []Unauthentic
	// Squatted are names the copy holds with other content than the
	// primary's genuine object (a put-only credential on the copy can
	// create any free name); named objects went to their alternate name
	// there, content-named ones could not be copied.
	Squatted []string
}

// syncOrder lists what a copy holds, in the order it is filled: data before
// the index that names it, the index before the snapshots that use it, so
// a snapshot never appears in the copy before everything it needs.
var syncOrder = []string{"data/", "index/", "meta/", "wal/", "restorepoints/", "snapshots/", "pins/", "drills/"}

// Sync copies to dst every object of r that dst lacks. Keys, locks and the
// configuration are not copied: the copy has its own key. Every object is
// authenticated before it is written to dst; one that fails is skipped and
// reported in the stats (and noted, for verify and check).
func (r *Repository) Sync(ctx context.Context, dst storage.Backend) (CopyStats, error) {
	var st CopyStats
	for _, prefix := range r.syncPrefixes() {
		have := make(map[string]int64)
		if err := dst.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			have[oi.Name] = oi.Size
			return nil
		}); err != nil {
			return st, fmt.Errorf("list %s in %s: %w", prefix, dst.Location(), err)
		}
		var objs []storage.ObjectInfo
		if err := r.be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			objs = append(objs, oi)
			return nil
		}); err != nil {
			return st, fmt.Errorf("list %s: %w", strings.TrimSuffix(prefix, "/"), err)
		}
		for _, oi := range objs {
			size, there := have[oi.Name]
			if there && size == oi.Size {
				st.Present++
				continue
			}
			var data, payload []byte
			var err error
			if oi.Size > r.objectCap(oi.Name) {
				err = asUnauthentic(fmt.Errorf("%s has %d bytes, more than an object of its kind may have: %w", oi.Name, oi.Size, ErrCorrupt))
			} else {
				data, payload, err = r.readGenuine(ctx, oi.Name)
			}
			if errors.Is(err, storage.ErrNotFound) {
				continue // expired meanwhile
			}
			if err != nil && r.skippable(oi.Name, err) {
				st.Skipped = append(st.Skipped, Unauthentic{Name: oi.Name, Reason: err.Error()})
				continue
			}
			if err != nil {
				return st, fmt.Errorf("copy %s: %w", oi.Name, err)
			}
			squatted, err := r.deliver(ctx, dst, oi.Name, data, payload)
			if err != nil {
				return st, err
			}
			if squatted {
				st.Squatted = append(st.Squatted, oi.Name)
			}
			if there && !squatted {
				st.Present++
				continue
			}
			st.Objects++
			st.Bytes += int64(len(data))
		}
	}
	return st, nil
}

// CopyQueued delivers one object named by the copy queue from src to dst,
// r being either repository (they share the key): stored is the object's
// bytes as the primary stored them, or nil to read them from src. The
// object is authenticated before it is written; one that fails is not
// written, only noted and logged, so that it does not hold up the queue.
// An object dst already holds is left alone.
func (r *Repository) CopyQueued(ctx context.Context, src, dst storage.Backend, name string, stored []byte) error {
	if stored == nil {
		if _, err := dst.Stat(ctx, name); err == nil {
			return nil
		}
		data, err := readCapped(ctx, src, name, r.objectCap(name))
		if errors.Is(err, ErrUnauthentic) {
			r.noteUnauthentic(name, err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
		stored = data
	}
	payload, err := r.openStored(name, stored)
	if err != nil {
		r.noteUnauthentic(name, asUnauthentic(err))
		return nil
	}
	_, err = r.deliver(ctx, dst, name, stored, payload)
	return err
}

// readGenuine reads an object of r whole and authenticates it: its bytes,
// and for a named object its payload (nil for the others).
func (r *Repository) readGenuine(ctx context.Context, name string) (data, payload []byte, err error) {
	payload, err = r.readObject(ctx, name, 0, func(b []byte) ([]byte, error) {
		data = b
		return r.openStored(name, b)
	})
	return data, payload, err
}

// openStored authenticates the stored bytes of an object that a copy
// holds: a pack's hash and sealed header, an index object's or manifest's
// hash and sealing, a named object's sealing under its name. It returns
// the payload of a named object, nil for the others.
func (r *Repository) openStored(name string, data []byte) ([]byte, error) {
	area, rest, _ := strings.Cut(name, "/")
	switch area {
	case "data":
		id, err := ParseID(rest[strings.LastIndex(rest, "/")+1:])
		if err != nil || packName(id) != name {
			return nil, fmt.Errorf("%s is not named by a hash: %w", name, ErrCorrupt)
		}
		return nil, r.checkPackBytes(id, data)
	case "index", "snapshots":
		id, err := ParseID(rest)
		if err != nil || area+"/"+id.String() != name {
			return nil, fmt.Errorf("%s is not named by a hash: %w", name, ErrCorrupt)
		}
		_, err = r.openContent(area, id, data)
		return nil, err
	}
	if int64(len(data)) > r.objectCap(name) {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", name, r.objectCap(name), ErrCorrupt)
	}
	return r.crypt.openObject(name, data)
}

// checkPackBytes checks a whole pack against its name and authenticates
// its header, so that a well-named pack of junk is not taken for one.
func (r *Repository) checkPackBytes(id ID, data []byte) error {
	if hashObject(data) != id {
		return fmt.Errorf("pack %s: content does not match its name: %w", id.Short(), ErrCorrupt)
	}
	if len(data) < 4 {
		return fmt.Errorf("pack %s: %d bytes: %w", id.Short(), len(data), ErrCorrupt)
	}
	hl := int(binary.LittleEndian.Uint32(data[len(data)-4:]))
	if hl > len(data)-4 {
		return fmt.Errorf("pack %s: header length %d exceeds pack: %w", id.Short(), hl, ErrCorrupt)
	}
	if _, err := r.crypt.open(nil, data[len(data)-4-hl:len(data)-4], []byte("pack header")); err != nil {
		return fmt.Errorf("pack %s header: %w", id.Short(), err)
	}
	return nil
}

// deliver writes the genuine object name (its stored bytes data, and for
// a named object its payload) to dst. When dst holds other bytes under the
// name, it reports the name squatted: a named object then goes, sealed
// anew, to its alternate name there, where readers look; an object named
// by its hash cannot move, and verify of the copy reports it.
func (r *Repository) deliver(ctx context.Context, dst storage.Backend, name string, data, payload []byte) (squatted bool, err error) {
	err = dst.Put(ctx, name, bytes.NewReader(data), int64(len(data)))
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, storage.ErrExists) {
		return false, fmt.Errorf("copy %s to %s: %w", name, dst.Location(), err)
	}
	oi, err := dst.Stat(ctx, name)
	if err != nil {
		return false, fmt.Errorf("copy %s to %s: %w", name, dst.Location(), err)
	}
	if oi.Size == int64(len(data)) {
		return false, nil // the same object, stored by an earlier copy
	}
	theirs, err := readCapped(ctx, dst, name, r.objectCap(name))
	if err == nil {
		if _, oerr := r.openStored(name, theirs); oerr == nil {
			if strings.HasPrefix(name, pinArea) {
				// A hold on the same snapshot, placed in the copy too
				// (lifeboat pin holds it in every repository): the two
				// differ only in when they were placed, and either keeps
				// the snapshot.
				return false, nil
			}
			// Authentic, with other bytes: a key holder wrote it. Not
			// for a copy to decide which one is right.
			return false, fmt.Errorf("copy %s to %s: the copy holds an authentic object with other content: %w", name, dst.Location(), ErrConflict)
		}
	} else if !errors.Is(err, ErrUnauthentic) {
		return false, fmt.Errorf("copy %s: read what %s holds: %w", name, dst.Location(), err)
	}
	r.log.Warn("the copy holds an object that is not authentic under this name", "object", name, "copy", dst.Location())
	if payload == nil {
		return true, nil
	}
	alt := r.altName(name)
	codec := CodecZstd
	if len(payload) >= 1<<20 {
		codec = CodecS2
	}
	sealed := r.crypt.sealObjectCodec(alt, payload, codec)
	if err := dst.Put(ctx, alt, bytes.NewReader(sealed), int64(len(sealed))); err != nil && !errors.Is(err, storage.ErrExists) {
		return true, fmt.Errorf("copy %s to %s as %s: %w", name, dst.Location(), alt, err)
	}
	return true, nil
}

func copyObject(ctx context.Context, src, dst storage.Backend, name string) error {
	data, err := readCapped(ctx, src, name, maxConfigSize)
	if err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	err = dst.Put(ctx, name, bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("copy %s to %s: %w", name, dst.Location(), err)
	}
	return nil
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
