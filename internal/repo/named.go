package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// ErrConflict is returned (wrapped) when a named object exists with other
// content than the one being stored.
var ErrConflict = errors.New("object exists with different content")

var namePart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// namedObject builds the storage name area/<asset>/<rel>, refusing parts
// that could leave that area.
func namedObject(area, asset, rel string) (string, error) {
	if !namePart.MatchString(asset) {
		return "", fmt.Errorf("invalid asset name %q", asset)
	}
	for _, p := range strings.Split(rel, "/") {
		if !namePart.MatchString(p) {
			return "", fmt.Errorf("invalid object name %q", rel)
		}
	}
	return area + "/" + asset + "/" + rel, nil
}

// PutNamed stores payload as the named object area/asset/rel, compressed
// with codec, sealed and bound to its name. If the object exists with
// identical content it succeeds (an archiver retrying a push); with other
// content it fails with ErrConflict and the stored object stays as it was.
// If what exists does not authenticate (a squatter: a put-only credential
// can create any free name, and create-if-absent keeps it there), the
// payload is stored under the name's alternate (see altName), where
// GetNamed finds it, and the squatter is noted.
func (r *Repository) PutNamed(ctx context.Context, area, asset, rel string, payload []byte, codec Codec) (existed bool, err error) {
	return r.PutNamedThen(ctx, area, asset, rel, payload, codec, nil)
}

// PutNamedThen is PutNamed that, once the object is stored, hands its full
// storage name (the alternate, when the name is squatted) and stored bytes
// to then (bytes nil when the object was there already), for passing them
// on to copies; the bytes are valid only during the call. An error from
// then is returned.
func (r *Repository) PutNamedThen(ctx context.Context, area, asset, rel string, payload []byte, codec Codec, then func(name string, stored []byte) error) (existed bool, err error) {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return false, err
	}
	if sealedBound(int64(len(payload))) > r.objectCap(name) {
		return false, fmt.Errorf("store %s: %d bytes, more than readers of its area accept", name, len(payload))
	}
	if r.sealsName(name) {
		// Sealed once, to the data key and bound to the name itself; the
		// master key's sealing then binds it to where it is stored.
		if payload, err = r.sealNamed(name, payload, codec); err != nil {
			return false, fmt.Errorf("store %s: %w", name, err)
		}
		codec = CodecNone
	}
	existed, err = r.putNamed(ctx, name, payload, codec, then)
	if !errors.Is(err, ErrUnauthentic) {
		return existed, err
	}
	// A squatter holds the name: the alternate is a name only a key
	// holder can compute, so nobody without the key can squat it ahead.
	r.noteUnauthentic(name, err)
	alt := r.altName(name)
	existed, err = r.putNamed(ctx, alt, payload, codec, then)
	if err != nil {
		return existed, fmt.Errorf("%s is taken by an object that is not authentic, and its alternate %s: %w", name, alt, err)
	}
	r.log.Warn("a name was taken by an object that is not authentic (planted without the key, or damaged); stored under its alternate name",
		"object", name, "alternate", alt, "repository", r.Location())
	return existed, nil
}

// putNamed stores a named object under the storage name name, comparing
// with what exists there. An existing object that does not authenticate
// is returned as ErrUnauthentic.
func (r *Repository) putNamed(ctx context.Context, name string, payload []byte, codec Codec, then func(string, []byte) error) (bool, error) {
	var sealed []byte
	if codec == CodecS2 && len(payload) >= 1<<20 {
		var release func()
		sealed, release = r.crypt.sealS2Large(name, payload)
		defer release()
	} else {
		sealed = r.crypt.sealObjectCodec(name, payload, codec)
	}
	err := r.be.Put(ctx, name, bytes.NewReader(sealed), int64(len(sealed)))
	if err == nil {
		if then != nil {
			return false, then(name, sealed)
		}
		return false, nil
	}
	if !errors.Is(err, storage.ErrExists) {
		return false, fmt.Errorf("store %s: %w", name, err)
	}
	old, gerr := r.getObject(ctx, name)
	if errors.Is(gerr, ErrUnauthentic) {
		return true, gerr
	}
	if gerr != nil {
		return true, fmt.Errorf("%s exists and cannot be compared: %w", name, gerr)
	}
	if !r.samePayload(name, old, payload) {
		return true, fmt.Errorf("%s: %w", name, ErrConflict)
	}
	if then != nil {
		return true, then(name, nil)
	}
	return true, nil
}

// altSuffix starts the last part of an alternate name; 16 hex digits
// follow.
const altSuffix = ".alt-"

