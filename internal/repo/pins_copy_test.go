package repo

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// syncedCopy makes a copy of r in a new directory, with its own key file,
// syncs it, and opens it.
func syncedCopy(t *testing.T, r *Repository) (*Repository, storage.Backend) {
	t.Helper()
	ctx := context.Background()
	dst, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "copy.key")
	if err := GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	sec, err := KeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.InitCopy(ctx, dst, sec); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx, dst); err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, dst, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, dst
}

// A snapshot held in the primary and in its copy separately (lifeboat pin
// and backup --pin hold it in every repository) carries two pin objects
// that differ in when they were placed: a later copy keeps the copy's hold
// and succeeds, rather than failing on an authentic object with other
// content.
func TestCopyKeepsAHoldPlacedInBoth(t *testing.T) {
	t.Parallel()
	r, _, _ := newTestRepo(t)
	ctx := context.Background()
	s := backupFiles(t, r, "a", map[string][]byte{"f": []byte("held")})
	c, dst := syncedCopy(t, r)
	if _, err := c.PinSnapshot(ctx, s.ID, "INC-1 held in the copy first, and a longer reason", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PinSnapshot(ctx, s.ID, "INC-1 held in the primary", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx, dst); err != nil {
		t.Fatalf("copy after a hold in both: %v", err)
	}
	pins, err := c.Pins(ctx)
	if err != nil || pins[s.ID] == nil || !strings.Contains(pins[s.ID].Reason, "copy first") {
		t.Fatalf("the copy's hold: %+v, %v", pins[s.ID], err)
	}
}
