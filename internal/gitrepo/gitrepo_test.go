package gitrepo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/gitrepo/gitrepotest"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// fixture is a repository, a mirror directory and some source repositories.
type fixture struct {
	t       *testing.T
	r       *repo.Repository
	mirrors string
	dir     string
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, r: repotest.New(t), mirrors: filepath.Join(t.TempDir(), "git-mirrors", "source"), dir: t.TempDir()}
}

func (f *fixture) backup(urls ...string) (*repo.Snapshot, error) {
	f.t.Helper()
	rs, err := LoadRemotes(urls, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return Backup(f.t.Context(), f.r, BackupOptions{Asset: "source", Remotes: rs, MirrorDir: f.mirrors})
}

func (f *fixture) mustBackup(urls ...string) *repo.Snapshot {
	f.t.Helper()
	snap, err := f.backup(urls...)
	if err != nil {
		f.t.Fatal(err)
	}
	return snap
}

func (f *fixture) restore(snap *repo.Snapshot, only string) (string, []Restored, error) {
	f.t.Helper()
	dir := filepath.Join(f.t.TempDir(), "restored")
	done, err := Restore(f.t.Context(), f.r, snap, RestoreOptions{Dir: dir, Only: only, UID: os.Getuid(), GID: os.Getgid()})
	return dir, done, err
}

// checkSame fails unless the bare repository at got is whole and has the
// refs and HEAD of the repository at src.
func checkSame(t *testing.T, src, got string) {
	t.Helper()
	gitrepotest.Fsck(t, got)
	if want, have := gitrepotest.Refs(t, src), gitrepotest.Refs(t, got); want != have {
		t.Fatalf("refs of %s differ from %s:\nsource:\n%s\nrestored:\n%s", got, src, want, have)
	}
	if want, have := gitrepotest.Git(t, src, "symbolic-ref", "HEAD"), gitrepotest.Git(t, got, "symbolic-ref", "HEAD"); want != have {
		t.Fatalf("HEAD of %s is %s, source has %s", got, have, want)
	}
	// Every object of the source is there: the restored repository can
	// serve a full clone that matches.
	if want, have := gitrepotest.Git(t, src, "rev-list", "--all", "--objects"), gitrepotest.Git(t, got, "rev-list", "--all", "--objects"); want != have {
		t.Fatalf("objects of %s differ from %s", got, src)
	}
}

func TestBackupRestoreByPathAndURL(t *testing.T) {
	f := newFixture(t)
	web := gitrepotest.Source(t, f.dir, "web", 64<<10)
	infra := gitrepotest.Source(t, filepath.Join(f.dir, "srv"), "infra", 32<<10)
	gitrepotest.Commit(t, infra, "infra.txt", "only in infra\n")
	snap := f.mustBackup(web, "file://"+infra)

	info, err := ParseInfo(snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Repositories) != 2 || info.Repositories[0].Name != "infra" || info.Repositories[1].Name != "web" {
		t.Fatalf("recorded %+v", info.Repositories)
	}
	for _, ri := range info.Repositories {
		src := map[string]string{"infra": infra, "web": web}[ri.Name]
		var lines []string
		for _, r := range ri.Refs {
			lines = append(lines, r.Object+" "+r.Name)
		}
		if got, want := strings.Join(lines, "\n"), gitrepotest.Refs(t, src); got != want {
			t.Fatalf("%s: recorded refs\n%s\nsource refs\n%s", ri.Name, got, want)
		}
		if ri.Head != "refs/heads/main" {
			t.Fatalf("%s: recorded HEAD %q", ri.Name, ri.Head)
		}
	}
	// What a naive backup misses is there.
	refs := gitrepotest.Refs(t, web)
	for _, want := range []string{"refs/notes/commits", "refs/tags/only-tag", "refs/tags/blob-tag", "refs/tags/v2-approved", "refs/heads/feature"} {
		if !strings.Contains(refs, want) {
			t.Fatalf("source lacks %s:\n%s", want, refs)
		}
	}

	dir, done, err := f.restore(snap, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 {
		t.Fatalf("restored %+v", done)
	}
	checkSame(t, web, filepath.Join(dir, "web.git"))
	checkSame(t, infra, filepath.Join(dir, "infra.git"))
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("restore left more than the repositories: %v", entries)
	}

	// One repository, named with or without .git.
	dir, _, err = f.restore(snap, "infra.git")
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, infra, filepath.Join(dir, "infra.git"))
	if _, err := os.Stat(filepath.Join(dir, "web.git")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("--path infra.git restored web.git too: %v", err)
	}
	if _, _, err := f.restore(snap, "nope"); !errors.Is(err, ErrUnknownRepository) || !strings.Contains(err.Error(), "infra.git, web.git") {
		t.Fatalf("unknown repository: %v", err)
	}
}

