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

// SweepOptions shape Sweep.
type SweepOptions struct {
	// Grace is how long a pack must be unused, and how old it must be,
	// before it is deleted. It must exceed the time a backup may pause
	// between checking the marks and storing its manifest.
	Grace time.Duration
	// DryRun computes the report without writing or deleting anything.
	DryRun bool
	// Snapshots are those whose data stays: every snapshot listed when the
	// expire run started, including those it deletes in this run. Counting
	// the latter keeps their packs one more grace period, which is what
	// makes a backup that took one of them as its parent safe.
	Snapshots []*Snapshot
	// KeepUntil, when the backend keeps objects under retention, says how
	// long each snapshot must stay; Sweep extends the retention of the
	// snapshot's manifest, packs and index objects to at least that date.
	KeepUntil map[ID]time.Time
	// RepackUnused is the share (0 to 1) of a pack's bytes that must be
	// unused for the sweep to copy its live blobs into new packs and
	// condemn it; 0 never repacks. Whole-pack deletion alone frees little
	// when live and dead blocks share packs, as they do after incremental
	// backups.
	RepackUnused float64
}

// PackState is one pack as the sweep saw it.
type PackState struct {
	Name  string
	Size  int64
	Since time.Time // unused since
	Until time.Time // under retention until (Retained only)
}

// SweepReport says what a sweep found and did.
type SweepReport struct {
	Packs, UsedPacks int
	Condemned        []PackState // unused, deleted once unused for the grace period
	Deleted          []PackState
	Retained         []PackState // unused long enough, but under retention
	BytesFreed       int64
	IndexesRewritten int
	StaleEntries     int   // index entries of packs already deleted, dropped
	Extended         int   // objects whose retention was extended
	Young            int   // unused packs left alone: younger than the grace period or written under a live lock
	Repacked         int   // partly used packs whose live blobs were copied, condemned since
	RepackedBytes    int64 // live bytes copied by the repack
	TempRemoved      int   // temporary files of killed writes removed (verify_tidy.go)
}

// sweepState is what one sweep works from.
type sweepState struct {
	prev      *mark
	indexes   map[string][]packEntry // index object → its entries
	where     map[ID]ID              // blob → the pack the sweep counts it in
	idx       *Index
	stored    map[ID]storage.ObjectInfo
	used      map[ID]bool
	usedBlobs map[ID]struct{}
	packUntil map[ID]time.Time
	bases     baseCache // of the tree walk
}

