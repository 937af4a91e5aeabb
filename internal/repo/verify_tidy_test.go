package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestVerifyReportsLeftovers: a temporary file a killed write left and a
// pack no index names are reported with their sizes, not as problems; a
// sweep removes the temporary file once it is older than the grace period.
func TestVerifyReportsLeftovers(t *testing.T) {
	t.Parallel()
	r, dir, _ := newTestRepo(t)
	ctx := context.Background()
	backupFiles(t, r, "a", map[string][]byte{"f": compressible(100<<10, 1)})
	// What a wal-push killed in the middle of its Put leaves.
	tmp := filepath.Join(dir, "wal", "a", "00000001", ".tmp-4711")
	if err := os.MkdirAll(filepath.Dir(tmp), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, make([]byte, 12345), 0o600); err != nil {
		t.Fatal(err)
	}
	// What a backup killed between storing a pack and indexing it leaves.
	pack := make([]byte, 54321)
	rand.Read(pack)
	packID := hashObject(pack)
	if err := r.be.Put(ctx, packName(packID), bytes.NewReader(pack), int64(len(pack))); err != nil {
		t.Fatal(err)
	}
	// The repository is used through the retry decorator in production:
	// the capability must be found through it.
	r.be = retry.New(r.be, retry.Options{})

	rep, err := r.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("leftovers reported as problems: %q", rep.Problems)
	}
	if len(rep.Temporary) != 1 || rep.Temporary[0].Name != "wal/a/00000001/.tmp-4711" || rep.TemporaryBytes() != 12345 {
		t.Errorf("temporary files: %+v", rep.Temporary)
	}
	if len(rep.Unreferenced) != 1 || rep.Unreferenced[0].Name != packName(packID) || rep.UnreferencedBytes() != 54321 {
		t.Errorf("unreferenced packs: %+v", rep.Unreferenced)
	}

	// A sweep leaves a young temporary file (its write may still run) and
	// removes an old one.
	sw, err := r.Sweep(ctx, SweepOptions{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); sw.TempRemoved != 0 || err != nil {
		t.Fatalf("a sweep removed a young temporary file: %d, %v", sw.TempRemoved, err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(tmp, old, old); err != nil {
		t.Fatal(err)
	}
	if sw, err = r.Sweep(ctx, SweepOptions{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); sw.TempRemoved != 1 || !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("a sweep left an old temporary file: removed %d, stat %v", sw.TempRemoved, err)
	}
}

// writeRandom stores n bytes of incompressible blobs through w, stopping
// at the first error, which it returns (Finish's included).
func writeRandom(ctx context.Context, r *Repository, w *Writer, n int) error {
	sink := w.NewSink()
	buf := make([]byte, r.Config().BlockSize)
	for written := 0; written < n; written += len(buf) {
		rand.Read(buf)
		if _, _, err := sink.Save(ctx, DataBlob, buf); err != nil {
			return err
		}
	}
	if err := sink.Flush(ctx); err != nil {
		return err
	}
	return w.Finish(ctx)
}

func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d iofs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	return out
}

// TestFullVolumeBackupRemovesItsPacks fills a real filesystem of fixed
// size: the backup fails for lack of space, removes the packs it stored,
// and a retry that fits in the volume succeeds (it would not with the
// failed backup's packs still there).
func TestFullVolumeBackupRemovesItsPacks(t *testing.T) {
	t.Parallel()
	dir := testenv.SmallVolume(t, 40<<20)
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	sec, err := KeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := Init(ctx, be, sec, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, retry.New(be, retry.Options{InitialDelay: time.Millisecond, MaxDelay: time.Millisecond}), sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	w := r.NewWriter(nil)
	err = writeRandom(ctx, r, w, 64<<20)
	w.Abort()
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("a 64 MiB backup onto a 40 MiB volume: %v, want no space", err)
	}
	if left := dataFiles(t, dir); len(left) != 0 {
		t.Fatalf("the failed backup left %v", left)
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Temporary) != 0 || len(rep.Unreferenced) != 0 {
		t.Fatalf("verify after the failed backup: %+v, %v", rep, err)
	}

	// 30 MiB fits only in the space the failed backup gave back.
	w = r.NewWriter(nil)
	if err := writeRandom(ctx, r, w, 30<<20); err != nil {
		t.Fatalf("the retry failed: %v (left: %v)", err, dataFiles(t, dir))
	}
	if rep, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !rep.OK() || len(rep.Unreferenced) != 0 {
		t.Fatalf("verify after the retry: %+v, %v", rep, err)
	}
}

// failIndexPuts fails every Put of an index object with err, and counts
// them; whether the object is stored all the same is up to store.
type failIndexPuts struct {
	storage.Backend
	err   error
	store bool
}

func (b *failIndexPuts) Put(ctx context.Context, name string, body io.ReadSeeker, size int64) error {
	if strings.HasPrefix(name, "index/") {
		if b.store {
			if err := b.Backend.Put(ctx, name, body, size); err != nil {
				return err
			}
		}
		return b.err
	}
	return b.Backend.Put(ctx, name, body, size)
}

// TestAbortRemovesOnlyItsUnindexedPacks: packs an index object names stay
// when the backup fails (a concurrent backup may reuse them, and the retry
// will), packs no index names go; when the index object failed to store,
// its packs go only if the store said for certain that nothing was stored.
func TestAbortRemovesOnlyItsUnindexedPacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		indexErr error // nil: index objects store normally
		store    bool  // the failed index Put stored the object all the same
		kept     int   // packs left after Abort
	}{
		{"indexed packs stay, the rest go", nil, false, indexEvery},
		{"no space for the index: its packs go", fmt.Errorf("put: %w", storage.ErrNoSpace), false, 0},
		{"refused for good: its packs go", storage.Permanent(errors.New("denied")), false, 0},
		{"lost answer, index absent: its packs stay", errors.New("connection reset"), false, indexEvery},
		{"lost answer, index stored: its packs stay", errors.New("connection reset"), true, indexEvery},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, dir, _ := newTestRepo(t)
			if tc.indexErr != nil {
				r.be = &failIndexPuts{Backend: r.be, err: tc.indexErr, store: tc.store}
			}
			// Small packs, so that one index object's worth is quick.
			r.cfg.PackSize, r.cfg.FrameSize = 64<<10, 16<<10
			w := r.NewWriter(nil)
			sink := w.NewSink()
			buf := make([]byte, r.cfg.BlockSize)
			for i := 0; w.Stats().Packs < indexEvery+3 && i < 10000; i++ {
				rand.Read(buf)
				if _, _, err := sink.Save(ctx, DataBlob, buf); err != nil {
					break
				}
			}
			w.Abort()
			left := dataFiles(t, dir)
			if len(left) != tc.kept {
				t.Fatalf("%d packs left, want %d: %v", len(left), tc.kept, left)
			}
			if tc.indexErr != nil {
				return
			}
			// What stays is whole: the index names every pack left.
			rep, err := r.Verify(ctx, VerifyOptions{ReadData: true})
			if err != nil || !rep.OK() || len(rep.Unreferenced) != 0 {
				t.Fatalf("verify after the abort: %+v, %v", rep, err)
			}
		})
	}
}
