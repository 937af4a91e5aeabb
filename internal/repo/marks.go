package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Packs are removed in two steps so that a backup running at the same time
// on another host never ends up referencing deleted data. A sweep first
// condemns the packs no snapshot uses and records them in a mark; only a
// later sweep, at least a grace period on and after finding them still
// unused, deletes them. A backup ignores condemned packs when it starts,
// and before it commits it checks the marks written while it ran: if one
// condemns data it relies on, it fails instead of recording a snapshot
// that could lose its data. docs/FORMAT.md describes the protocol.

// markArea holds the marks, named marks/<unix nanoseconds, 20 digits>-<random>
// so that their lexical order is the order they were written in.
const markArea = "marks/"

// markKeep is how long marks stay after a newer one supersedes them. A
// backup that runs longer than this cannot be told about every sweep and
// refuses to commit.
const markKeep = 30 * 24 * time.Hour

// mark is one sweep's record of condemned and deleted packs.
type mark struct {
	Created time.Time `json:"created"`
	// Condemned maps each pack no snapshot used at this sweep to the time
	// since when it has been unused without interruption.
	Condemned map[string]time.Time `json:"condemned"`
	// Swept maps packs deleted by this or recent sweeps to the time they
	// were deleted, so that index entries left behind by an interrupted
	// backup can be recognised as stale and dropped.
	Swept map[string]time.Time `json:"swept"`
}

func (m *mark) packSet(withSwept bool) map[ID]bool {
	out := make(map[ID]bool, len(m.Condemned)+len(m.Swept))
	add := func(s string) {
		if id, err := ParseID(s); err == nil {
			out[id] = true
		}
	}
	for s := range m.Condemned {
		add(s)
	}
	if withSwept {
		for s := range m.Swept {
			add(s)
		}
	}
	return out
}

func markName(t time.Time) string {
	return fmt.Sprintf("%s%020d-%s", markArea, t.UnixNano(), randomHex(4))
}

