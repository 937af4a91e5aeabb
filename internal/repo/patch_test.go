package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// backupAfter stores files as a snapshot of asset a whose parent is parent.
func backupAfter(t *testing.T, r *Repository, files map[string][]byte, parent *Snapshot) *Snapshot {
	t.Helper()
	known, err := r.LoadIndex(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := writeFilesAfter(t, r, known, "a", files, parent)
	if err := r.SaveSnapshot(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// storedNode decodes, without resolving it, how a snapshot's tree stores
// the node at path.
func storedNode(t *testing.T, r *Repository, s *Snapshot, path string) *Node {
	t.Helper()
	idx, err := r.LoadIndex(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range s.Tree {
		data, err := r.LoadBlob(context.Background(), idx, id)
		if err != nil {
			t.Fatal(err)
		}
		nodes, err := decodeTreeBlob(data, r.crypt.idLen)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Path == path {
				return n
			}
		}
	}
	t.Fatalf("%s not in the tree", path)
	return nil
}

func checkRestores(t *testing.T, r *Repository, s *Snapshot, files map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	if _, err := restoreTo(t, r, s, false, dir); err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		if got, _ := os.ReadFile(filepath.Join(dir, "dir", p)); !bytes.Equal(got, want) {
			t.Fatalf("%s differs after restore", p)
		}
	}
}

// A long block list that changed in few blocks is stored as a patch of
// the whole list its parent's stands on; patches never stand on patches,
// grow back into whole lists, and keep their base alive through expiry.
func TestPatchedBlockLists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	var off time.Duration
	shiftClock(r, &off)
	bs := r.Config().BlockSize
	big := make([]byte, 200*bs)
	rand.Read(big)
	change := func(data []byte, blocks ...int) []byte {
		out := slices.Clone(data)
		for _, b := range blocks {
			rand.Read(out[b*bs : b*bs+16])
		}
		return out
	}
	at := func(s *Snapshot) []uint32 {
		n := storedNode(t, r, s, "dir/big")
		if n.patch == nil {
			return nil
		}
		return n.patch.at
	}

	v1 := map[string][]byte{"big": big, "small": []byte("small")}
	s1 := backupAfter(t, r, v1, nil)
	base := s1.Tree[0]

	// Two blocks changed and two appended: a patch of four on s1's list.
	v2 := map[string][]byte{"big": append(change(big, 3, 50), make([]byte, 2*bs-100)...), "small": []byte("small")}
	v2["big"][len(v2["big"])-1] = 1
	s2 := backupAfter(t, r, v2, s1)
	if got := at(s2); !slices.Equal(got, []uint32{3, 50, 200, 201}) || storedNode(t, r, s2, "dir/big").patch.base != base {
		t.Fatalf("second snapshot stores blocks %v", got)
	}
	checkRestores(t, r, s2, v2)

	// One more block changed: the patch still stands on s1's whole list
	// and names the blocks s2's patch named.
	v3 := map[string][]byte{"big": change(v2["big"], 7), "small": []byte("small")}
	s3 := backupAfter(t, r, v3, s2)
	if got := at(s3); !slices.Equal(got, []uint32{3, 7, 50, 200, 201}) || storedNode(t, r, s3, "dir/big").patch.base != base {
		t.Fatalf("third snapshot stores blocks %v", got)
	}
	checkRestores(t, r, s3, v3)

	// Cut to 100 blocks with one more change.
	v4 := map[string][]byte{"big": change(v3["big"][:100*bs], 10), "small": []byte("small")}
	s4 := backupAfter(t, r, v4, s3)
	if got := at(s4); !slices.Equal(got, []uint32{3, 7, 10, 50}) {
		t.Fatalf("fourth snapshot stores blocks %v", got)
	}
	checkRestores(t, r, s4, v4)

	// A quarter of the blocks and more changed: stored whole again.
	many := make([]int, 0, 30)
	for b := 0; b < 60; b += 2 {
		many = append(many, b)
	}
	v5 := map[string][]byte{"big": change(v4["big"], many...), "small": []byte("small")}
	s5 := backupAfter(t, r, v5, s4)
	if got := at(s5); got != nil {
		t.Fatalf("fifth snapshot stores a patch of %d blocks", len(got))
	}
	checkRestores(t, r, s5, v5)

	// The same whole list again is stored as it was: the tree blob is the
	// parent's.
	s6 := backupAfter(t, r, v1, s1)
	if !slices.Equal(s6.Tree, s1.Tree) {
		t.Fatal("an unchanged tree was stored anew")
	}

	// Expire s1 and s6: their tree blob stays, as s2–s4 stand on it, while
	// the blocks only they used go.
	for _, s := range []*Snapshot{s1, s6} {
		if err := r.DeleteSnapshot(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	kept := []*Snapshot{s2, s3, s4, s5}
	deleted := 0
	for range 2 {
		off += 2 * time.Hour
		rep, err := r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: kept, RepackUnused: 0.001})
		if err != nil {
			t.Fatal(err)
		}
		deleted += len(rep.Deleted)
	}
	if deleted == 0 {
		t.Fatal("the sweeps deleted no pack: the test proves nothing")
	}
	mustVerify(t, r)
	checkRestores(t, r, s2, v2)
	checkRestores(t, r, s4, v4)
	checkRestores(t, r, s5, v5)
}

// A patch a reader cannot resolve is damage, named with its path.
func TestPatchResolveRefusesDamage(t *testing.T) {
	t.Parallel()
	r, _, _ := newTestRepo(t)
	whole := &Node{Path: "f", Type: NodeFile, Size: 3 * 10, Blocks: []Block{{ID{1}, 10}, {ID{2}, 10}, {ID{3}, 10}}}
	patchOf := &Node{Path: "g", Type: NodeFile, Size: 10, patch: &nodePatch{base: ID{9}, count: 1, at: []uint32{0}, blocks: []Block{{ID{4}, 10}}}}
	c := &baseCache{id: ID{9}, nodes: []*Node{whole, patchOf}}
	for name, n := range map[string]*Node{
		"no base node":      {Path: "e", Type: NodeFile, Size: 10, patch: &nodePatch{base: ID{9}, count: 1}},
		"base is a patch":   {Path: "g", Type: NodeFile, Size: 10, patch: &nodePatch{base: ID{9}, count: 1}},
		"unpatched past it": {Path: "f", Type: NodeFile, Size: 40, patch: &nodePatch{base: ID{9}, count: 4}},
		"wrong size":        {Path: "f", Type: NodeFile, Size: 31, patch: &nodePatch{base: ID{9}, count: 3}},
	} {
		if err := c.resolve(context.Background(), r, nil, n); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ok := &Node{Path: "f", Type: NodeFile, Size: 40, patch: &nodePatch{base: ID{9}, count: 4, at: []uint32{1, 3}, blocks: []Block{{ID{5}, 10}, {ID{6}, 10}}}}
	if err := c.resolve(context.Background(), r, nil, ok); err != nil {
		t.Fatal(err)
	}
	if want := []Block{{ID{1}, 10}, {ID{5}, 10}, {ID{3}, 10}, {ID{6}, 10}}; !slices.Equal(ok.Blocks, want) || ok.list.blob != (ID{9}) {
		t.Fatalf("resolved to %v", ok.Blocks)
	}
}

// A backup whose patched list stands on a base tree blob that a sweep
// condemned while it ran does not commit.
func TestCommitRefusesDoomedBase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	big := make([]byte, 100*r.Config().BlockSize)
	rand.Read(big)
	s1 := backupAfter(t, r, map[string][]byte{"big": big}, nil)
	changed := slices.Clone(big)
	changed[0]++
	known, err := r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2 := writeFilesAfter(t, r, known, "a", map[string][]byte{"big": changed}, s1)
	if storedNode(t, r, s2, "dir/big").patch == nil {
		t.Fatal("the list was stored whole")
	}
	known, err = r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	doomed := map[ID]bool{known.Locations(s1.Tree[0])[0].Frame.Pack: true}
	if err := r.checkNotDoomed(ctx, s2, doomed); !errors.Is(err, ErrSwept) {
		t.Fatalf("commit over a doomed base: %v, want ErrSwept", err)
	}
}
