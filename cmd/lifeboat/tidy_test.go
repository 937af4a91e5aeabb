package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestVerifyLeftoversAndCounts: verify names a temporary file a killed
// wal-push left and a pack no index names, with their sizes, without
// counting them as problems; on a WAL gap the per-repository line and the
// total agree.
func TestVerifyLeftoversAndCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table x as select 1")
	e.mustRun("backup", "db")
	for i := 0; i < 3; i++ {
		e.sql("insert into x select 2")
		e.switchAndWait()
	}
	walDir := filepath.Join(e.repo, "wal", "db", "00000001")
	tmp := filepath.Join(walDir, ".tmp-1234567")
	if err := os.WriteFile(tmp, make([]byte, 3000), 0o600); err != nil {
		t.Fatal(err)
	}
	pack := make([]byte, 5000)
	rand.Read(pack)
	sum := sha256.Sum256(pack)
	id := hex.EncodeToString(sum[:])
	packPath := filepath.Join(e.repo, "data", id[:2], id)
	if err := os.MkdirAll(filepath.Dir(packPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(packPath, pack, 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("verify")
	t.Logf("verify with leftovers:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("verify with leftovers only: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"repository primary: 1 pack, 4.9 KiB (in no index: left by interrupted backups;",
		"repository primary:   data/" + id[:2] + "/" + id + " 4.9 KiB, written ",
		"repository primary: 1 temporary file, 2.9 KiB (left by writes that were killed;",
		"repository primary:   wal/db/00000001/.tmp-1234567 2.9 KiB, written ",
		" 0 problems\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, r.stdout)
		}
	}

	// A gap in the WAL after the backup: one problem, counted alike on the
	// repository's line and in the total.
	entries, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, en := range entries {
		if !strings.HasPrefix(en.Name(), ".") && len(en.Name()) == 24 {
			segs = append(segs, en.Name())
		}
	}
	if len(segs) < 3 {
		t.Fatalf("want three archived segments, have %v", segs)
	}
	if err := os.Remove(filepath.Join(walDir, segs[len(segs)-2])); err != nil {
		t.Fatal(err)
	}
	r = e.run("verify")
	t.Logf("verify with a WAL gap:\n%s%s", r.stdout, r.stderr)
	line := regexp.MustCompile(`repository primary: \d+ snapshots, .* (\d+) problems\n`).FindStringSubmatch(r.stdout)
	total := regexp.MustCompile(`(\d+) problems? found`).FindStringSubmatch(r.stderr)
	if r.code != 1 || line == nil || total == nil || line[1] != total[1] || line[1] == "0" {
		t.Fatalf("verify with a WAL gap: exit %d, the repository line and the total disagree:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "missing") {
		t.Errorf("verify does not name the gap:\n%s", r.stdout)
	}
}

// TestKeyFileRules: repo init makes no repository with a key file in the
// old format, and says what to do; repo add-key adds a new 64-hex key file
// to a repository, which then opens with it.
func TestKeyFileRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table x as select 1")
	e.mustRun("backup", "db")

	old := filepath.Join(e.dir, "old.key")
	if err := os.WriteFile(old, []byte("an old key file of forty-odd characters, from 2019\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := e.forTest(t)
	fresh.policy = filepath.Join(e.dir, "fresh.yaml")
	fresh.repo = filepath.Join(e.dir, "fresh-repo")
	fresh.repoURL = "file://" + fresh.repo
	fresh.writePolicy(old)
	r := fresh.run("repo", "init")
	if r.code != exitUsage || !strings.Contains(r.stderr, "not 64 hex digits") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("repo init with an old-format key file: exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(fresh.repo); !os.IsNotExist(err) {
		t.Fatalf("a refused repo init created %s: %v", fresh.repo, err)
	}

	if r := e.run("repo", "add-key", "primary", "--key-file", old); r.code != exitUsage || !strings.Contains(r.stderr, "not 64 hex digits") {
		t.Fatalf("add-key of an old-format key file: exit %d: %s", r.code, r.stderr)
	}
	added := filepath.Join(e.dir, "keys", "new.key")
	out := e.mustRun("repo", "add-key", "primary", "--key-file", added)
	if !strings.Contains(out, "created key file "+added) || !strings.Contains(out, "set key_file: "+added) || !strings.Contains(out, "previous key") {
		t.Fatalf("add-key output:\n%s", out)
	}
	e.writePolicy(added)
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots through the added key, want 1", n)
	}
}