// Sweep removes packs no snapshot uses, in two steps separated by the
// grace period (see marks.go), and extends retention of what stays.
func (r *Repository) Sweep(ctx context.Context, opts SweepOptions) (*SweepReport, error) {
	now := r.Clock().UTC()
	names, err := r.markNames(ctx)
	if err != nil {
		return nil, err
	}
	st := &sweepState{used: map[ID]bool{}, usedBlobs: map[ID]struct{}{}, packUntil: map[ID]time.Time{}}
	if st.prev, err = r.latestMark(ctx, names); err != nil {
		return nil, err
	}
	if err := r.loadSweepIndex(ctx, st); err != nil {
		return nil, err
	}
	if err := r.markUsed(ctx, st, opts); err != nil {
		return nil, err
	}
	protect, err := r.oldestLiveLock(ctx)
	if err != nil {
		return nil, err
	}
	rep := &SweepReport{Packs: len(st.stored), UsedPacks: len(st.used)}
	next := &mark{Created: now, Condemned: map[string]time.Time{}, Swept: map[string]time.Time{}}
	for s, t := range st.prev.Swept {
		if now.Sub(t) < markKeep {
			next.Swept[s] = t
		}
	}
	var doomed []ID
	for id, oi := range st.stored {
		if st.used[id] {
			continue
		}
		if now.Sub(oi.ModTime) < opts.Grace || (!protect.IsZero() && !oi.ModTime.Before(protect)) {
			rep.Young++
			continue
		}
		since, ok := st.prev.Condemned[id.String()]
		if !ok {
			since = now
		}
		next.Condemned[id.String()] = since
		ps := PackState{Name: oi.Name, Size: oi.Size, Since: since}
		if now.Sub(since) < opts.Grace {
			rep.Condemned = append(rep.Condemned, ps)
			continue
		}
		doomed = append(doomed, id)
	}
	sortIDs(doomed)
	repack := r.repackCandidates(st, opts, now, protect)
	if len(repack) > 0 && !opts.DryRun {
		if err := r.repack(ctx, st, repack, rep); err != nil {
			return nil, err
		}
		// Their live blobs have a second home now; from the next sweep on
		// they count there, and these packs are unused.
		for _, id := range repack {
			next.Condemned[id.String()] = now
		}
	} else {
		rep.Repacked = len(repack)
	}
	// An index object that cannot be deleted keeps its packs: deleting
	// them would leave the index naming missing packs.
	retainedUntil, err := r.retainedPacks(ctx, st, doomed, now)
	if err != nil {
		return nil, err
	}
	var deleting []ID
	for _, id := range doomed {
		oi := st.stored[id]
		ps := PackState{Name: oi.Name, Size: oi.Size, Since: next.Condemned[id.String()]}
		if until, ok := retainedUntil[id]; ok {
			ps.Until = until
			rep.Retained = append(rep.Retained, ps)
			continue
		}
		deleting = append(deleting, id)
		next.Swept[id.String()] = now
	}
	// Index entries of packs an earlier sweep deleted come from a backup
	// that was interrupted (and refused to commit) meanwhile.
	stale := map[ID]bool{}
	for _, packs := range st.indexes {
		for _, p := range packs {
			if _, ok := st.stored[p.ID]; !ok {
				if _, swept := st.prev.Swept[p.ID.String()]; swept {
					stale[p.ID] = true
				}
			}
		}
	}
	if opts.DryRun {
		for _, id := range deleting {
			oi := st.stored[id]
			rep.Deleted = append(rep.Deleted, PackState{Name: oi.Name, Size: oi.Size, Since: next.Condemned[id.String()]})
			rep.BytesFreed += oi.Size
		}
		return rep, nil
	}
	// The mark goes first: a backup that commits from now on sees it.
	payload, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	if err := r.putFreshObject(ctx, markName(now), payload); err != nil {
		return nil, fmt.Errorf("write mark: %w", err)
	}
	gone := map[ID]bool{}
	for _, id := range deleting {
		gone[id] = true
	}
	for id := range stale {
		gone[id] = true
	}
	if err := r.rewriteIndexes(ctx, st, gone, rep); err != nil {
		return nil, err
	}
	if err := r.deletePacks(ctx, st, deleting, rep); err != nil {
		return rep, err
	}
	r.removeTemporaries(ctx, now.Add(-opts.Grace), rep)
	if len(opts.KeepUntil) > 0 {
		if err := r.extendRetention(ctx, st, opts, rep); err != nil {
			return rep, err
		}
	}
	for _, n := range names {
		if written, ok := markTime(n); ok && now.Sub(written) > markKeep {
			r.deleteQuietly(ctx, n)
		}
	}
	return rep, nil
}

// liveIn reports whether blob is used and counted in pack: a blob stored
// twice is live in one place only.
func (st *sweepState) liveIn(blob, pack ID) bool {
	_, used := st.usedBlobs[blob]
	return used && st.where[blob] == pack
}

// repackCandidates lists the used packs old enough to judge whose unused
// share reaches opts.RepackUnused.
func (r *Repository) repackCandidates(st *sweepState, opts SweepOptions, now, protect time.Time) []ID {
	if opts.RepackUnused <= 0 {
		return nil
	}
	seen := map[ID]bool{}
	var out []ID
	for _, packs := range st.indexes {
		for _, p := range packs {
			oi, stored := st.stored[p.ID]
			if seen[p.ID] || !stored || !st.used[p.ID] {
				continue
			}
			seen[p.ID] = true
			if now.Sub(oi.ModTime) < opts.Grace || (!protect.IsZero() && !oi.ModTime.Before(protect)) {
				continue
			}
			var total, live int64
			for _, f := range p.Frames {
				for _, b := range f.Blobs {
					total += int64(b.Len)
					if st.liveIn(b.ID, p.ID) {
						live += int64(b.Len)
					}
				}
			}
			if total > 0 && float64(total-live) >= opts.RepackUnused*float64(total) {
				out = append(out, p.ID)
			}
		}
	}
	sortIDs(out)
	return out
}

