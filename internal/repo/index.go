package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// FrameLoc says where a sealed frame lives.
type FrameLoc struct {
	Pack   ID
	Offset int64
	Sealed uint32
	RawLen uint32
	Flags  uint8
}

// BlobLoc says where a blob lives: its frame and its place inside the
// frame's plaintext.
type BlobLoc struct {
	Frame  int32 // index into Index.frames
	Type   BlobType
	Offset uint32
	Len    uint32
}

// Index maps blob IDs to their places. It is safe for concurrent reads
// once loaded. A blob stored more than once keeps every place: a genuine
// but old index object put back by someone (a replay) must not hide the
// place the blob lives now, and a read falls back to another place when
// one fails.
type Index struct {
	mu     sync.RWMutex
	frames []FrameLoc
	blobs  map[ID]BlobLoc   // the first place of every blob
	more   map[ID][]BlobLoc // the other places of blobs stored more than once
	packs  map[ID]int       // pack → frames count, for verify
}

// Location is one place of a blob.
type Location struct {
	Blob  BlobLoc
	Frame FrameLoc
}

func newIndex() *Index {
	return &Index{blobs: make(map[ID]BlobLoc), more: make(map[ID][]BlobLoc), packs: make(map[ID]int)}
}

// Lookup finds a blob's first place; Locations lists them all.
func (x *Index) Lookup(id ID) (BlobLoc, FrameLoc, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	bl, ok := x.blobs[id]
	if !ok {
		return BlobLoc{}, FrameLoc{}, false
	}
	return bl, x.frames[bl.Frame], true
}

// Locations lists every place of a blob, the one Lookup returns first.
func (x *Index) Locations(id ID) []Location {
	x.mu.RLock()
	defer x.mu.RUnlock()
	bl, ok := x.blobs[id]
	if !ok {
		return nil
	}
	out := []Location{{bl, x.frames[bl.Frame]}}
	for _, m := range x.more[id] {
		out = append(out, Location{m, x.frames[m.Frame]})
	}
	return out
}

// Has reports whether the index knows blob id.
func (x *Index) Has(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.blobs[id]
	return ok
}

// Packs lists the packs the index names, with their frame counts.
func (x *Index) Packs() map[ID]int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[ID]int, len(x.packs))
	for k, v := range x.packs {
		out[k] = v
	}
	return out
}

// samePlace reports whether bl is the place of a blob at inner in the frame
// of pack at offset.
func (x *Index) samePlace(bl BlobLoc, pack ID, offset int64, inner uint32) bool {
	f := x.frames[bl.Frame]
	return f.Pack == pack && f.Offset == offset && bl.Offset == inner
}

// add records a pack's frames; keep selects which blobs to remember (nil
// keeps all). A place already known (the same pack named by two index
// objects) is recorded once.
func (x *Index) add(p packEntry, keep func(BlobType, ID) bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.packs[p.ID] = len(p.Frames)
	var off int64
	for _, f := range p.Frames {
		fi := int32(-1)
		var inner uint32
		for _, b := range f.Blobs {
			if keep == nil || keep(b.Type, b.ID) {
				first, dup := x.blobs[b.ID]
				known := dup && x.samePlace(first, p.ID, off, inner)
				for _, m := range x.more[b.ID] {
					known = known || x.samePlace(m, p.ID, off, inner)
				}
				if !known {
					if fi < 0 {
						x.frames = append(x.frames, FrameLoc{Pack: p.ID, Offset: off, Sealed: f.SealedLen, RawLen: f.RawLen, Flags: f.Flags})
						fi = int32(len(x.frames) - 1)
					}
					bl := BlobLoc{Frame: fi, Type: b.Type, Offset: inner, Len: b.Len}
					if dup {
						x.more[b.ID] = append(x.more[b.ID], bl)
					} else {
						x.blobs[b.ID] = bl
					}
				}
			}
			inner += b.Len
		}
		off += int64(f.SealedLen)
	}
}

// LoadIndex reads every index object. keep, when not nil, selects the blobs
// to hold in memory (a backup needs only tree blobs; a restore only the
// blobs of its snapshot), so memory follows what the caller needs rather
// than the repository's size.
// Entries of packs that are not stored are left out: a sweep deleted them
// (only an interrupted backup, or an old index object put back, can name
// them), and another copy of their blobs may exist.
func (r *Repository) LoadIndex(ctx context.Context, keep func(BlobType, ID) bool) (*Index, error) {
	stored, err := r.storedPacks(ctx)
	if err != nil {
		return nil, err
	}
	return r.loadIndex(ctx, keep, func(p ID) bool { return stored[p] })
}

