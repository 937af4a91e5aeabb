package gitrepo

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// TestRestoreRefusesForgedLinks restores a git snapshot forged with the
// repository's key: hooks is a link to a directory elsewhere and
// hooks/pwned a file below it. The restore is refused as corrupt and
// nothing is written elsewhere, nor any repository put in place.
func TestRestoreRefusesForgedLinks(t *testing.T) {
	t.Parallel()
	r := repotest.New(t)
	elsewhere := t.TempDir()
	extra, err := json.Marshal(Info{Repositories: []RepoInfo{{Name: "web", Head: "refs/heads/main"}}})
	if err != nil {
		t.Fatal(err)
	}
	snap := repotest.SaveTree(t, r, &repo.Snapshot{Asset: "git", Kind: string(lifeboat.KindGit), Type: "full", Extra: extra}, []repotest.Entry{
		{Node: repo.Node{Path: "web.git", Type: repo.NodeDir, Mode: 0o755}},
		{Node: repo.Node{Path: "web.git/HEAD", Type: repo.NodeFile, Mode: 0o644}, Data: []byte("ref: refs/heads/main\n")},
		{Node: repo.Node{Path: "web.git/hooks", Type: repo.NodeSymlink, Mode: 0o777, Link: elsewhere}},
		{Node: repo.Node{Path: "web.git/hooks/pwned", Type: repo.NodeFile, Mode: 0o755}, Data: []byte("#!/bin/sh\ntouch /tmp/pwned\n")},
	})
	dir := filepath.Join(t.TempDir(), "restore")
	_, err = Restore(t.Context(), r, snap, RestoreOptions{Dir: dir, UID: -1, GID: -1})
	if !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), "below the symlink web.git/hooks") {
		t.Fatalf("restore of a forged snapshot: %v", err)
	}
	if names, _ := os.ReadDir(elsewhere); len(names) > 0 {
		t.Errorf("the refused restore wrote %s into %s", names[0].Name(), elsewhere)
	}
	if _, err := os.Lstat(filepath.Join(dir, "web.git")); err == nil {
		t.Error("the refused restore put web.git in place")
	}
}
