package treestore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// TestAddStored: a node taken over from an earlier snapshot is recorded
// without its content being read again, and restores as it was; a node
// with a block the repository does not hold is refused, recording nothing.
func TestAddStored(t *testing.T) {
	r := repotest.New(t)
	ctx := t.Context()
	content := bytes.Repeat([]byte("stored once; "), 20000)
	first := store(t, r, content)
	var node *repo.Node
	if err := r.WalkTree(ctx, mustIndex(t, r), first.Tree, func(n *repo.Node) error {
		if n.Path == "dump/app.dump" {
			node = n
		}
		return nil
	}); err != nil || node == nil {
		t.Fatalf("node %v, %v", node, err)
	}

	s, err := Begin(ctx, r, Options{Asset: "nightly", Kind: "pg_dump"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	missing := *node
	missing.Path = "a"
	missing.Blocks = append([]repo.Block{{ID: repo.ID{1}, Len: 1}}, node.Blocks...)
	missing.Size++
	if ok, err := s.AddStored(ctx, &missing); ok || err != nil {
		t.Fatalf("a node with a block not stored: %v, %v", ok, err)
	}
	reused := *node
	reused.Path = "b"
	if ok, err := s.AddStored(ctx, &reused); !ok || err != nil {
		t.Fatalf("AddStored: %v, %v", ok, err)
	}
	snap, err := s.Commit(ctx, "full", nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Nodes != 1 || snap.Stats.Files != 1 || snap.Stats.BytesRead != 0 || snap.Stats.BytesTotal != int64(len(content)) || snap.Stats.BytesNew > 1024 {
		t.Errorf("snapshot %+v", snap)
	}
	dir := t.TempDir()
	if _, err := r.RestoreTree(ctx, mustIndex(t, r), snap.Tree, repo.RestoreOptions{Dir: dir, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "b")); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("restored %d bytes, %v", len(got), err)
	}
}

func mustIndex(t *testing.T, r *repo.Repository) *repo.Index {
	t.Helper()
	idx, err := r.LoadIndex(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}
