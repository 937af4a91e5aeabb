package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

const walPushPassphrase = "wal push test passphrase"

// newPassphraseEnv is a cluster whose archiver always fails, so its
// segments stay in pg_wal for the test to push itself, and a repository
// opened by passphrase.
func newPassphraseEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: t.TempDir()}
	e.repo = filepath.Join(e.dir, "repo")
	e.repoURL = "file://" + e.repo
	e.policy = filepath.Join(e.dir, "lifeboat.yaml")
	e.pg = pgtest.Start(t, pgtest.Options{Conf: map[string]string{
		"archive_mode": "on", "archive_command": "/bin/false", "wal_level": "replica", "archive_timeout": "0",
	}})
	e.writePassphrasePolicy(walPushPassphrase)
	e.mustRun("repo", "init")
	return e
}

func (e *env) writePassphrasePolicy(pass string) {
	e.t.Helper()
	e.writePolicy("/unused")
	text, err := os.ReadFile(e.policy)
	if err != nil {
		e.t.Fatal(err)
	}
	swapped := strings.Replace(string(text), "key_file: /unused", fmt.Sprintf("passphrase: %q", pass), 1)
	if err := os.WriteFile(e.policy, []byte(swapped), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// nextSegment ends the current WAL segment and returns its path in pg_wal;
// the failing archiver keeps it there.
func (e *env) nextSegment() string {
	e.t.Helper()
	out := e.sql("create table if not exists t (x int); insert into t select generate_series(1, 1000); " +
		"select pg_walfile_name(pg_current_wal_lsn()); select pg_switch_wal()")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return filepath.Join(e.pg.DataDir, "pg_wal", lines[len(lines)-2])
}

// fetchEquals fetches the archived file and compares it with the original.
// refusesConflictAndForeign pushes, with args before wal-push, the
// archived segment seg with one byte changed and a segment of another
// cluster: both are refused with their reasons, and the archive is left as
// it was. It returns the forged copy of seg.
func (e *env) refusesConflictAndForeign(seg string, args ...string) string {
	t := e.t
	t.Helper()
	before := treeDigest(t, filepath.Join(e.repo, "wal"))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	forged := filepath.Join(t.TempDir(), filepath.Base(seg))
	if err := os.WriteFile(forged, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.run(append(args, "wal-push", "db", forged)...); r.code == 0 || !strings.Contains(r.stderr, "different content") {
		t.Fatalf("conflicting push %v: exit %d: %s", args, r.code, r.stderr)
	}
	other := pgtest.Start(t, pgtest.Options{NoStart: true})
	foreign := filepath.Join(other.DataDir, "pg_wal", "000000010000000000000001")
	if r := e.run(append(args, "wal-push", "db", foreign)...); r.code == 0 || !strings.Contains(r.stderr, "system identifier") {
		t.Fatalf("foreign push %v: exit %d: %s", args, r.code, r.stderr)
	}
	if after := treeDigest(t, filepath.Join(e.repo, "wal")); after != before {
		t.Fatal("a refused push changed the archive")
	}
	return forged
}

func (e *env) fetchEquals(seg string) {
	e.t.Helper()
	dest := filepath.Join(e.t.TempDir(), "fetched")
	e.mustRun("wal-fetch", "db", filepath.Base(seg), dest)
	got, err := os.ReadFile(dest)
	if err != nil {
		e.t.Fatal(err)
	}
	want, err := os.ReadFile(seg)
	if err != nil {
		e.t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		e.t.Fatalf("%s: the archived file differs from the segment", filepath.Base(seg))
	}
}

// TestWALPushPassphraseKeyCache: with a passphrase repository, wal-push
// caches the derived key in state_dir and keeps every rule of the archive
// contract through the cache: re-push exits 0, conflicting content and a
// foreign cluster are refused, a changed passphrase does not open through
// the cache, and an unsafe cache is not used.
func TestWALPushPassphraseKeyCache(t *testing.T) {
	t.Parallel()
	e := newPassphraseEnv(t)
	seg := e.nextSegment()
	e.mustRun("wal-push", "db", seg)
	cacheDir := filepath.Join(e.dir, "state", "keycache")
	files, err := filepath.Glob(filepath.Join(cacheDir, "*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("key cache files: %v %v", files, err)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key cache file: %v %v", fi, err)
	}
	e.fetchEquals(seg)

	// Re-push of identical content, through the cache.
	if r := e.run("wal-push", "db", seg); r.code != 0 {
		t.Fatalf("re-push: exit %d: %s", r.code, r.stderr)
	}
	e.refusesConflictAndForeign(seg)

	// A wrong passphrase in the policy: the cache of the right one does
	// not open the repository, and nothing is archived.
	e.writePassphrasePolicy("not the passphrase at all")
	next := e.nextSegment()
	if r := e.run("wal-push", "db", next); r.code == 0 || !strings.Contains(r.stderr, "wrong key") {
		t.Fatalf("push with a wrong passphrase: exit %d: %s", r.code, r.stderr)
	}
	e.writePassphrasePolicy(walPushPassphrase)

	// A cache others may read is not used (and said), and archiving goes on.
	if err := os.Chmod(files[0], 0o644); err != nil {
		t.Fatal(err)
	}
	// wal-fetch (restore_command, a process per segment) reads the same
	// cache: it says so when the cache is unsafe, and fetches anyway.
	if r := e.run("wal-fetch", "db", filepath.Base(seg), filepath.Join(t.TempDir(), "fetched")); r.code != 0 || !strings.Contains(r.stderr, "key cache not used") {
		t.Fatalf("wal-fetch beside an unsafe cache: exit %d: %s", r.code, r.stderr)
	}
	// It derived the key and wrote the cache anew, private: unsafe again
	// for the push.
	if err := os.Chmod(files[0], 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("wal-push", "db", next); r.code != 0 || !strings.Contains(r.stderr, "key cache not used") {
		t.Fatalf("push beside an unsafe cache: exit %d: %s", r.code, r.stderr)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key cache not rewritten private: %v %v", fi, err)
	}
	e.fetchEquals(next)
}

// TestWALPushKilledAtRandom kills wal-push with SIGKILL at a random moment,
// a few rounds, with the key cache both being written and in use: a push
// afterwards always exits 0, and the archive holds exactly the segment.
func TestWALPushKilledAtRandom(t *testing.T) {
	t.Parallel()
	e := newPassphraseEnv(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for round := 0; round < 6; round++ {
		seg := e.nextSegment()
		if round == 3 {
			// Kill while the cache is being made, too.
			os.RemoveAll(filepath.Join(e.dir, "state", "keycache"))
		}
		cmd := exec.Command(e.bin, "-c", e.policy, "wal-push", "db", seg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.IntN(1500)) * time.Millisecond
		timer := time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
		err := cmd.Wait()
		timer.Stop()
		t.Logf("round %d: killed after %v: %v", round, delay, err)
		// What the killed push left must neither fail the retry nor be
		// taken for the segment unless it is whole.
		e.mustRun("wal-push", "db", seg)
		e.fetchEquals(seg)
	}
}