// TestNightlyBackupStoresLittle: a second backup of an unchanged
// repository stores almost nothing, and one after a new commit little
// more than the commit.
func TestNightlyBackupStoresLittle(t *testing.T) {
	f := newFixture(t)
	src := gitrepotest.Source(t, f.dir, "web", 4<<20)
	first := f.mustBackup(src)
	same := f.mustBackup(src)
	gitrepotest.Commit(t, src, "README", "one more line\n")
	next := f.mustBackup(src)
	t.Logf("first %d bytes new of %d; unchanged %d new; after a commit %d new",
		first.Stats.BytesNew, first.Stats.BytesTotal, same.Stats.BytesNew, next.Stats.BytesNew)
	if first.Stats.BytesNew < 4<<20 {
		t.Fatalf("first backup stored %d new bytes, less than the data", first.Stats.BytesNew)
	}
	if same.Stats.BytesNew > 4<<10 || next.Stats.BytesNew > 64<<10 {
		t.Fatalf("nightly backups stored too much: unchanged %d, after a commit %d", same.Stats.BytesNew, next.Stats.BytesNew)
	}
	dir, _, err := f.restore(next, "")
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, src, filepath.Join(dir, "web.git"))
}

// TestRefsRemovedUpstream: a branch deleted and a tag moved at the
// remote are gone and moved in the next snapshot too.
func TestRefsRemovedUpstream(t *testing.T) {
	f := newFixture(t)
	src := gitrepotest.Source(t, f.dir, "web", 1024)
	f.mustBackup(src)
	gitrepotest.Git(t, src, "branch", "-D", "feature")
	gitrepotest.Git(t, src, "tag", "-f", "v1", "HEAD~1")
	gitrepotest.Git(t, src, "symbolic-ref", "HEAD", "refs/heads/trunk")
	gitrepotest.Git(t, src, "branch", "trunk", "main")
	snap := f.mustBackup(src)
	dir, _, err := f.restore(snap, "")
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, src, filepath.Join(dir, "web.git"))
}

func TestFailedRemoteRecordsNothing(t *testing.T) {
	f := newFixture(t)
	src := gitrepotest.Source(t, f.dir, "web", 1024)
	for _, c := range []struct {
		remote string
		want   string
	}{
		{filepath.Join(f.dir, "gone.git"), "remote gone (" + filepath.Join(f.dir, "gone.git") + "): git fetch: fatal: "},
		// Nothing listens on port 1: refused at once, and the password
		// must not reach the message.
		{"https://deploy:hunter2@127.0.0.1:1/drop/web.git", "remote web-"},
	} {
		_, err := f.backup(src, c.remote)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("backup with %s: %v", RedactURL(c.remote), err)
		}
		t.Logf("%v", err)
	}
	if snaps, err := f.r.Snapshots(t.Context(), "source"); err != nil || len(snaps) != 0 {
		t.Fatalf("%d snapshots recorded for failed backups (%v)", len(snaps), err)
	}
	// Two failures are both named.
	_, err := f.backup(filepath.Join(f.dir, "a"), filepath.Join(f.dir, "b"))
	if err == nil || !strings.HasPrefix(err.Error(), "2 of 2 remotes failed: remote a (") || !strings.Contains(err.Error(), "; remote b (") {
		t.Fatalf("two failed remotes: %v", err)
	}
	f.mustBackup(src)
}

