package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Pin is a legal hold on a snapshot: retention never removes a pinned
// snapshot, whatever its rules say, until the pin is removed.
type Pin struct {
	Snapshot ID        `json:"-"`
	Reason   string    `json:"reason"`
	By       string    `json:"by"` // user@host that pinned it
	Created  time.Time `json:"created"`
	// Until, when set, is how long the hold must last at least; on a
	// store with object lock the snapshot's objects are retained until
	// then.
	Until time.Time `json:"until,omitzero"`
}

const pinArea = "pins/"

// ErrPinned is returned (wrapped) when pinning a snapshot pinned already.
var ErrPinned = errors.New("snapshot is pinned already")

// PinSnapshot places a legal hold on snapshot id.
func (r *Repository) PinSnapshot(ctx context.Context, id ID, reason string, until time.Time) (*Pin, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("pin %s: give a reason (who asked for the hold, and why)", id.Short())
	}
	if _, err := r.LoadSnapshot(ctx, id); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	if user == "" {
		user = fmt.Sprintf("uid%d", os.Getuid())
	}
	p := &Pin{Snapshot: id, Reason: reason, By: user + "@" + host, Created: r.Clock().UTC(), Until: until.UTC()}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	name := pinArea + id.String()
	sealed := r.crypt.sealObject(name, payload)
	err = r.be.Put(ctx, name, strings.NewReader(string(sealed)), int64(len(sealed)))
	if errors.Is(err, storage.ErrExists) {
		return nil, fmt.Errorf("pin %s: %w", id.Short(), ErrPinned)
	}
	if err != nil {
		return nil, fmt.Errorf("pin %s: %w", id.Short(), err)
	}
	return p, nil
}

// UnpinSnapshot removes the hold on snapshot id; retention applies to it
// again at the next expire.
func (r *Repository) UnpinSnapshot(ctx context.Context, id ID) error {
	if err := r.be.Delete(ctx, pinArea+id.String()); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("snapshot %s is not pinned: %w", id.Short(), err)
		}
		return fmt.Errorf("unpin %s: %w", id.Short(), err)
	}
	return nil
}

// Pins returns the holds in the repository by snapshot.
func (r *Repository) Pins(ctx context.Context) (map[ID]*Pin, error) {
	names, err := r.listNames(ctx, pinArea)
	if err != nil {
		return nil, err
	}
	out := make(map[ID]*Pin, len(names))
	for _, n := range names {
		id, err := ParseID(strings.TrimPrefix(n, pinArea))
		if err != nil {
			r.noteUnauthentic(n, asUnauthentic(fmt.Errorf("%s is not named by a snapshot ID: %w", n, ErrCorrupt)))
			continue
		}
		plain, err := r.getObject(ctx, n)
		if errors.Is(err, storage.ErrNotFound) || err != nil && r.skippable(n, err) {
			continue // unpinned meanwhile, or planted
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", n, err)
		}
		var p Pin
		if err := json.Unmarshal(plain, &p); err != nil {
			return nil, fmt.Errorf("parse %s: %v: %w", n, err, ErrCorrupt)
		}
		p.Snapshot = id
		out[id] = &p
	}
	return out, nil
}