// repack copies the live blobs of packs into new packs through a writer,
// which stores them, with their index, before the old packs are condemned.
func (r *Repository) repack(ctx context.Context, st *sweepState, packs []ID, rep *SweepReport) error {
	entries := map[ID]packEntry{}
	for _, list := range st.indexes {
		for _, p := range list {
			entries[p.ID] = p
		}
	}
	w := r.NewWriterContext(ctx, nil)
	sink := w.NewSink()
	for _, id := range packs {
		var off int64
		for _, f := range entries[id].Frames {
			fl := FrameLoc{Pack: id, Offset: off, Sealed: f.SealedLen, RawLen: f.RawLen, Flags: f.Flags}
			off += int64(f.SealedLen)
			live := false
			for _, b := range f.Blobs {
				if st.liveIn(b.ID, id) {
					live = true
				}
			}
			if !live {
				continue
			}
			if fl.Flags&frameFlagSealed != 0 {
				// Sealed to a data key: moved as it is, so that a host
				// without the identity can repack too.
				if err := r.repackSealedFrame(ctx, w, fl, f); err != nil {
					w.Abort()
					return fmt.Errorf("repack %s: %w", packName(id), err)
				}
				for _, b := range f.Blobs {
					if st.liveIn(b.ID, id) {
						rep.RepackedBytes += int64(b.Len)
					}
				}
				continue
			}
			raw, err := r.ReadFrame(ctx, fl)
			if err != nil {
				w.Abort()
				return fmt.Errorf("repack %s: %w", packName(id), err)
			}
			var inner uint32
			for _, b := range f.Blobs {
				if uint64(inner)+uint64(b.Len) > uint64(len(raw)) {
					w.Abort()
					return fmt.Errorf("repack %s: blob %s outside its frame: %w", packName(id), b.ID.Short(), ErrCorrupt)
				}
				data := raw[inner : inner+b.Len]
				inner += b.Len
				if !st.liveIn(b.ID, id) {
					continue
				}
				if err := r.checkBlob(b.ID, data); err != nil {
					w.Abort()
					return fmt.Errorf("repack %s: %w", packName(id), err)
				}
				if _, err := sink.SaveID(ctx, b.Type, b.ID, data); err != nil {
					w.Abort()
					return fmt.Errorf("repack %s: %w", packName(id), err)
				}
				rep.RepackedBytes += int64(b.Len)
			}
		}
		rep.Repacked++
	}
	if err := sink.Flush(ctx); err != nil {
		w.Abort()
		return fmt.Errorf("repack: %w", err)
	}
	if err := w.Finish(ctx); err != nil {
		return fmt.Errorf("repack: %w", err)
	}
	return nil
}

func sortIDs(ids []ID) {
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
}

