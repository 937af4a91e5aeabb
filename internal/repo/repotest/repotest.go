// Package repotest gives tests a fresh repository in a temporary
// directory. Only _test.go files import it.
package repotest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// New initialises a repository with a new key file in temporary
// directories and returns it open; it is closed when the test ends.
func New(t testing.TB) *repo.Repository {
	t.Helper()
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := repo.GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	sec, err := repo.KeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(t.Context(), be, sec, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close repository: %v", err)
		}
	})
	return r
}

// Entry is one node of a tree SaveTree stores, with a file's content.
type Entry struct {
	repo.Node
	Data []byte
}

// SaveTree stores entries (in any order) as the tree of snap and saves
// snap: a snapshot written through the repository's own API, as a holder
// of the key could forge one. Sizes and blocks of files come from Data.
func SaveTree(t testing.TB, r *repo.Repository, snap *repo.Snapshot, entries []Entry) *repo.Snapshot {
	t.Helper()
	ctx := t.Context()
	known, err := r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := r.NewWriter(known)
	sink := w.NewSink()
	tw := w.NewTreeWriter()
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	for _, e := range sorted {
		n := e.Node
		if n.Type == repo.NodeFile {
			n.Size = int64(len(e.Data))
			if len(e.Data) > 0 {
				id, _, err := sink.Save(ctx, repo.DataBlob, e.Data)
				if err != nil {
					t.Fatal(err)
				}
				n.Blocks = []repo.Block{{ID: id, Len: uint32(len(e.Data))}}
			}
		}
		if err := tw.Add(ctx, &n); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tree, count, err := tw.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	snap.Tree, snap.Nodes = tree, count
	if snap.StartTime.IsZero() {
		snap.StartTime = time.Now()
	}
	if snap.EndTime.IsZero() {
		snap.EndTime = snap.StartTime
	}
	if err := r.SaveSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	return snap
}