// markTime reads the time a mark was written from its name, so that old
// marks can be found without reading them.
func markTime(name string) (time.Time, bool) {
	digits, _, ok := strings.Cut(strings.TrimPrefix(name, markArea), "-")
	if !ok {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

func (r *Repository) markNames(ctx context.Context) ([]string, error) {
	return r.listNames(ctx, markArea)
}

func (r *Repository) loadMark(ctx context.Context, name string) (*mark, error) {
	plain, err := r.getObject(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	var m mark
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %v: %w", name, err, ErrCorrupt)
	}
	return &m, nil
}

// latestMark returns the newest mark: of the marks that authenticate, the
// one with the newest time in its payload. Marks that do not authenticate
// (a put-only credential can put junk under any name, including one that
// sorts after every genuine mark) are skipped and noted. A mark is sealed
// with its name, and its writer puts the time of its payload in its name,
// so names are read newest first and the first mark that authenticates
// with the time of its name ends the search. An empty mark stands for no
// sweep ever having condemned anything.
func (r *Repository) latestMark(ctx context.Context, names []string) (*mark, error) {
	var best *mark
	for i := len(names) - 1; i >= 0; i-- {
		m, err := r.loadMark(ctx, names[i])
		if errors.Is(err, storage.ErrNotFound) || err != nil && r.skippable(names[i], err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if best == nil || m.Created.After(best.Created) {
			best = m
		}
		if at, ok := markTime(names[i]); ok && at.Equal(m.Created) {
			break // every genuine mark named earlier is older
		}
	}
	if best == nil {
		best = &mark{}
	}
	if best.Condemned == nil {
		best.Condemned = map[string]time.Time{}
	}
	if best.Swept == nil {
		best.Swept = map[string]time.Time{}
	}
	return best, nil
}

// WriteView is what a backup saw of the repository when it started: the
// blobs it may reuse, and the marks that existed then.
type WriteView struct {
	// Index holds the blobs a new snapshot may reuse: those of packs no
	// sweep has condemned.
	Index  *Index
	marks  map[string]bool
	opened time.Time
}

// OpenWriteView loads the index for a backup, leaving out condemned packs.
// keep selects the blobs to hold, as for LoadIndex.
func (r *Repository) OpenWriteView(ctx context.Context, keep func(BlobType, ID) bool) (*WriteView, error) {
	names, err := r.markNames(ctx)
	if err != nil {
		return nil, err
	}
	latest, err := r.latestMark(ctx, names)
	if err != nil {
		return nil, err
	}
	condemned := latest.packSet(true)
	// Only stored packs: an old index object put back under its name
	// after its packs were swept must not make the backup reuse blobs
	// that are gone.
	stored, err := r.storedPacks(ctx)
	if err != nil {
		return nil, err
	}
	idx, err := r.loadIndex(ctx, keep, func(pack ID) bool { return stored[pack] && !condemned[pack] })
	if err != nil {
		return nil, err
	}
	v := &WriteView{Index: idx, marks: make(map[string]bool, len(names)), opened: r.Clock()}
	for _, n := range names {
		v.marks[n] = true
	}
	return v, nil
}

// ErrSwept is returned (wrapped) by CommitSnapshot when a sweep condemned
// data the snapshot needs while the backup ran.
var ErrSwept = errors.New("data condemned by a concurrent expire")

// CommitSnapshot saves s, a snapshot written by a backup that started with
// view v, after checking that no sweep since then condemned a pack it
// needs. Call it after the writer finished.
func (r *Repository) CommitSnapshot(ctx context.Context, v *WriteView, s *Snapshot) error {
	names, err := r.markNames(ctx)
	if err != nil {
		return err
	}
	// Marks are removed markKeep after they were superseded: a backup
	// running longer could miss a sweep.
	if r.Clock().Sub(v.opened) > markKeep-24*time.Hour {
		return fmt.Errorf("the backup ran since %s, longer than the marks of expire are kept: %w", v.opened.UTC().Format(time.RFC3339), ErrSwept)
	}
	doomed := map[ID]bool{}
	for _, n := range names {
		if v.marks[n] {
			continue
		}
		m, err := r.loadMark(ctx, n)
		if errors.Is(err, storage.ErrNotFound) || err != nil && r.skippable(n, err) {
			continue
		}
		if err != nil {
			return err
		}
		for id := range m.packSet(true) {
			doomed[id] = true
		}
	}
	if len(doomed) > 0 {
		if err := r.checkNotDoomed(ctx, s, doomed); err != nil {
			return err
		}
	}
	return r.SaveSnapshot(ctx, s)
}

// checkNotDoomed fails when a blob of s exists only in doomed packs.
func (r *Repository) checkNotDoomed(ctx context.Context, s *Snapshot, doomed map[ID]bool) error {
	safe := make(map[ID]bool)
	full := newIndex()
	err := r.eachIndexObject(ctx, func(_ string, packs []packEntry) {
		for _, p := range packs {
			if doomed[p.ID] {
				continue
			}
			full.add(p, nil)
			for _, f := range p.Frames {
				for _, b := range f.Blobs {
					safe[b.ID] = true
				}
			}
		}
	})
	if err != nil {
		return err
	}
	for _, t := range s.Tree {
		if !safe[t] {
			return fmt.Errorf("tree blob %s: %w", t.Short(), ErrSwept)
		}
	}
	err = r.WalkTree(ctx, full, s.Tree, func(n *Node) error {
		for _, b := range n.Blocks {
			if !safe[b.ID] {
				return fmt.Errorf("%s: blob %s: %w", n.Path, b.ID.Short(), ErrSwept)
			}
		}
		return nil
	})
	if errors.Is(err, ErrMissing) {
		// The base tree blob of a patched block list was in doomed packs.
		return fmt.Errorf("%v: %w", err, ErrSwept)
	}
	return err
}

// sweptPacks lists the packs recent sweeps deleted and that are still
// gone, so that readers skip index entries left behind by an interrupted
// backup. A pack stored again since (a copy catching up from its primary)
// is not swept.
func (r *Repository) sweptPacks(ctx context.Context) (map[ID]bool, error) {
	names, err := r.markNames(ctx)
	if err != nil {
		return nil, err
	}
	m, err := r.latestMark(ctx, names)
	if err != nil {
		return nil, err
	}
	out := map[ID]bool{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for s := range m.Swept {
		id, err := ParseID(s)
		if err != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := r.be.Stat(ctx, packName(id))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, storage.ErrNotFound):
				out[id] = true
			case err != nil:
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