// loadSweepIndex reads every index object and lists the stored packs.
// Unlike a backup's view it must be complete: a blob the sweep cannot find
// would make its pack look unused. An index object that does not
// authenticate is skipped (and noted): it cannot name genuine data, and a
// blob only it could place is missing for the sweep, which then deletes
// nothing.
func (r *Repository) loadSweepIndex(ctx context.Context, st *sweepState) error {
	st.stored = map[ID]storage.ObjectInfo{}
	if err := r.be.List(ctx, "data/", func(oi storage.ObjectInfo) error {
		id, err := ParseID(oi.Name[strings.LastIndex(oi.Name, "/")+1:])
		if err != nil || oi.Name != packName(id) {
			r.noteUnauthentic(oi.Name, asUnauthentic(fmt.Errorf("%s is not named like a pack: %w", oi.Name, ErrCorrupt)))
			return nil
		}
		st.stored[id] = oi
		return nil
	}); err != nil {
		return err
	}
	st.indexes = map[string][]packEntry{}
	st.idx = newIndex()
	st.where = map[ID]ID{}
	condemned := st.prev.packSet(true)
	// A blob stored twice counts in one pack only, preferring one that
	// is stored (an old index object put back may name a deleted pack)
	// and then one that is not condemned.
	rank := func(p ID) int {
		_, stored := st.stored[p]
		switch {
		case !stored:
			return 0
		case condemned[p]:
			return 1
		}
		return 2
	}
	err := r.eachIndexObject(ctx, func(n string, packs []packEntry) {
		st.indexes[n] = packs
		for _, p := range packs {
			st.idx.add(p, nil)
			for _, f := range p.Frames {
				for _, b := range f.Blobs {
					if cur, ok := st.where[b.ID]; !ok || rank(p.ID) > rank(cur) {
						st.where[b.ID] = p.ID
					}
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("%w (run lifeboat verify; expire deletes nothing while the index is damaged)", err)
	}
	return nil
}

// markUsed walks every snapshot and records the packs it needs. A tree
// blob shared by many snapshots is read once.
func (r *Repository) markUsed(ctx context.Context, st *sweepState, opts SweepOptions) error {
	treePacks := map[ID][]ID{}
	for _, s := range opts.Snapshots {
		until := opts.KeepUntil[s.ID]
		note := func(pack ID) {
			st.used[pack] = true
			if until.After(st.packUntil[pack]) {
				st.packUntil[pack] = until
			}
		}
		for _, t := range s.Tree {
			packs, ok := treePacks[t]
			if !ok {
				var err error
				if packs, err = r.treeBlobPacks(ctx, st, t); err != nil {
					return fmt.Errorf("snapshot %s (%s): %w (expire deletes nothing while a snapshot cannot be read)", s.ID.Short(), s.Asset, err)
				}
				treePacks[t] = packs
			}
			for _, p := range packs {
				note(p)
			}
		}
	}
	return nil
}

// treeBlobPacks lists the packs holding a tree blob and the blocks it names.
func (r *Repository) treeBlobPacks(ctx context.Context, st *sweepState, t ID) ([]ID, error) {
	nodes, err := r.treeBlobNodes(ctx, st.idx, t, &st.bases)
	if err != nil {
		return nil, err
	}
	set := map[ID]bool{st.where[t]: true}
	st.usedBlobs[t] = struct{}{}
	for _, n := range nodes {
		if base := n.list.blob; base != t {
			// A patched list: its base tree blob is needed too.
			set[st.where[base]] = true
			st.usedBlobs[base] = struct{}{}
		}
		for _, b := range n.Blocks {
			p, ok := st.where[b.ID]
			if !ok {
				return nil, fmt.Errorf("%s: blob %s is not in the index: %w", n.Path, b.ID.Short(), ErrMissing)
			}
			set[p] = true
			st.usedBlobs[b.ID] = struct{}{}
		}
	}
	out := make([]ID, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	return out, nil
}

// oldestLiveLock returns when the oldest live lock of a writer was taken:
// packs written since may belong to a backup still running.
func (r *Repository) oldestLiveLock(ctx context.Context) (time.Time, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var oldest time.Time
	for _, li := range locks {
		if li.Scope == expireScope || r.stale(li) {
			continue
		}
		// Clocks of other hosts drift; a minute of slack costs nothing.
		t := li.Created.Add(-time.Minute)
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest, nil
}

// expireScope is the lock scope of expire runs, which must not overlap.
const expireScope = "expire"

// LockExpire takes the lock that keeps two expire runs apart.
func (r *Repository) LockExpire(ctx context.Context, wait time.Duration) (*Lock, error) {
	return r.Lock(ctx, expireScope, "expire", true, wait)
}

// retainedPacks returns, for the doomed packs that cannot be deleted yet,
// the date they can: their own retention or that of an index object that
// names them.
func (r *Repository) retainedPacks(ctx context.Context, st *sweepState, doomed []ID, now time.Time) (map[ID]time.Time, error) {
	out := map[ID]time.Time{}
	ret, ok := r.be.(storage.Retainer)
	if !ok || len(doomed) == 0 {
		return out, nil
	}
	isDoomed := map[ID]bool{}
	for _, id := range doomed {
		isDoomed[id] = true
		until, _, err := ret.Retention(ctx, packName(id))
		if err != nil {
			return nil, fmt.Errorf("retention of %s: %w", packName(id), err)
		}
		if until.After(now) {
			out[id] = until
		}
	}
	for n, packs := range st.indexes {
		var mine []ID
		for _, p := range packs {
			if isDoomed[p.ID] {
				mine = append(mine, p.ID)
			}
		}
		if len(mine) == 0 {
			continue
		}
		until, _, err := ret.Retention(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("retention of %s: %w", n, err)
		}
		if until.After(now) {
			for _, p := range mine {
				if until.After(out[p]) {
					out[p] = until
				}
			}
		}
	}
	return out, nil
}

// rewriteIndexes replaces the index objects that name gone packs by one
// object without them. The new object is stored before the old ones are
// deleted, so an interruption leaves duplicates, never a gap.
func (r *Repository) rewriteIndexes(ctx context.Context, st *sweepState, gone map[ID]bool, rep *SweepReport) error {
	var affected []string
	var keep []packEntry
	for n, packs := range st.indexes {
		hit := false
		for _, p := range packs {
			if gone[p.ID] {
				hit = true
				if _, stored := st.stored[p.ID]; !stored {
					rep.StaleEntries++
				}
			}
		}
		if !hit {
			continue
		}
		affected = append(affected, n)
		for _, p := range packs {
			if !gone[p.ID] {
				keep = append(keep, p)
			}
		}
	}
	if len(affected) == 0 {
		return nil
	}
	sort.Strings(affected)
	// In objects of bounded size: readers refuse an index object beyond
	// maxIndexSize unread.
	for len(keep) > 0 {
		n, size := 1, indexPayloadSize(keep[:1], r.crypt.idLen)
		for n < len(keep) && size+indexPayloadSize(keep[n:n+1], r.crypt.idLen) <= maxIndexPayload {
			size += indexPayloadSize(keep[n:n+1], r.crypt.idLen)
			n++
		}
		if _, err := r.putContentObject(ctx, "index", encodeIndex(keep[:n], r.crypt.idLen)); err != nil {
			return fmt.Errorf("rewrite index: %w", err)
		}
		keep = keep[n:]
	}
	for _, n := range affected {
		if err := r.be.Delete(ctx, n); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("delete %s: %w", n, err)
		}
		rep.IndexesRewritten++
	}
	return nil
}

func (r *Repository) deletePacks(ctx context.Context, st *sweepState, ids []ID, rep *SweepReport) error {
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			oi := st.stored[id]
			err := r.be.Delete(ctx, oi.Name)
			mu.Lock()
			defer mu.Unlock()
			var re *storage.RetainedError
			switch {
			case err == nil || errors.Is(err, storage.ErrNotFound):
				rep.Deleted = append(rep.Deleted, PackState{Name: oi.Name, Size: oi.Size})
				rep.BytesFreed += oi.Size
			case errors.As(err, &re):
				rep.Retained = append(rep.Retained, PackState{Name: oi.Name, Size: oi.Size, Until: re.Until})
			default:
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	sort.Slice(rep.Deleted, func(i, j int) bool { return rep.Deleted[i].Name < rep.Deleted[j].Name })
	return errors.Join(errs...)
}

// extendRetention makes every object a kept snapshot needs stay at least
// as long as the snapshot must.
func (r *Repository) extendRetention(ctx context.Context, st *sweepState, opts SweepOptions, rep *SweepReport) error {
	ret, ok := r.be.(storage.Retainer)
	if !ok {
		return nil
	}
	want := map[string]time.Time{}
	for _, s := range opts.Snapshots {
		if u := opts.KeepUntil[s.ID]; !u.IsZero() {
			want["snapshots/"+s.ID.String()] = u
		}
	}
	for p, u := range st.packUntil {
		if u.IsZero() {
			continue
		}
		want[packName(p)] = u
	}
	for n, packs := range st.indexes {
		for _, p := range packs {
			if u := st.packUntil[p.ID]; u.After(want[n]) {
				want[n] = u
			}
		}
	}
	for name, until := range want {
		cur, _, err := ret.Retention(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted by this run
		}
		if err != nil {
			return fmt.Errorf("retention of %s: %w", name, err)
		}
		if !until.After(cur) {
			continue
		}
		if err := ret.ExtendRetention(ctx, name, until); err != nil {
			return fmt.Errorf("extend retention of %s: %w", name, err)
		}
		rep.Extended++
	}
	return nil
}

func (r *Repository) deleteQuietly(ctx context.Context, name string) {
	if err := r.be.Delete(ctx, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		r.log.Warn("delete", "name", name, "err", err)
	}
}

// DeleteSnapshot removes a snapshot's manifest: its data goes at a later
// sweep. Under retention it fails with a *storage.RetainedError.
func (r *Repository) DeleteSnapshot(ctx context.Context, id ID) error {
	name := "snapshots/" + id.String()
	if err := r.be.Delete(ctx, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("delete snapshot %s: %w", id.Short(), err)
	}
	return nil
}
