package repo

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// The key cache tests count Argon2id runs in a package counter, so they do
// not call t.Parallel: Go runs them before the parallel tests start, when
// nothing else derives a key.

func newPassphraseRepo(t *testing.T, pass string) (storage.Backend, Secret) {
	t.Helper()
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pp, err := Passphrase(pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(context.Background(), be, pp, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return be, pp
}

// openCounting opens the repository and returns how many Argon2id runs
// the opening cost, and what it logged.
func openCounting(t *testing.T, be storage.Backend, s Secret) (*Repository, int64, string, error) {
	t.Helper()
	var logs bytes.Buffer
	before := argon2Runs.Load()
	r, err := Open(context.Background(), be, s, slog.New(slog.NewTextHandler(&logs, nil)))
	return r, argon2Runs.Load() - before, logs.String(), err
}

// TestKeyCacheDerivesOnce: the first opening derives the key and caches it
// in a private file; the next ones open without Argon2id, with the same
// master key.
func TestKeyCacheDerivesOnce(t *testing.T) {
	be, pp := newPassphraseRepo(t, "correct horse battery")
	dir := filepath.Join(t.TempDir(), "keycache")
	cached := pp.WithKeyCache(dir)
	r1, runs, _, err := openCounting(t, be, cached)
	if err != nil || runs != 1 {
		t.Fatalf("first open: %d derivations, %v", runs, err)
	}
	fi, err := os.Stat(cached.keyCachePath(be.Location()))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", fi, err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory: %v %v", di, err)
	}
	for i := 0; i < 3; i++ {
		r2, runs, _, err := openCounting(t, be, cached)
		if err != nil || runs != 0 {
			t.Fatalf("open %d with the cache: %d derivations, %v", i+2, runs, err)
		}
		if !bytes.Equal(r2.mk.Encrypt, r1.mk.Encrypt) || r2.KeyName() != r1.KeyName() {
			t.Fatal("the cache opened another master key")
		}
	}
	// Without the cache, the derivation runs as before.
	if _, runs, _, err := openCounting(t, be, pp); err != nil || runs != 1 {
		t.Fatalf("open without the cache: %d derivations, %v", runs, err)
	}
}

// TestKeyCacheStaleNotUsed: after the passphrase changes, the entry of the
// old one neither opens for a wrong passphrase nor outlives the removal of
// its key object.
func TestKeyCacheStaleNotUsed(t *testing.T) {
	ctx := context.Background()
	be, old := newPassphraseRepo(t, "correct horse battery")
	dir := filepath.Join(t.TempDir(), "keycache")
	r, runs, _, err := openCounting(t, be, old.WithKeyCache(dir))
	if err != nil || runs != 1 {
		t.Fatalf("first open: %d derivations, %v", runs, err)
	}
	oldKey := r.KeyName()

	// A wrong passphrase is refused although the cache holds a key that
	// opens the repository.
	wrong, _ := Passphrase("not the passphrase")
	if _, _, _, err := openCounting(t, be, wrong.WithKeyCache(dir)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase with a cache of the right one: %v", err)
	}

	// The passphrase changes: a key for the new one, the old one removed.
	newPP, _ := Passphrase("a brand new passphrase")
	if _, err := r.AddKey(ctx, newPP); err != nil {
		t.Fatal(err)
	}
	if err := be.Delete(ctx, oldKey); err != nil {
		t.Fatal(err)
	}
	// The old entry's key object is gone: the old passphrase no longer
	// opens, cache or not (it is tried, by derivation, on the new key).
	if _, _, _, err := openCounting(t, be, old.WithKeyCache(dir)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("old passphrase after its key was removed: %v", err)
	}
	// The new passphrase derives once, then opens from the cache.
	if _, runs, _, err := openCounting(t, be, newPP.WithKeyCache(dir)); err != nil || runs != 1 {
		t.Fatalf("new passphrase, first open: %d derivations, %v", runs, err)
	}
	if _, runs, _, err := openCounting(t, be, newPP.WithKeyCache(dir)); err != nil || runs != 0 {
		t.Fatalf("new passphrase, second open: %d derivations, %v", runs, err)
	}
}

// TestKeyCacheUnsafeRefused: a cache file others may read, one owned by
// another user, a symlink, or a directory others may write is not used
// (the key is derived, and the refusal logged); the repository still opens.
func TestKeyCacheUnsafeRefused(t *testing.T) {
	be, pp := newPassphraseRepo(t, "correct horse battery")
	dir := filepath.Join(t.TempDir(), "keycache")
	cached := pp.WithKeyCache(dir)
	if _, _, _, err := openCounting(t, be, cached); err != nil {
		t.Fatal(err)
	}
	path := cached.keyCachePath(be.Location())
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		os.Remove(path)
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o700)
		if _, runs, _, err := openCounting(t, be, cached); err != nil || runs != 0 {
			t.Fatalf("restored cache: %d derivations, %v", runs, err)
		}
	}
	cases := map[string]func(){
		"mode 0644": func() { os.Chmod(path, 0o644) },
		"directory 0777": func() {
			os.Chmod(dir, 0o777)
		},
		"symlink": func() {
			target := filepath.Join(t.TempDir(), "elsewhere")
			os.WriteFile(target, good, 0o600)
			os.Remove(path)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		},
	}
	if os.Geteuid() == 0 {
		cases["owned by another user"] = func() {
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		cases["owned by another user"] = func() {
			// Not root: a file of another user cannot be made, so the
			// check is tried on one that exists.
			fi, err := os.Stat("/etc/passwd")
			if err != nil {
				t.Fatal(err)
			}
			if err := checkPrivate(fi, false); !errors.Is(err, errKeyCacheUnsafe) {
				t.Fatalf("a file of root accepted: %v", err)
			}
		}
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			spoil()
			r, runs, logs, err := openCounting(t, be, cached)
			if err != nil || r == nil {
				t.Fatalf("open beside an unsafe cache: %v", err)
			}
			if name == "owned by another user" && os.Geteuid() != 0 {
				restore()
				return
			}
			if runs != 1 || !strings.Contains(logs, "key cache not used") {
				t.Fatalf("unsafe cache (%s) used: %d derivations, log:\n%s", name, runs, logs)
			}
			restore()
		})
	}
}
