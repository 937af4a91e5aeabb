package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/gitrepo/gitrepotest"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// newGitEnv is a policy with one git asset, source, listing remotes and
// remotesFile ("" for none), and a file repository for it.
func newGitEnv(t *testing.T, remotes []string, remotesFile string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	var keys strings.Builder
	if len(remotes) > 0 {
		quoted, _ := json.Marshal(remotes)
		fmt.Fprintf(&keys, "    remotes: %s\n", quoted)
	}
	if remotesFile != "" {
		fmt.Fprintf(&keys, "    remotes_file: %s\n", remotesFile)
	}
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: source
    kind: git
%s    repositories: [primary]
`, filepath.Join(dir, "state"), e.repo, filepath.Join(dir, "repo.key"), keys.String())
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init")
	return e
}

// gitSnapshots lists the asset's snapshots, oldest first.
func (e *env) gitSnapshots() []snapshotRow {
	e.t.Helper()
	var rows []snapshotRow
	if err := json.Unmarshal([]byte(e.mustRun("snapshots", "source", "--json")), &rows); err != nil {
		e.t.Fatal(err)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].StopTime.Before(rows[j].StopTime) })
	return rows
}

// checkRestoredGit fails unless the bare repository at got is whole and
// has exactly the refs and HEAD of src.
func checkRestoredGit(t *testing.T, src, got string) {
	t.Helper()
	gitrepotest.Fsck(t, got)
	if want, have := gitrepotest.Refs(t, src), gitrepotest.Refs(t, got); want != have {
		t.Fatalf("refs of %s differ from %s:\nsource:\n%s\nrestored:\n%s", got, src, want, have)
	}
	if want, have := gitrepotest.Git(t, src, "symbolic-ref", "HEAD"), gitrepotest.Git(t, got, "symbolic-ref", "HEAD"); want != have {
		t.Fatalf("HEAD of %s is %s, source has %s", got, have, want)
	}
}

// TestGitBackupRestore: remotes by local path, by file:// URL and from a
// remotes file are backed up, restored as bare repositories with the
// source's refs that git fsck accepts; the next night's backup after a
// commit stores little.
func TestGitBackupRestore(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	web := gitrepotest.Source(t, src, "web", 2<<20)
	infra := gitrepotest.Source(t, filepath.Join(src, "srv"), "infra", 64<<10)
	ops := gitrepotest.Source(t, src, "ops", 16<<10)
	gitrepotest.Commit(t, ops, "ops.txt", "only ops\n")
	list := filepath.Join(src, "org-repos.txt")
	os.WriteFile(list, []byte("# the organisation's repositories\n\n"+ops+"   # ops team\n"), 0o600)
	e := newGitEnv(t, []string{web, "file://" + infra}, list)

	out := e.mustRun("backup", "source")
	if !strings.Contains(out, "git: 3 repositories, ") || !strings.Contains(out, "infra, ops, web") || !strings.Contains(out, "(git)") {
		t.Fatalf("backup printed:\n%s", out)
	}
	to := filepath.Join(t.TempDir(), "restored")
	out = e.mustRun("restore", "source", "--to", to)
	for name, src := range map[string]string{"web": web, "infra": infra, "ops": ops} {
		checkRestoredGit(t, src, filepath.Join(to, name+".git"))
		if !strings.Contains(out, "restored "+name+".git to "+filepath.Join(to, name+".git")) {
			t.Fatalf("restore printed:\n%s", out)
		}
	}

	// One repository only.
	one := filepath.Join(t.TempDir(), "one")
	e.mustRun("restore", "source", "--to", one, "--path", "ops.git")
	checkRestoredGit(t, ops, filepath.Join(one, "ops.git"))
	if entries, _ := os.ReadDir(one); len(entries) != 1 {
		t.Fatalf("--path ops.git restored %d entries", len(entries))
	}
	// Never over an existing repository; an unknown name is refused.
	for _, args := range [][]string{{"--to", one, "--path", "ops"}, {"--to", t.TempDir(), "--path", "nope.git"}} {
		r := e.run(append([]string{"restore", "source"}, args...)...)
		if r.code != exitUsage || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("restore %v: exit %d\n%s", args, r.code, r.stderr)
		}
		t.Logf("restore %v: %s", args, strings.TrimSpace(r.stderr))
	}

	// The next night: one commit to web, nothing else changed.
	gitrepotest.Commit(t, web, "README", "a fix\n")
	e.mustRun("backup", "source")
	snaps := e.gitSnapshots()
	if len(snaps) != 2 || snaps[0].Kind != "git" {
		t.Fatalf("snapshots: %+v", snaps)
	}
	first, next := snaps[0], snaps[1]
	t.Logf("first backup: %d bytes, %d new; after one commit: %d new", first.BytesTotal, first.BytesNew, next.BytesNew)
	if next.BytesNew > 64<<10 {
		t.Fatalf("backup after one commit stored %d new bytes (first %d)", next.BytesNew, first.BytesNew)
	}
	to = filepath.Join(t.TempDir(), "next")
	e.mustRun("restore", "source", "--to", to, "--path", "web.git")
	checkRestoredGit(t, web, filepath.Join(to, "web.git"))
	// The older snapshot still restores the older state.
	old := filepath.Join(t.TempDir(), "old")
	e.mustRun("restore", "source", "--to", old, "--path", "web", "--snapshot", first.ID)
	if got := gitrepotest.Git(t, filepath.Join(old, "web.git"), "log", "-1", "--format=%s", "main"); got != "change README" {
		t.Fatalf("old snapshot's main is at %q", got)
	}
	if gitrepotest.Git(t, filepath.Join(old, "web.git"), "rev-parse", "main") == gitrepotest.Git(t, web, "rev-parse", "main") {
		t.Fatal("old snapshot has the new commit")
	}
}

// TestGitBackupFailures: a remote that cannot be fetched fails the
// backup with one line naming it, and nothing is recorded; a missing
// remotes file is refused as bad input.
func TestGitBackupFailures(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	web := gitrepotest.Source(t, src, "web", 1024)
	gone := filepath.Join(src, "gone.git")
	e := newGitEnv(t, []string{web, gone, "https://deploy:hunter2@127.0.0.1:1/drop/api.git"}, "")
	start := time.Now()
	r := e.run("backup", "source")
	msg := strings.TrimSpace(r.stderr)
	t.Logf("exit %d in %s: %s", r.code, time.Since(start).Round(time.Millisecond), msg)
	if r.code != exitFailure || strings.Contains(msg, "\n") || strings.Contains(msg, "hunter2") ||
		!strings.Contains(msg, "remote gone ("+gone+"): git fetch: fatal:") ||
		!strings.Contains(msg, "remote api (https://deploy:***@127.0.0.1:1/drop/api.git): git fetch: fatal: unable to access") {
		t.Fatalf("backup with unreachable remotes: exit %d\n%s", r.code, r.stderr)
	}
	if snaps := e.gitSnapshots(); len(snaps) != 0 {
		t.Fatalf("failed backup recorded %d snapshots", len(snaps))
	}

	e = newGitEnv(t, []string{web}, filepath.Join(src, "missing.txt"))
	r = e.run("backup", "source")
	if r.code != exitUsage || !strings.Contains(r.stderr, "remotes_file: open "+filepath.Join(src, "missing.txt")) {
		t.Fatalf("backup with a missing remotes_file: exit %d\n%s", r.code, r.stderr)
	}
	if snaps := e.gitSnapshots(); len(snaps) != 0 {
		t.Fatalf("failed backup recorded %d snapshots", len(snaps))
	}
}