// IndexEntries is the repository's index read once: every entry of every
// authentic index object whose pack is stored, in the order LoadIndex
// adds them. A restore needs two selections of the index (the tree blobs,
// to learn which data blobs the snapshot names, then those blobs); taking
// both from one read lists data/ and reads, opens and decodes each index
// object once instead of twice. Holding the entries costs no more than
// reading them does: the reader holds every decoded object at once anyway.
type IndexEntries struct {
	packs []packEntry
}

// ReadIndexEntries reads every index object once, for Select.
func (r *Repository) ReadIndexEntries(ctx context.Context) (*IndexEntries, error) {
	stored, err := r.storedPacks(ctx)
	if err != nil {
		return nil, err
	}
	e := &IndexEntries{}
	err = r.eachIndexObject(ctx, func(_ string, packs []packEntry) {
		for _, p := range packs {
			if stored[p.ID] {
				e.packs = append(e.packs, p)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Select builds an index of the blobs keep selects (nil keeps all), as
// LoadIndex with keep would have from the same index objects.
func (e *IndexEntries) Select(keep func(BlobType, ID) bool) *Index {
	x := newIndex()
	for _, p := range e.packs {
		x.add(p, keep)
	}
	return x
}

// storedPacks lists the packs in storage. It is listed before the index
// objects are: a pack an index object names is stored before the object,
// so the only entries a later listing could add are those of a backup
// that has not committed yet.
func (r *Repository) storedPacks(ctx context.Context) (map[ID]bool, error) {
	stored := map[ID]bool{}
	err := r.be.List(ctx, "data/", func(oi storage.ObjectInfo) error {
		if id, err := ParseID(oi.Name[strings.LastIndex(oi.Name, "/")+1:]); err == nil && oi.Name == packName(id) {
			stored[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return stored, nil
}

// indexReadBudget bounds the bytes of index objects read at once: they
// are read side by side, and a planted object may be as large as the cap.
const indexReadBudget = maxIndexSize

// loadIndex is LoadIndex that also leaves out the packs usePack refuses.
func (r *Repository) loadIndex(ctx context.Context, keep func(BlobType, ID) bool, usePack func(ID) bool) (*Index, error) {
	x := newIndex()
	err := r.eachIndexObject(ctx, func(_ string, packs []packEntry) {
		for _, p := range packs {
			if usePack == nil || usePack(p.ID) {
				x.add(p, keep)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return x, nil
}

// eachIndexObject reads every index object and hands its entries to fn,
// in name order, one call at a time. An object that fails its hash or
// authentication is skipped and noted; any other failure stops it.
func (r *Repository) eachIndexObject(ctx context.Context, fn func(name string, packs []packEntry)) error {
	var objs []storage.ObjectInfo
	if err := r.be.List(ctx, "index/", func(oi storage.ObjectInfo) error {
		objs = append(objs, oi)
		return nil
	}); err != nil {
		return fmt.Errorf("list index: %w", err)
	}
	type result struct {
		packs []packEntry
		err   error
	}
	results := make([]result, len(objs))
	budget := semaphore.NewWeighted(indexReadBudget)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, oi := range objs {
		// The listed size is what the store says; the cap on the read
		// itself holds whatever it says.
		w := min(max(oi.Size, 1), indexReadBudget)
		if err := budget.Acquire(ctx, w); err != nil {
			wg.Wait()
			return err
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer budget.Release(w)
			packs, err := r.readIndexFile(ctx, oi.Name)
			results[i] = result{packs, err}
		}()
	}
	wg.Wait()
	for i, res := range results {
		name := objs[i].Name
		if res.err != nil {
			if errors.Is(res.err, storage.ErrNotFound) || r.skippable(name, res.err) {
				continue // deleted by a sweep meanwhile, or not authentic
			}
			return fmt.Errorf("index %s: %w", strings.TrimPrefix(name, "index/"), res.err)
		}
		fn(name, res.packs)
	}
	return nil
}

// readIndexFile reads, checks and decodes one index object.
func (r *Repository) readIndexFile(ctx context.Context, name string) ([]packEntry, error) {
	id, err := ParseID(strings.TrimPrefix(name, "index/"))
	if err == nil && "index/"+id.String() != name {
		err = errors.New("not lower-case")
	}
	if err != nil {
		return nil, asUnauthentic(fmt.Errorf("%s is not named by a hash: %w", name, ErrCorrupt))
	}
	plain, err := r.getContentObject(ctx, "index", id)
	if err != nil {
		return nil, err
	}
	return decodeIndex(plain, r.crypt.idLen)
}

// maxIndexPayload is the size at which writers close an index object, far
// below what readers accept (maxIndexSize).
const maxIndexPayload = 64 << 20

// indexPayloadSize is about the size of packs' index entries, encoded.
func indexPayloadSize(packs []packEntry, idLen int) int {
	n := 0
	for _, p := range packs {
		n += len(p.ID) + 4
		for _, f := range p.Frames {
			n += 12 + (idLen+4)*len(f.Blobs)
		}
	}
	return n
}
