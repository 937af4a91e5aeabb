package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Snapshot is the manifest of one backup. Kind-specific details (LSNs for
// PostgreSQL, for example) travel in Extra, which this package does not
// interpret.
type Snapshot struct {
	ID        ID              `json:"-"`
	Version   int             `json:"version"`
	Asset     string          `json:"asset"`
	Kind      string          `json:"kind"`
	Type      string          `json:"type"`
	Parent    *ID             `json:"parent,omitempty"`
	Host      string          `json:"host"`
	StartTime time.Time       `json:"start_time"`
	EndTime   time.Time       `json:"end_time"`
	Tree      []ID            `json:"tree"`
	Nodes     int             `json:"nodes"`
	Stats     SnapshotStats   `json:"stats"`
	Extra     json.RawMessage `json:"extra,omitempty"`
}

// SnapshotStats are the sizes of a backup.
type SnapshotStats struct {
	Files       int64 `json:"files"`
	BytesRead   int64 `json:"bytes_read"`   // bytes read from the source
	BytesTotal  int64 `json:"bytes_total"`  // bytes the snapshot restores
	BytesNew    int64 `json:"bytes_new"`    // plaintext bytes of new blobs
	BytesStored int64 `json:"bytes_stored"` // bytes written to storage
	BlobsNew    int64 `json:"blobs_new"`
	// ListsPatched counts files whose block list the tree stores as a
	// patch of the parent's (FORMAT.md §6).
	ListsPatched int64 `json:"lists_patched,omitempty"`
}

// SaveSnapshot stores a manifest and sets its ID. Call it only after the
// writer that stored the tree and its data finished.
func (r *Repository) SaveSnapshot(ctx context.Context, s *Snapshot) error {
	s.Version = formatVersion
	if s.Asset == "" || s.Kind == "" || len(s.Tree) == 0 {
		return fmt.Errorf("snapshot without asset, kind or tree")
	}
	payload, err := json.Marshal(s)
	if err != nil {
		return err
	}
	// Readers refuse larger manifests unread (as a planted object could
	// be one): storing one would store a snapshot nobody can read.
	if len(payload) > maxSnapshotSize-4096 {
		return fmt.Errorf("snapshot of %s: the manifest has %d bytes, more than the %d a manifest may have", s.Asset, len(payload), maxSnapshotSize-4096)
	}
	id, err := r.putContentObject(ctx, "snapshots", payload)
	if err != nil {
		return err
	}
	s.ID = id
	return nil
}

// LoadSnapshot reads one manifest.
func (r *Repository) LoadSnapshot(ctx context.Context, id ID) (*Snapshot, error) {
	plain, err := r.getContentObject(ctx, "snapshots", id)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id.Short(), err)
	}
	var s Snapshot
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, fmt.Errorf("snapshot %s: parse: %v: %w", id.Short(), err, ErrCorrupt)
	}
	if s.Version != formatVersion {
		return nil, fmt.Errorf("snapshot %s: format version %d is not supported", id.Short(), s.Version)
	}
	s.ID = id
	return &s, nil
}

// SnapshotIDs lists the IDs of all manifests. An object under snapshots/
// whose name is not an ID cannot be a manifest: it is skipped and noted.
func (r *Repository) SnapshotIDs(ctx context.Context) ([]ID, error) {
	var ids []ID
	err := r.be.List(ctx, "snapshots/", func(oi storage.ObjectInfo) error {
		id, err := ParseID(strings.TrimPrefix(oi.Name, "snapshots/"))
		if err == nil && "snapshots/"+id.String() != oi.Name {
			err = errors.New("not lower-case")
		}
		if err != nil {
			r.noteUnauthentic(oi.Name, asUnauthentic(fmt.Errorf("%s is not named by a hash: %w", oi.Name, ErrCorrupt)))
			return nil
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return ids, nil
}

// Snapshots loads every manifest (of one asset when asset is not empty),
// ordered by end time. A manifest that fails its hash or authentication
// (planted, or damaged at rest) is skipped and noted, for verify and check
// to report; any other failure to read one is an error, not a silent gap.
func (r *Repository) Snapshots(ctx context.Context, asset string) ([]*Snapshot, error) {
	if m := memoOf(ctx); m != nil {
		all, err := m.snapshots(ctx, r)
		if err != nil {
			return nil, err
		}
		var res []*Snapshot
		for _, s := range all {
			if asset == "" || s.Asset == asset {
				res = append(res, s)
			}
		}
		return res, nil
	}
	return r.loadSnapshots(ctx, asset)
}

// loadSnapshots is Snapshots read from the store.
func (r *Repository) loadSnapshots(ctx context.Context, asset string) ([]*Snapshot, error) {
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Snapshot, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := r.LoadSnapshot(ctx, id)
			if errors.Is(err, storage.ErrNotFound) || err != nil && r.skippable("snapshots/"+id.String(), err) {
				return // deleted by expire meanwhile, or not authentic
			}
			out[i], errs[i] = s, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var res []*Snapshot
	for _, s := range out {
		if s != nil && (asset == "" || s.Asset == asset) {
			res = append(res, s)
		}
	}
	sort.Slice(res, func(i, j int) bool {
		if !res[i].EndTime.Equal(res[j].EndTime) {
			return res[i].EndTime.Before(res[j].EndTime)
		}
		return res[i].ID.String() < res[j].ID.String()
	})
	return res, nil
}

// FindSnapshot resolves a full ID or a unique prefix of at least 4 digits.
func (r *Repository) FindSnapshot(ctx context.Context, prefix string) (*Snapshot, error) {
	if len(prefix) < 4 {
		return nil, fmt.Errorf("snapshot id %q: give at least 4 hex digits", prefix)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var match []ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), strings.ToLower(prefix)) {
			match = append(match, id)
		}
	}
	if len(match) > 1 {
		// Only genuine manifests count: an object planted under a name
		// sharing the prefix must not make a genuine one ambiguous.
		var genuine []ID
		for _, id := range match {
			_, err := r.LoadSnapshot(ctx, id)
			if err != nil && (errors.Is(err, storage.ErrNotFound) || r.skippable("snapshots/"+id.String(), err)) {
				continue
			}
			genuine = append(genuine, id)
		}
		match = genuine
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("no snapshot %q in %s: %w", prefix, r.Location(), storage.ErrNotFound)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot id %q is ambiguous (%d matches): give more digits", prefix, len(match))
}
