// Package repotest gives tests a fresh repository in a temporary
// directory. Only _test.go files import it.
package repotest

import (
	"path/filepath"
	"testing"

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
