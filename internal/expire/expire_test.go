package expire

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/retention"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

// plainKind is a kind without capabilities: expire orders its snapshots
// by their end time and keeps no archive.
type plainKind struct{ asset.Kind }

type testRepo struct {
	r   *repo.Repository
	dir string
	sec repo.Secret
}

func newTestRepo(t *testing.T, wrap func(storage.Backend) storage.Backend) *testRepo {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(t.TempDir(), "repo.key")
	if err := repo.GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	sec, err := repo.KeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := repo.Init(ctx, be, sec, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		be = wrap(be)
	}
	r, err := repo.Open(ctx, be, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &testRepo{r: r, dir: dir, sec: sec}
}

// backupAt takes a real backup of one file with the repository's clock at
// at, and dates its manifest in the store at at too, as if it had been
// written then.
func (tr *testRepo) backupAt(t *testing.T, at time.Time, content string) *repo.Snapshot {
	t.Helper()
	tr.r.Clock = func() time.Time { return at }
	defer func() { tr.r.Clock = time.Now }()
	s, err := treestore.Begin(t.Context(), tr.r, treestore.Options{Asset: "db", Kind: "files"})
	if err != nil {
		t.Fatal(err)
	}
	n := &repo.Node{Path: "f", Type: repo.NodeFile, Mode: 0o600}
	if err := s.Add(t.Context(), n, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Commit(t.Context(), "full", nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.storedAt(t, snap.ID, at)
	return snap
}

func (tr *testRepo) storedAt(t *testing.T, id repo.ID, at time.Time) {
	t.Helper()
	if err := os.Chtimes(filepath.Join(tr.dir, "snapshots", id.String()), at, at); err != nil {
		t.Fatal(err)
	}
}

// forge writes a manifest as an attacker holding the key and a put-only
// credential can: any times, any tree.
func (tr *testRepo) forge(t *testing.T, like *repo.Snapshot, end time.Time, tree []repo.ID) *repo.Snapshot {
	t.Helper()
	f := *like
	f.StartTime, f.EndTime, f.Tree = end.Add(-time.Second), end, tree
	if err := tr.r.SaveSnapshot(t.Context(), &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// treeWithMissingData stores a tree whose one file references a blob the
// repository does not hold.
func (tr *testRepo) treeWithMissingData(t *testing.T) []repo.ID {
	t.Helper()
	ctx := t.Context()
	w := tr.r.NewWriterContext(ctx, nil)
	tw := w.NewTreeWriter()
	var missing repo.ID
	missing[0] = 1
	n := &repo.Node{Path: "f", Type: repo.NodeFile, Mode: 0o600, Size: 4, Blocks: []repo.Block{{ID: missing, Len: 4}}}
	if err := tw.Add(ctx, n); err != nil {
		t.Fatal(err)
	}
	tree, _, err := tw.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return tree
}

func verdicts(rep *Report) map[string]SnapshotVerdict {
	out := map[string]SnapshotVerdict{}
	for _, v := range rep.Snapshots {
		out[v.ID] = v
	}
	return out
}

func TestForgedSnapshotsDoNotSteerRetention(t *testing.T) {
	t.Parallel()
	tr := newTestRepo(t, nil)
	now := time.Now().UTC()
	a := tr.backupAt(t, now.Add(-10*24*time.Hour), "ten days ago")
	b := tr.backupAt(t, now.Add(-5*24*time.Hour), "five days ago")
	// One second after b, in b's day: with the old ranking it took b's
	// daily slot and b was deleted.
	late := tr.forge(t, b, b.EndTime.Add(time.Second), b.Tree)
	// From the future: it was the newest, and counted in every window.
	future := tr.forge(t, b, now.Add(365*24*time.Hour), b.Tree)
	// Dated right, but its file's data is nowhere: it would take today's
	// slot.
	empty := tr.forge(t, b, now.Add(-time.Minute), tr.treeWithMissingData(t))

	opts := Options{Assets: []Asset{{Name: "db", Kind: plainKind{}, Rules: retention.Rules{Daily: 2}}}, Grace: 24 * time.Hour}
	rep, err := Run(t.Context(), tr.r, opts)
	// The sweep cannot know what a snapshot with missing data needs, so
	// it frees nothing while one is there; deciding and deleting went on.
	if err == nil || !strings.Contains(err.Error(), empty.ID.Short()) || !strings.Contains(err.Error(), "expire deletes nothing") {
		t.Fatalf("expire with a snapshot whose data is missing: %v", err)
	}
	v := verdicts(rep)
	for _, s := range []*repo.Snapshot{a, b} {
		if got := v[s.ID.String()]; !got.Keep || got.Deleted || got.Untrusted != "" {
			t.Errorf("genuine snapshot %s: %+v", s.ID.Short(), got)
		}
	}
	for name, s := range map[string]*repo.Snapshot{"late": late, "future": future, "empty": empty} {
		got := v[s.ID.String()]
		if !got.Keep || got.Untrusted == "" || !strings.HasPrefix(got.Reasons[0], "untrusted: ") {
			t.Errorf("forged %s snapshot: %+v", name, got)
		}
		t.Logf("%s: %s", name, got.Reasons[0])
	}
	left, err := tr.r.Snapshots(t.Context(), "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 5 {
		t.Fatalf("%d snapshots left, want all 5", len(left))
	}
	// Without the one whose data is missing, the run completes.
	if err := tr.r.DeleteSnapshot(t.Context(), empty.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), tr.r, opts); err != nil {
		t.Fatal(err)
	}
	if left, _ := tr.r.Snapshots(t.Context(), "db"); len(left) != 4 {
		t.Fatalf("%d snapshots left, want 4", len(left))
	}
}

// listHook calls fn on every listing of the snapshots, as a writer racing
// the plan would be seen.
type listHook struct {
	storage.Backend
	fn func()
}

func (h *listHook) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if prefix == "snapshots/" && h.fn != nil {
		h.fn()
	}
	return h.Backend.List(ctx, prefix, fn)
}

func TestExpirePlansAgainWhenSnapshotsAppear(t *testing.T) {
	t.Parallel()
	hook := &listHook{}
	tr := newTestRepo(t, func(be storage.Backend) storage.Backend { hook.Backend = be; return hook })
	now := time.Now().UTC()
	old := tr.backupAt(t, now.Add(-10*24*time.Hour), "old")
	tr.backupAt(t, now.Add(-time.Hour), "new")
	opts := Options{Assets: []Asset{{Name: "db", Kind: plainKind{}, Rules: retention.Rules{Daily: 1}}}, Grace: 24 * time.Hour}

	// A writer that never stops adding snapshots: nothing is deleted.
	var n atomic.Int32
	hook.fn = func() {
		if n.Add(1)%2 == 0 { // after each plan's own listings
			tr.forge(t, old, time.Now().UTC(), old.Tree)
		}
	}
	_, err := Run(t.Context(), tr.r, opts)
	if !errors.Is(err, repo.ErrConflict) || !strings.Contains(err.Error(), "nothing was deleted") {
		t.Fatalf("expire while snapshots keep appearing: %v", err)
	}
	if _, err := tr.r.LoadSnapshot(t.Context(), old.ID); err != nil {
		t.Fatalf("the old snapshot is gone: %v", err)
	}
	// Once they stop, the next plan holds and expire goes on.
	hook.fn = nil
	rep, err := Run(t.Context(), tr.r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := verdicts(rep)[old.ID.String()]; got.Keep || !got.Deleted {
		t.Fatalf("old snapshot after the writer stopped: %+v", got)
	}
}

// TestConcurrentBackupsAndExpires starts two backups of one asset
// together, two expires together, and a backup against an expire, round
// after round, each through its own handle as separate processes would:
// never are two backups or two expires inside their locks at once, and
// every snapshot that was recorded reads back whole.
func TestConcurrentBackupsAndExpires(t *testing.T) {
	t.Parallel()
	tr := newTestRepo(t, nil)
	ctx := t.Context()
	var backups, expires atomic.Int32
	// inside counts a holder in while it holds, long enough for a rival
	// that wrongly got the lock too to be seen.
	inside := func(n *atomic.Int32, what string) {
		if n.Add(1) > 1 {
			t.Errorf("two %s at once", what)
		}
		time.Sleep(5 * time.Millisecond)
		n.Add(-1)
	}
	handle := func(expiring bool) *repo.Repository {
		be, err := fs.New(tr.dir)
		if err != nil {
			t.Fatal(err)
		}
		if expiring {
			// Expire lists the snapshots only while it holds its lock.
			be = &listHook{Backend: be, fn: func() { inside(&expires, "expires") }}
		}
		r, err := repo.Open(ctx, be, tr.sec, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	backup := func(r *repo.Repository, content string) error {
		s, err := treestore.Begin(ctx, r, treestore.Options{Asset: "db", Kind: "files"})
		if err != nil {
			return err
		}
		defer s.Abort()
		inside(&backups, "backups")
		if err := s.Add(ctx, &repo.Node{Path: "f", Type: repo.NodeFile, Mode: 0o600}, strings.NewReader(content)); err != nil {
			return err
		}
		_, err = s.Commit(ctx, "full", nil)
		return err
	}
	// The grace period is what keeps the data of a backup committing
	// after expire listed the snapshots; an hour is far beyond this test.
	opts := Options{Assets: []Asset{{Name: "db", Kind: plainKind{}, Rules: retention.Rules{Daily: 1}}}, Grace: time.Hour}
	expire := func(r *repo.Repository) error { _, err := Run(ctx, r, opts); return err }
	together := func(fs ...func() error) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, f := range fs {
			wg.Go(func() {
				<-start
				if err := f(); err != nil && !errors.Is(err, repo.ErrLocked) {
					t.Errorf("unexpected failure: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	b1, b2, e1, e2 := handle(false), handle(false), handle(true), handle(true)
	// Two backups together 100 times; two expires, and a backup against
	// an expire, every other round.
	const rounds = 100
	for round := range rounds {
		a, b := fmt.Sprintf("round %d a", round), fmt.Sprintf("round %d b", round)
		together(func() error { return backup(b1, a) }, func() error { return backup(b2, b) })
		if round%2 == 0 {
			together(func() error { return expire(e1) }, func() error { return expire(e2) })
			together(func() error { return backup(b1, a+" against expire") }, func() error { return expire(e2) })
		}
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
	// Every recorded snapshot restores: its one file reads back whole.
	snaps, err := tr.r.Snapshots(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) == 0 {
		t.Fatal("no backup succeeded")
	}
	idx, err := tr.r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		err := tr.r.WalkTree(ctx, idx, s.Tree, func(n *repo.Node) error {
			var content []byte
			for _, b := range n.Blocks {
				data, err := tr.r.LoadBlob(ctx, idx, b.ID)
				if err != nil {
					return err
				}
				content = append(content, data...)
			}
			if !strings.HasPrefix(string(content), "round ") || int64(len(content)) != n.Size {
				return fmt.Errorf("%s reads back as %q", n.Path, content)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("snapshot %s: %v", s.ID.Short(), err)
		}
	}
}
