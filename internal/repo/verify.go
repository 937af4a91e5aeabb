package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// VerifyOptions shape Verify.
type VerifyOptions struct {
	ReadData bool // read every pack, open every frame and hash every blob
	Workers  int
}

// VerifyReport lists what Verify checked and every problem it found. Each
// problem names the damaged object.
type VerifyReport struct {
	Snapshots    int
	Packs        int
	Blobs        int
	BytesRead    int64
	Leftovers        // unreferenced packs and temporary files (verify_tidy.go)
	StaleEntries int // index entries of packs expire deleted, left by a backup that then refused to commit
	// Unauthentic are the objects verify met that failed their hash or
	// authentication (verify_authentic.go); each is a problem too.
	Unauthentic []Unauthentic
	// Overwritten are the objects whose current version is not authentic
	// (versions.go), each a problem; VersionsUnchecked says why versions
	// were not looked at ("" when they were).
	Overwritten       []Overwritten
	VersionsUnchecked string
	Problems          []string
}

// OK reports whether no problem was found.
func (v *VerifyReport) OK() bool { return len(v.Problems) == 0 }

func (v *VerifyReport) addf(format string, args ...any) {
	v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
}

// Verify checks that every snapshot's tree and blocks are indexed and
// their packs present, and with ReadData that every pack decrypts and
// every blob hashes to its ID. It returns an error only when it cannot run
// at all; damage goes into the report.
func (r *Repository) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.ReadData {
		if err := r.CanReadContents(ctx); err != nil {
			return nil, err
		}
	}
	rep := &VerifyReport{}
	mark := r.UnauthenticMark()
	idx, err := r.loadIndexTolerant(ctx, rep)
	if err != nil {
		return nil, err
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	usedPacks := make(map[ID]bool)
	for _, id := range ids {
		s, err := r.LoadSnapshot(ctx, id)
		if err != nil {
			if !r.skippable("snapshots/"+id.String(), err) {
				rep.addf("snapshot %s: %v", id.Short(), err)
			}
			continue
		}
		rep.Snapshots++
		missing := 0
		for _, t := range s.Tree {
			if _, fl, ok := idx.Lookup(t); ok {
				usedPacks[fl.Pack] = true
			}
		}
		err = r.WalkTree(ctx, idx, s.Tree, func(n *Node) error {
			for _, b := range n.Blocks {
				_, fl, ok := idx.Lookup(b.ID)
				if !ok {
					if missing < 5 {
						rep.addf("snapshot %s (%s): %s: blob %s is missing", id.Short(), s.Asset, n.Path, b.ID.Short())
					}
					missing++
					continue
				}
				usedPacks[fl.Pack] = true
			}
			return nil
		})
		if err != nil {
			rep.addf("snapshot %s (%s): tree: %v", id.Short(), s.Asset, err)
		}
		if missing > 5 {
			rep.addf("snapshot %s (%s): %d more missing blobs", id.Short(), s.Asset, missing-5)
		}
	}
	indexed := idx.Packs()
	rep.Packs = len(indexed)
	stored := make(map[ID]bool)
	if err := r.be.List(ctx, "data/", func(oi storage.ObjectInfo) error {
		id, err := ParseID(oi.Name[strings.LastIndex(oi.Name, "/")+1:])
		if err != nil {
			rep.addf("unexpected object %s", oi.Name)
			return nil
		}
		stored[id] = true
		if _, ok := indexed[id]; !ok {
			rep.Unreferenced = append(rep.Unreferenced, oi)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	var packs []ID
	for id := range indexed {
		if !stored[id] {
			rep.addf("pack %s is in the index but missing from storage", packName(id))
			continue
		}
		packs = append(packs, id)
	}
	sort.Slice(packs, func(i, j int) bool { return packs[i].String() < packs[j].String() })
	var mu sync.Mutex
	sem := make(chan struct{}, opts.Workers)
	var wg sync.WaitGroup
	for _, id := range packs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, size, err := r.verifyPack(ctx, id, idx, opts.ReadData)
			mu.Lock()
			defer mu.Unlock()
			rep.Blobs += n
			rep.BytesRead += size
			if err != nil {
				what := "used by snapshots"
				if !usedPacks[id] {
					what = "not used by any snapshot"
				}
				rep.addf("pack %s (%s): %v", packName(id), what, err)
			}
		}()
	}
	wg.Wait()
	if err := r.verifyTidy(ctx, rep); err != nil {
		return nil, err
	}
	if err := r.verifyAuthentic(ctx, rep, mark); err != nil {
		return nil, err
	}
	if err := r.verifyVersions(ctx, rep); err != nil {
		return nil, err
	}
	sort.Strings(rep.Problems)
	return rep, ctx.Err()
}

// loadIndexTolerant loads every readable index object, recording the
// damaged ones as problems instead of stopping.
func (r *Repository) loadIndexTolerant(ctx context.Context, rep *VerifyReport) (*Index, error) {
	x := newIndex()
	swept, err := r.sweptPacks(ctx)
	if err != nil {
		return nil, err
	}
	names, err := r.listNames(ctx, "index/")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		packs, err := r.readIndexFile(ctx, n)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("read %s: %w", n, err)
			}
			if !r.skippable(n, err) {
				rep.addf("%s: %v", n, err)
			}
			continue
		}
		for _, p := range packs {
			if swept[p.ID] {
				rep.StaleEntries++
				continue
			}
			x.add(p, nil)
		}
	}
	return x, nil
}

// verifyPack checks a pack's header against the index and, with readData,
// its whole content.
func (r *Repository) verifyPack(ctx context.Context, id ID, idx *Index, readData bool) (int, int64, error) {
	pc, err := r.ReadPackHeader(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	for fi, blobs := range pc.Blobs {
		var inner uint32
		for _, b := range blobs {
			bl, fl, ok := idx.Lookup(b.ID)
			// The index may place a blob stored twice in another pack;
			// only a disagreement about this very place is damage.
			if ok && fl.Pack == id && (fl.Offset != pc.Frames[fi].Offset || bl.Offset != inner || bl.Len != b.Len) {
				return 0, 0, fmt.Errorf("blob %s: header and index disagree: %w", b.ID.Short(), ErrCorrupt)
			}
			inner += b.Len
		}
	}
	if !readData {
		return 0, 0, nil
	}
	n, err := r.ReadPackVerified(ctx, id)
	return n, pc.Size, err
}
