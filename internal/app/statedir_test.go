package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultStateDirFallsBackToTheUsersOwn(t *testing.T) {
	home := t.TempDir()
	t.Setenv("XDG_STATE_HOME", filepath.Join(home, "state"))
	// A directory that cannot be made: its parent is a file.
	blocker := filepath.Join(home, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var said bytes.Buffer
	want := filepath.Join(home, "state", "lifeboat")
	if got := defaultStateDir(filepath.Join(blocker, "lifeboat"), &said); got != want {
		t.Fatalf("state dir %s, want %s", got, want)
	}
	if fi, err := os.Stat(want); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("fallback directory: %v %v", fi, err)
	}
	if !strings.Contains(said.String(), "state_dir is not set") || strings.Count(said.String(), "\n") != 1 {
		t.Fatalf("said %q", said.String())
	}
	// Said once: the next run finds the directory and says nothing.
	said.Reset()
	if got := defaultStateDir(filepath.Join(blocker, "lifeboat"), &said); got != want || said.Len() != 0 {
		t.Fatalf("second run: %s, said %q", got, said.String())
	}
	// A directory this user can make is used as it is.
	free := filepath.Join(home, "var", "lib", "lifeboat")
	if got := defaultStateDir(free, &said); got != free {
		t.Fatalf("writable default: %s", got)
	}
}