// altName is where a named object goes when its own name is squatted:
// name + ".alt-" + the first 8 bytes, in hex, of HMAC-SHA256 under the
// blob-ID key of "lifeboat/alt/v1", a NUL byte and name. Only a key holder
// can compute it, so it cannot be squatted ahead of time.
func (r *Repository) altName(name string) string {
	tag := r.crypt.mac([]byte("lifeboat/alt/v1\x00" + name))
	return name + altSuffix + hex.EncodeToString(tag[:8])
}

// altBase returns the name whose alternate name is, if it is one.
func (r *Repository) altBase(name string) (string, bool) {
	i := strings.LastIndex(name, altSuffix)
	if i <= 0 || len(name)-i != len(altSuffix)+16 {
		return "", false
	}
	base := name[:i]
	return base, r.altName(base) == name
}

// GetNamed reads and opens a named object; a missing one matches
// storage.ErrNotFound. Its size is capped by its area (docs/FORMAT.md). An
// object that does not authenticate under its name is noted, and the
// name's alternate read instead: a squatter took the name and the writer
// stored the object there (see PutNamed).
func (r *Repository) GetNamed(ctx context.Context, area, asset, rel string) ([]byte, error) {
	data, err := r.getNamed(ctx, area, asset, rel)
	if err != nil {
		return nil, err
	}
	if name := area + "/" + asset + "/" + rel; r.sealsName(name) {
		return r.openNamed(ctx, name, data)
	}
	return data, nil
}

func (r *Repository) getNamed(ctx context.Context, area, asset, rel string) ([]byte, error) {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return nil, err
	}
	data, err := r.getObject(ctx, name)
	if err == nil || !errors.Is(err, ErrUnauthentic) && !errors.Is(err, storage.ErrNotFound) {
		return data, err
	}
	alt := r.altName(name)
	altData, aerr := r.getObject(ctx, alt)
	if errors.Is(err, ErrUnauthentic) {
		r.noteUnauthentic(name, err)
	}
	switch {
	case aerr == nil:
		return altData, nil
	case errors.Is(aerr, storage.ErrNotFound):
		return nil, err
	case errors.Is(aerr, ErrUnauthentic):
		r.noteUnauthentic(alt, aerr)
	}
	return nil, fmt.Errorf("%s: %w", alt, aerr)
}

// ListNamed calls fn with the rel part of every named object of
// area/asset whose rel starts with prefix, in lexical order. An object
// stored under its alternate name is listed under its own name, once; if
// the name itself is listed too, a squatter holds it, and it is noted.
func (r *Repository) ListNamed(ctx context.Context, area, asset, prefix string, fn func(rel string, size int64) error) error {
	return r.ListNamedInfo(ctx, area, asset, prefix, func(rel string, oi storage.ObjectInfo) error {
		return fn(rel, oi.Size)
	})
}

// ListNamedInfo is ListNamed with what the store says of each object
// (its storage name, size and time).
func (r *Repository) ListNamedInfo(ctx context.Context, area, asset, prefix string, fn func(rel string, oi storage.ObjectInfo) error) error {
	if !namePart.MatchString(asset) {
		return fmt.Errorf("invalid asset name %q", asset)
	}
	base := area + "/" + asset + "/"
	// Names listed that may be followed by their alternate: everything
	// that sorts between a name and its alternate starts with the name.
	var stack []string
	return r.list(ctx, base+prefix, func(oi storage.ObjectInfo) error {
		for len(stack) > 0 && !strings.HasPrefix(oi.Name, stack[len(stack)-1]) {
			stack = stack[:len(stack)-1]
		}
		if own, ok := r.altBase(oi.Name); ok {
			if slices.Contains(stack, own) {
				r.noteUnauthentic(own, asUnauthentic(fmt.Errorf("%s is taken by an object that is not authentic; the genuine one is stored as %s: %w", own, oi.Name, ErrCorrupt)))
				return nil
			}
			return fn(strings.TrimPrefix(own, base), oi)
		}
		stack = append(stack, oi.Name)
		return fn(strings.TrimPrefix(oi.Name, base), oi)
	})
}

// HasNamed reports whether a named object exists (under its name or its
// alternate), without reading it.
func (r *Repository) HasNamed(ctx context.Context, area, asset, rel string) (bool, error) {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return false, err
	}
	for _, n := range []string{name, r.altName(name)} {
		_, err = r.be.Stat(ctx, n)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return false, fmt.Errorf("stat %s: %w", n, err)
		}
	}
	return false, nil
}

// NamedObject returns the storage name of a named object, for operations
// on the backend itself such as retention; it panics on an invalid name,
// which only a programming error can produce here.
func (r *Repository) NamedObject(area, asset, rel string) string {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		panic(err)
	}
	return name
}

// DeleteNamed removes a named object, and its alternate if there is one;
// expire is its only user.
func (r *Repository) DeleteNamed(ctx context.Context, area, asset, rel string) error {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return err
	}
	if err := r.be.Delete(ctx, r.altName(name)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return r.be.Delete(ctx, name)
}
