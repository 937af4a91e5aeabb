package repo

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
// once loaded.
type Index struct {
	mu     sync.RWMutex
	frames []FrameLoc
	blobs  map[ID]BlobLoc
	packs  map[ID]int // pack → frames count, for verify
}

func newIndex() *Index {
	return &Index{blobs: make(map[ID]BlobLoc), packs: make(map[ID]int)}
}

// Lookup finds a blob.
func (x *Index) Lookup(id ID) (BlobLoc, FrameLoc, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	bl, ok := x.blobs[id]
	if !ok {
		return BlobLoc{}, FrameLoc{}, false
	}
	return bl, x.frames[bl.Frame], true
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

// add records a pack's frames; keep selects which blobs to remember (nil
// keeps all).
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
				if _, dup := x.blobs[b.ID]; !dup {
					if fi < 0 {
						x.frames = append(x.frames, FrameLoc{Pack: p.ID, Offset: off, Sealed: f.SealedLen, RawLen: f.RawLen, Flags: f.Flags})
						fi = int32(len(x.frames) - 1)
					}
					x.blobs[b.ID] = BlobLoc{Frame: fi, Type: b.Type, Offset: inner, Len: b.Len}
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
// Entries of packs a sweep deleted are left out: only an interrupted
// backup can have written them, and another copy of their blobs may exist.
func (r *Repository) LoadIndex(ctx context.Context, keep func(BlobType, ID) bool) (*Index, error) {
	swept, err := r.sweptPacks(ctx)
	if err != nil {
		return nil, err
	}
	return r.loadIndex(ctx, keep, func(p ID) bool { return !swept[p] })
}

// loadIndex is LoadIndex that also leaves out the packs usePack refuses.
func (r *Repository) loadIndex(ctx context.Context, keep func(BlobType, ID) bool, usePack func(ID) bool) (*Index, error) {
	x := newIndex()
	names, err := r.listNames(ctx, "index/")
	if err != nil {
		return nil, err
	}
	type result struct {
		packs []packEntry
		err   error
	}
	results := make([]result, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			packs, err := r.readIndexFile(ctx, n)
			results[i] = result{packs, err}
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.err != nil {
			return nil, fmt.Errorf("index %s: %w", strings.TrimPrefix(names[i], "index/"), res.err)
		}
		for _, p := range res.packs {
			if usePack == nil || usePack(p.ID) {
				x.add(p, keep)
			}
		}
	}
	return x, nil
}

func (r *Repository) readIndexFile(ctx context.Context, name string) ([]packEntry, error) {
	plain, err := readVerified(ctx, r.be, r.log, name, func(data []byte) ([]byte, error) {
		if want := strings.TrimPrefix(name, "index/"); hashObject(data).String() != want {
			return nil, fmt.Errorf("content does not match its name: %w", ErrCorrupt)
		}
		return r.crypt.openObject("index", data)
	})
	if err != nil {
		return nil, err
	}
	return decodeIndex(plain)
}
