package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
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
func (r *Repository) PutNamed(ctx context.Context, area, asset, rel string, payload []byte, codec Codec) (existed bool, err error) {
	return r.PutNamedThen(ctx, area, asset, rel, payload, codec, nil)
}

// PutNamedThen is PutNamed that, once the object is stored, hands its full
// name and stored bytes to then (bytes nil when the object was there
// already), for passing them on to copies; the bytes are valid only during
// the call. An error from then is returned.
func (r *Repository) PutNamedThen(ctx context.Context, area, asset, rel string, payload []byte, codec Codec, then func(name string, stored []byte) error) (existed bool, err error) {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return false, err
	}
	var sealed []byte
	if codec == CodecS2 && len(payload) >= 1<<20 {
		var release func()
		sealed, release = r.crypt.sealS2Large(name, payload)
		defer release()
	} else {
		sealed = r.crypt.sealObjectCodec(name, payload, codec)
	}
	err = r.be.Put(ctx, name, bytes.NewReader(sealed), int64(len(sealed)))
	if err == nil {
		if then != nil {
			return false, then(name, sealed)
		}
		return false, nil
	}
	if !errors.Is(err, storage.ErrExists) {
		return false, fmt.Errorf("store %s: %w", name, err)
	}
	old, gerr := r.GetNamed(ctx, area, asset, rel)
	if gerr != nil {
		return true, fmt.Errorf("%s exists and cannot be compared: %w", name, gerr)
	}
	if !bytes.Equal(old, payload) {
		return true, fmt.Errorf("%s: %w", name, ErrConflict)
	}
	if then != nil {
		return true, then(name, nil)
	}
	return true, nil
}

// GetNamed reads and opens a named object; a missing one matches
// storage.ErrNotFound.
func (r *Repository) GetNamed(ctx context.Context, area, asset, rel string) ([]byte, error) {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return nil, err
	}
	return r.getObject(ctx, name)
}

// ListNamed calls fn with the rel part of every named object of
// area/asset whose rel starts with prefix, in lexical order.
func (r *Repository) ListNamed(ctx context.Context, area, asset, prefix string, fn func(rel string, size int64) error) error {
	if !namePart.MatchString(asset) {
		return fmt.Errorf("invalid asset name %q", asset)
	}
	base := area + "/" + asset + "/"
	return r.be.List(ctx, base+prefix, func(oi storage.ObjectInfo) error {
		return fn(strings.TrimPrefix(oi.Name, base), oi.Size)
	})
}

// HasNamed reports whether a named object exists, without reading it.
func (r *Repository) HasNamed(ctx context.Context, area, asset, rel string) (bool, error) {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return false, err
	}
	_, err = r.be.Stat(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", name, err)
	}
	return true, nil
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

// DeleteNamed removes a named object; expire is its only user.
func (r *Repository) DeleteNamed(ctx context.Context, area, asset, rel string) error {
	name, err := namedObject(area, asset, rel)
	if err != nil {
		return err
	}
	return r.be.Delete(ctx, name)
}
