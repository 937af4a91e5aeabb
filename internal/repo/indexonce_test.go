package repo

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// countReads counts the reads of objects and the listings, per prefix.
type countReads struct {
	storage.Backend
	mu    sync.Mutex
	gets  map[string]int // object name → reads
	lists map[string]int // prefix → listings
}

func (c *countReads) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	c.mu.Lock()
	c.gets[name]++
	c.mu.Unlock()
	return c.Backend.Get(ctx, name)
}

func (c *countReads) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	c.mu.Lock()
	c.lists[prefix]++
	c.mu.Unlock()
	return c.Backend.List(ctx, prefix, fn)
}

// TestIndexEntriesReadOnce: two selections of one ReadIndexEntries read
// every index object once and list the packs once, and each selection
// holds exactly what LoadIndex with the same filter holds, entries of a
// pack that is gone left out as LoadIndex leaves them out.
func TestIndexEntriesReadOnce(t *testing.T) {
	t.Parallel()
	r, _, _ := newTestRepo(t)
	ctx := t.Context()
	s1 := backupFiles(t, r, "a", map[string][]byte{"one": compressible(2<<20, 1), "zero": make([]byte, 64<<10)})
	s2 := backupFiles(t, r, "a", map[string][]byte{"two": compressible(1<<20, 2), "zero": make([]byte, 64<<10)})
	// A third backup whose pack is then deleted, as a sweep would: its
	// index object still names it.
	idx0, err := r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s3 := backupFiles(t, r, "a", map[string][]byte{"three": compressible(1<<20, 3)})
	idx1, err := r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var gone ID
	for p := range idx1.Packs() {
		if _, old := idx0.Packs()[p]; !old {
			gone = p
		}
	}
	if gone.IsZero() {
		t.Fatal("the third backup stored no pack")
	}
	if err := r.be.Delete(ctx, packName(gone)); err != nil {
		t.Fatal(err)
	}

	cr := &countReads{Backend: r.be, gets: map[string]int{}, lists: map[string]int{}}
	counted := *r
	counted.be = cr
	ix, err := counted.ReadIndexEntries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trees := func(t BlobType, _ ID) bool { return t == TreeBlob }
	onlyS1 := map[ID]bool{}
	if err := r.WalkTree(ctx, ix.Select(trees), s1.Tree, func(n *Node) error {
		for _, b := range n.Blocks {
			onlyS1[b.ID] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	needed := func(t BlobType, id ID) bool { return t == TreeBlob || onlyS1[id] }
	selected := map[string]*Index{"all": ix.Select(nil), "trees": ix.Select(trees), "s1": ix.Select(needed)}
	indexObjects := 0
	for name, n := range cr.gets {
		if strings.HasPrefix(name, "index/") {
			indexObjects++
			if n != 1 {
				t.Errorf("%s read %d times, want once", name, n)
			}
		}
	}
	if indexObjects != 3 {
		t.Errorf("%d index objects read, want 3", indexObjects)
	}
	if cr.lists["data/"] != 1 || cr.lists["index/"] != 1 {
		t.Errorf("listings %v, want data/ and index/ once each", cr.lists)
	}

	for name, keep := range map[string]func(BlobType, ID) bool{"all": nil, "trees": trees, "s1": needed} {
		want, err := r.LoadIndex(ctx, keep)
		if err != nil {
			t.Fatal(err)
		}
		got := selected[name]
		if len(got.blobs) != len(want.blobs) || len(got.more) != len(want.more) || len(got.frames) != len(want.frames) {
			t.Errorf("%s: %d blobs, %d more, %d frames; LoadIndex has %d, %d, %d", name,
				len(got.blobs), len(got.more), len(got.frames), len(want.blobs), len(want.more), len(want.frames))
		}
		for id := range want.blobs {
			g, w := got.Locations(id), want.Locations(id)
			if len(g) != len(w) {
				t.Errorf("%s: blob %s has %d places, LoadIndex %d", name, id.Short(), len(g), len(w))
				continue
			}
			for i := range w {
				if g[i] != w[i] {
					t.Errorf("%s: blob %s place %d is %+v, LoadIndex %+v", name, id.Short(), i, g[i], w[i])
				}
			}
		}
		for _, p := range []ID{gone} {
			if _, ok := got.Packs()[p]; ok {
				t.Errorf("%s: names the deleted pack %s", name, p.Short())
			}
		}
	}
	// The first two snapshots restore from the selection; the third, whose
	// pack is gone, is refused as missing data.
	all := selected["all"]
	for _, s := range []*Snapshot{s1, s2} {
		if _, err := r.RestoreTree(ctx, all, s.Tree, RestoreOptions{Dir: t.TempDir(), UID: -1, GID: -1}); err != nil {
			t.Fatalf("restore %s: %v", s.ID.Short(), err)
		}
	}
	if _, err := r.RestoreTree(ctx, all, s3.Tree, RestoreOptions{Dir: t.TempDir(), UID: -1, GID: -1}); err == nil {
		t.Fatal("a snapshot whose pack is gone restored")
	}
}
