package pgdump

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

func storeDump(t *testing.T, r *repo.Repository, data []byte) *repo.Node {
	t.Helper()
	s, err := treestore.Begin(t.Context(), r, treestore.Options{Asset: "nightly", Kind: KindName})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	n := &repo.Node{Path: "app.dump", Type: repo.NodeFile, Mode: 0o600}
	if err := s.Add(t.Context(), n, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(t.Context(), "full", nil); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStreamFileInOrder: a second dump whose blocks alternate between
// frames stored the night before and new ones streams back byte for byte.
func TestStreamFileInOrder(t *testing.T) {
	r := repotest.New(t)
	rng := rand.New(rand.NewPCG(1, 2))
	first := make([]byte, 6<<20)
	for i := range first {
		first[i] = byte('a' + rng.IntN(20))
	}
	storeDump(t, r, first)
	// Change a few bytes every 40 KiB: most chunks are new, some old.
	second := bytes.Clone(first)
	for off := 0; off < len(second); off += 40 << 10 {
		second[off] = '#'
	}
	n := storeDump(t, r, second)
	idx, err := r.LoadIndex(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := streamFile(t.Context(), r, idx, n, &out, 2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), second) {
		t.Fatalf("streamed %d bytes that differ from the %d stored", out.Len(), len(second))
	}

	// A block the index does not know fails the stream, naming it.
	broken := *n
	broken.Blocks = append([]repo.Block{{ID: repo.ID{1}, Len: 10}}, n.Blocks...)
	if err := streamFile(t.Context(), r, idx, &broken, &bytes.Buffer{}, 2); !errors.Is(err, repo.ErrMissing) {
		t.Fatalf("unknown block: %v", err)
	}
}