// TestMirrorRecovers: lock files of a killed git run and a mirror made
// for another URL do not stop the next backup; a removed remote's mirror
// is removed after the next snapshot.
func TestMirrorRecovers(t *testing.T) {
	f := newFixture(t)
	web := gitrepotest.Source(t, f.dir, "web", 1024)
	other := gitrepotest.Source(t, filepath.Join(f.dir, "other"), "web", 2048)
	infra := gitrepotest.Source(t, f.dir, "infra", 1024)
	f.mustBackup(web, infra)
	mirror := filepath.Join(f.mirrors, "web.git")
	for _, p := range []string{"packed-refs.lock", "HEAD.lock", "objects/pack/tmp_pack_abc"} {
		if err := os.WriteFile(filepath.Join(mirror, p), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.mustBackup(web)
	if _, err := os.Stat(filepath.Join(f.mirrors, "infra.git")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mirror of a remote no longer listed is kept: %v", err)
	}
	// Same name, another repository: its mirror starts afresh, and the
	// snapshot has other's refs only.
	gitrepotest.Commit(t, other, "other.txt", "other\n")
	snap := f.mustBackup(other)
	dir, _, err := f.restore(snap, "")
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, other, filepath.Join(dir, "web.git"))
}

// TestRestoreChecks: a restore refuses a non-empty target, and one whose
// refs do not match the record fails loudly and keeps the files aside.
func TestRestoreChecks(t *testing.T) {
	f := newFixture(t)
	src := gitrepotest.Source(t, f.dir, "web", 1024)
	snap := f.mustBackup(src)

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "web.git"), 0o755)
	os.WriteFile(filepath.Join(dir, "web.git", "HEAD"), []byte("mine"), 0o644)
	_, err := Restore(t.Context(), f.r, snap, RestoreOptions{Dir: dir, UID: -1, GID: -1})
	if err == nil || !strings.Contains(err.Error(), "exists and is not empty") {
		t.Fatalf("restore over a repository: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "web.git", "HEAD")); string(data) != "mine" {
		t.Fatal("restore wrote into an existing repository")
	}

	// The record says main is somewhere else: the restore must say so.
	info, _ := ParseInfo(snap)
	info.Repositories[0].Refs[0].Object = strings.Repeat("0", 40)
	info.Repositories[0].Refs = append(info.Repositories[0].Refs, Ref{Name: "refs/heads/zz", Object: strings.Repeat("1", 40)})
	bad := *snap
	bad.Extra, _ = json.Marshal(info)
	dir = t.TempDir()
	_, err = Restore(t.Context(), f.r, &bad, RestoreOptions{Dir: dir, UID: -1, GID: -1})
	if err == nil || !strings.Contains(err.Error(), "refs differ from the backup") || !strings.Contains(err.Error(), "refs/heads/zz missing") {
		t.Fatalf("restore with other refs recorded: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.git")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a repository that failed its check got its name")
	}

	// A damaged object in the restored files fails git fsck.
	ctx := context.Background()
	dir = t.TempDir()
	if _, err := Restore(ctx, f.r, snap, RestoreOptions{Dir: dir, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "web.git", "objects", "pack", "*.pack"))
	if len(packs) == 0 {
		t.Fatal("no pack restored")
	}
	git, _ := newGitRunner("")
	data, _ := os.ReadFile(packs[0])
	os.Chmod(packs[0], 0o644)
	os.WriteFile(packs[0], bytes.Replace(data, data[len(data)/2:len(data)/2+8], []byte("DAMAGED!"), 1), 0o644)
	ri := info.Repositories[0]
	if err := verify(ctx, git, filepath.Join(dir, "web.git"), ri); err == nil {
		t.Fatal("git fsck accepted a damaged pack")
	} else {
		t.Logf("damaged pack: %v", err)
	}
}

// TestUnusualRemotes: an empty repository, a bare one with a detached
// HEAD, and a checkout named by its .git directory all round-trip.
func TestUnusualRemotes(t *testing.T) {
	f := newFixture(t)
	empty := filepath.Join(f.dir, "empty.git")
	gitrepotest.Git(t, f.dir, "init", "-q", "--bare", empty)
	src := gitrepotest.Source(t, f.dir, "work", 1024)
	detached := filepath.Join(f.dir, "detached.git")
	gitrepotest.Git(t, f.dir, "clone", "-q", "--mirror", src, detached)
	gitrepotest.Git(t, detached, "update-ref", "--no-deref", "HEAD", "refs/tags/v1^{commit}")
	snap := f.mustBackup(empty, detached, filepath.Join(src, ".git"))
	info, _ := ParseInfo(snap)
	heads := map[string]string{}
	for _, ri := range info.Repositories {
		heads[ri.Name] = ri.Head
	}
	v1 := gitrepotest.Git(t, src, "rev-parse", "v1^{commit}")
	if heads["empty"] != "refs/heads/master" && heads["empty"] != "refs/heads/main" || heads["detached"] != v1 || heads["work"] != "refs/heads/main" {
		t.Fatalf("recorded HEADs %v", heads)
	}
	dir, _, err := f.restore(snap, "")
	if err != nil {
		t.Fatal(err)
	}
	gitrepotest.Fsck(t, filepath.Join(dir, "empty.git"))
	if refs := gitrepotest.Refs(t, filepath.Join(dir, "empty.git")); refs != "" {
		t.Fatalf("empty repository restored with refs %s", refs)
	}
	checkSame(t, src, filepath.Join(dir, "work.git"))
	gitrepotest.Fsck(t, filepath.Join(dir, "detached.git"))
	if got := gitrepotest.Git(t, filepath.Join(dir, "detached.git"), "rev-parse", "HEAD"); got != v1 {
		t.Fatalf("detached HEAD restored at %s, want %s", got, v1)
	}
}
