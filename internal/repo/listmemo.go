package repo

import (
	"context"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// A listing memo lets a read-only report that asks the same listing more
// than once (info: the newest WAL for the status row, then every segment
// for the recovery windows; status: the snapshots of each of hundreds of
// assets sharing a repository) read it from the store once. On S3 a WAL
// area of a month is thousands of objects and several pages per listing.

type listMemoKey struct{}

type listMemo struct {
	mu    sync.Mutex
	lists map[string][]storage.ObjectInfo
	snaps map[string][]*Snapshot // every snapshot of a repository, by location
}

// WithListMemo returns a context under which named-area listings are read
// from the store once per repository and prefix, then served from memory.
// Only for work that writes nothing it then expects to list: what is
// stored afterwards is not seen.
// A context that has a memo already keeps it.
func WithListMemo(ctx context.Context) context.Context {
	if memoOf(ctx) != nil {
		return ctx
	}
	return context.WithValue(ctx, listMemoKey{}, &listMemo{lists: map[string][]storage.ObjectInfo{}, snaps: map[string][]*Snapshot{}})
}

func memoOf(ctx context.Context) *listMemo {
	m, _ := ctx.Value(listMemoKey{}).(*listMemo)
	return m
}

// snapshots is every snapshot of r, loaded once. Callers share the
// manifests: they must not change them.
func (m *listMemo) snapshots(ctx context.Context, r *Repository) ([]*Snapshot, error) {
	key := r.Location()
	m.mu.Lock()
	all, ok := m.snaps[key]
	m.mu.Unlock()
	if ok {
		return all, nil
	}
	all, err := r.loadSnapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.snaps[key] = all
	m.mu.Unlock()
	return all, nil
}

// list is the backend's List, through the context's memo when it has one.
func (r *Repository) list(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	m := memoOf(ctx)
	if m == nil {
		return r.be.List(ctx, prefix, fn)
	}
	key := r.Location() + "\x00" + prefix
	m.mu.Lock()
	ois, ok := m.lists[key]
	m.mu.Unlock()
	if !ok {
		if err := r.be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			ois = append(ois, oi)
			return nil
		}); err != nil {
			return err
		}
		m.mu.Lock()
		m.lists[key] = ois
		m.mu.Unlock()
	}
	for _, oi := range ois {
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}
