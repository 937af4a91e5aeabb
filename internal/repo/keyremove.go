package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// ErrLastKey is returned (wrapped) when removing a key would leave no key
// that opens the repository, or would lock out the process asking.
var ErrLastKey = errors.New("the repository would be left without a usable key")

// Keys lists the repository's key objects (keys/<id>) whose content
// matches their name; a planted or damaged one is skipped and noted.
func (r *Repository) Keys(ctx context.Context) ([]string, error) {
	names, err := listNames(ctx, r.be, "keys/")
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []string
	for _, name := range names {
		data, err := readKeyObject(ctx, r.be, name)
		if err == nil {
			_, err = parseKeyObject(name, data)
		}
		if err != nil {
			r.noteUnauthentic(name, asUnauthentic(fmt.Errorf("%s: %w", name, err)))
			continue
		}
		out = append(out, name)
	}
	return out, nil
}

// RemoveKey deletes a key object, so the key file or passphrase it
// wraps the master key for no longer opens the repository: how a key
// that left with a person or a host is retired. It refuses to remove the
// key this process opened the repository with (the caller would lock
// itself out; open with another key first) and the last key. The master
// key is unchanged: a copy of the removed object, or of the master key
// itself, still opens the data (docs/storage.md, "Key files").
func (r *Repository) RemoveKey(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, "keys/") {
		name = "keys/" + name
	}
	keys, err := r.Keys(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, k := range keys {
		found = found || k == name
	}
	switch {
	case !found:
		return fmt.Errorf("remove key %s: no such key in %s (keys: %s): %w", name, r.Location(), summarise(keys, 10), storage.ErrNotFound)
	case name == r.keyObj:
		return fmt.Errorf("remove key %s: this run opened %s with it; open the repository with another key (key_file or passphrase) to remove this one: %w", name, r.Location(), ErrLastKey)
	case len(keys) < 2:
		return fmt.Errorf("remove key %s: it is the only key of %s: %w", name, r.Location(), ErrLastKey)
	}
	if err := r.be.Delete(ctx, name); err != nil {
		return fmt.Errorf("remove key %s: %w", name, err)
	}
	return nil
}
