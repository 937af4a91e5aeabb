package treestore

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/storagetest"
)

func store(t *testing.T, r *repo.Repository, dump []byte) *repo.Snapshot {
	t.Helper()
	ctx := t.Context()
	s, err := Begin(ctx, r, Options{Asset: "nightly", Kind: "pg_dump"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if err := s.Add(ctx, &repo.Node{Path: "dump", Type: repo.NodeDir, Mode: 0o700}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, &repo.Node{Path: "dump/app.dump", Type: repo.NodeFile, Mode: 0o600}, bytes.NewReader(dump)); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Commit(ctx, "full", map[string]string{"databases": "app"})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestStreamRoundTripAndDedup(t *testing.T) {
	r := repotest.New(t)
	rng := rand.New(rand.NewPCG(1, 2))
	dump := make([]byte, 8<<20)
	for i := range dump {
		dump[i] = byte(rng.Uint32())
	}
	first := store(t, r, dump)
	// The next night: rows inserted in the middle and appended at the end.
	next := append(append(bytes.Clone(dump[:3<<20]), bytes.Repeat([]byte("new row;"), 500)...), dump[3<<20:]...)
	next = append(next, bytes.Repeat([]byte("appended;"), 2000)...)
	second := store(t, r, next)
	if second.Stats.BytesNew > first.Stats.BytesNew/10 {
		t.Fatalf("second snapshot stored %d new bytes of %d, first %d", second.Stats.BytesNew, len(next), first.Stats.BytesNew)
	}
	idx, err := r.LoadIndex(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := r.RestoreTree(t.Context(), idx, second.Tree, repo.RestoreOptions{Dir: dir, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "dump", "app.dump"))
	if err != nil || !bytes.Equal(got, next) {
		t.Fatalf("restored dump differs (%d bytes, %v)", len(got), err)
	}
}

// TestFailedSourceRecordsNothing: a stream that breaks off leaves no
// snapshot, and the asset's lock is free again.
func TestFailedSourceRecordsNothing(t *testing.T) {
	r := repotest.New(t)
	ctx := context.Background()
	s, err := Begin(ctx, r, Options{Asset: "nightly", Kind: "pg_dump"})
	if err != nil {
		t.Fatal(err)
	}
	broken := iotest.TimeoutReader(bytes.NewReader(make([]byte, 1<<20)))
	err = s.Add(ctx, &repo.Node{Path: "app.dump", Type: repo.NodeFile, Mode: 0o600}, broken)
	if err == nil {
		t.Fatal("a broken stream was stored")
	}
	s.Abort()
	if snaps, _ := r.Snapshots(ctx, "nightly"); len(snaps) != 0 {
		t.Fatalf("%d snapshots recorded for a failed backup", len(snaps))
	}
	store(t, r, []byte("the next run takes the lock"))
}

// TestCancelledBackupRecordsNothing: cancelling a backup while a pack
// upload hangs returns promptly, records no snapshot, stores no pack and
// leaves the asset's lock free, though the context the lock was taken
// with is gone.
func TestCancelledBackupRecordsNothing(t *testing.T) {
	const bound = 20 * time.Second // a limit for a hang, not a measurement
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
	var holding atomic.Bool
	holding.Store(true)
	held := make(chan string, 4)
	hb := &storagetest.HoldingBackend{Backend: be, Held: held, Hold: func(name string) bool {
		return holding.Load() && strings.HasPrefix(name, "data/")
	}}
	r, err := repo.Open(t.Context(), hb, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := Begin(ctx, r, Options{Asset: "nightly", Kind: "pg_dump"})
	if err != nil {
		t.Fatal(err)
	}
	// Incompressible, and more than two packs: both uploaders are held.
	dump := make([]byte, 40<<20)
	rand.NewChaCha8([32]byte{1}).Read(dump)
	addErr := make(chan error, 1)
	go func() {
		addErr <- s.Add(ctx, &repo.Node{Path: "app.dump", Type: repo.NodeFile, Mode: 0o600}, bytes.NewReader(dump))
	}()
	select {
	case <-held:
	case <-time.After(bound):
		t.Fatal("no pack upload started")
	}
	cancel()
	select {
	case err := <-addErr:
		if err == nil {
			t.Fatal("Add of a cancelled backup succeeded")
		}
	case <-time.After(bound):
		t.Fatalf("Add did not return within %v of the cancellation", bound)
	}
	aborted := make(chan struct{})
	go func() {
		s.Abort()
		close(aborted)
	}()
	select {
	case <-aborted:
	case <-time.After(bound):
		t.Fatalf("Abort did not return within %v", bound)
	}

	holding.Store(false)
	if snaps, err := r.Snapshots(t.Context(), "nightly"); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots after a cancelled backup: %d, %v", len(snaps), err)
	}
	for _, prefix := range []string{"data/", "index/", "locks/"} {
		if err := be.List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
			t.Errorf("a cancelled backup left %s", oi.Name)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The lock is free at once, not after it went stale.
	store(t, r, []byte("the next run takes the lock"))
}
