package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// The race test re-executes this test binary as an unprivileged user to
// play the attacker; these variables tell it so.
const (
	envAttackDir    = "LIFEBOAT_TEST_ATTACK_DIR"
	envAttackVictim = "LIFEBOAT_TEST_ATTACK_VICTIM"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envAttackDir); dir != "" {
		attack(dir, os.Getenv(envAttackVictim))
	}
	os.Exit(m.Run())
}

// raceNames are the names of raceTree the attacker swaps for links.
var raceNames = []string{"a", "a/b", "a/b/f2", "a/f1", "f0", "a/b/c"}

// attack swaps every name of raceNames below dir for a symlink to victim
// (or to a file in it), in a loop, half the time leaving the link in
// place; on SIGTERM it prints how many entries it moved aside and exits.
func attack(dir, victim string) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	swaps := 0
	for i := 0; ; i++ {
		select {
		case <-stop:
			fmt.Println(swaps)
			os.Exit(0)
		default:
		}
		name := raceNames[i%len(raceNames)]
		p := filepath.Join(dir, name)
		to := victim
		if strings.HasPrefix(filepath.Base(name), "f") {
			to = filepath.Join(victim, "f0")
		}
		aside := filepath.Join(dir, ".aside-"+strconv.Itoa(i%len(raceNames)))
		os.RemoveAll(aside)
		if os.Rename(p, aside) == nil {
			swaps++
		}
		link := filepath.Join(dir, ".link")
		os.Remove(link)
		if os.Symlink(to, link) == nil {
			os.Rename(link, p)
		}
		if i%2 == 0 {
			os.Remove(p)
			os.Rename(aside, p)
		}
	}
}

// raceTree is a small tree every node of which an owner-changing,
// mode-changing or writing restore would betray through a followed link:
// directories 0777 and files 0666 of uid, a stored symlink as data.
func raceTree(uid int) []repotest.Entry {
	mt := time.Unix(1700000000, 0).UnixNano()
	n := func(p string, typ repo.NodeType, mode fs.FileMode, data string) repotest.Entry {
		return repotest.Entry{Node: repo.Node{Path: p, Type: typ, Mode: mode, UID: uint32(uid), GID: uint32(uid), MTime: mt}, Data: []byte(data)}
	}
	c := n("a/b/c", repo.NodeSymlink, 0o777, "")
	c.Link = "/etc/passwd"
	return []repotest.Entry{
		n("a", repo.NodeDir, 0o777, ""),
		n("a/b", repo.NodeDir, 0o777, ""),
		c,
		n("a/b/f2", repo.NodeFile, 0o666, "restored two\n"),
		n("a/f1", repo.NodeFile, 0o666, "restored one\n"),
		n("f0", repo.NodeFile, 0o777|fs.ModeSetuid, "restored zero\n"),
	}
}

// treeState records owner, mode and content of everything below dir.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	state := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := fmt.Sprintf("%d:%d %v", st.Uid, st.Gid, fi.Mode())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += " " + string(data)
		}
		state[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func checkUnchanged(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Fatalf("%s: %s changed: was %q, now %q", what, p, w, got[p])
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Fatalf("%s: %s appeared outside the target", what, p)
		}
	}
}

func loadIndex(t *testing.T, r *repo.Repository) *repo.Index {
	t.Helper()
	idx, err := r.LoadIndex(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// TestRestoreAsRootAgainstSymlinkRaces restores, as root, into a
// directory another user owns while that user swaps every name of the
// tree for links to a root-owned directory, round after round, plain and
// delta, with openat2 and with the component walk: nothing outside the
// target ever changes owner, mode or content, and once the attacker stops
// a delta restore puts the tree right.
func TestRestoreAsRootAgainstSymlinkRaces(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "repo", "restoring as root against another user needs root")
	}
	t.Parallel()
	ctx := t.Context()
	u, err := pgbin.EnsureUser(ctx, pgtest.TestUser, "/nonexistent", "lifeboat tests (PostgreSQL refuses root)")
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp("", "lifeboat-race-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(base, "victim")
	if err := os.MkdirAll(filepath.Join(victim, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "f0"), []byte("victim\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := treeState(t, victim)
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(target, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "attacker")
	copyExecutable(t, self, bin)

	r := repotest.New(t)
	snap := repotest.SaveTree(t, r, &repo.Snapshot{Asset: "race", Kind: "files", Type: "full"}, raceTree(u.UID))
	idx := loadIndex(t, r)

	cmd := exec.Command(bin)
	cmd.Env = []string{envAttackDir + "=" + target, envAttackVictim + "=" + victim}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	t.Cleanup(stop)

	const rounds = 300
	var ok, refused, failed int
	for round := range rounds {
		root, err := repo.OpenRestoreDir(target, repo.DirOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if round%4 >= 2 {
			repo.ForceWalk(root)
		}
		_, err = r.RestoreTree(ctx, idx, snap.Tree, repo.RestoreOptions{Root: root, UID: u.UID, GID: u.GID, Delta: round%2 == 1, Workers: 2})
		if cerr := root.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		switch {
		case err == nil:
			ok++
		case errors.Is(err, repo.ErrUnsafeTarget):
			refused++
		default:
			failed++ // a name moved away under the restore: it fails, it never escapes
			if failed <= 3 {
				t.Logf("round %d: %v", round, err)
			}
		}
		checkUnchanged(t, fmt.Sprintf("round %d (last error: %v)", round, err), want, treeState(t, victim))
	}
	stop()
	swaps, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("attacker: %v: %s", err, out.String())
	}
	if swaps == 0 {
		t.Fatal("the attacker never swapped a name: the test proved nothing")
	}
	t.Logf("%d rounds against %d swaps: %d restored, %d refused as unsafe, %d failed otherwise", rounds, swaps, ok, refused, failed)

	// With the attacker gone, a delta restore repairs whatever it left.
	if _, err := r.RestoreTree(ctx, idx, snap.Tree, repo.RestoreOptions{Dir: target, UID: u.UID, GID: u.GID, Delta: true}); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{"f0": "restored zero\n", "a/f1": "restored one\n", "a/b/f2": "restored two\n"} {
		data, err := os.ReadFile(filepath.Join(target, p))
		if err != nil || string(data) != content {
			t.Errorf("%s after the last restore: %q, %v", p, data, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(target, "f0")); err != nil || fi.Mode() != 0o777|fs.ModeSetuid || fi.Sys().(*syscall.Stat_t).Uid != uint32(u.UID) {
		t.Errorf("f0 after the last restore: %v, %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(target, "a/b/c")); err != nil || l != "/etc/passwd" {
		t.Errorf("stored symlink after the last restore: %q, %v", l, err)
	}
	checkUnchanged(t, "after the last restore", want, treeState(t, victim))
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreWritesThroughNoStoredLink restores forged trees whose nodes
// lie below a symlink the snapshot itself stores (hooks -> elsewhere,
// hooks/pwned): refused as corrupt before anything is written, with
// openat2 and with the component walk.
func TestRestoreWritesThroughNoStoredLink(t *testing.T) {
	t.Parallel()
	for _, walk := range []bool{false, true} {
		for _, link := range []string{"outside", "../outside", "."} {
			t.Run(fmt.Sprintf("walk=%v,link=%s", walk, link), func(t *testing.T) {
				t.Parallel()
				r := repotest.New(t)
				base := t.TempDir()
				outside := filepath.Join(base, "outside")
				if err := os.Mkdir(outside, 0o700); err != nil {
					t.Fatal(err)
				}
				to := link
				if link == "outside" {
					to = outside
				}
				snap := repotest.SaveTree(t, r, &repo.Snapshot{Asset: "forged", Kind: "gitrepo", Type: "full"}, []repotest.Entry{
					{Node: repo.Node{Path: "web.git", Type: repo.NodeDir, Mode: 0o755}},
					{Node: repo.Node{Path: "web.git/hooks", Type: repo.NodeSymlink, Mode: 0o777, Link: to}},
					{Node: repo.Node{Path: "web.git/hooks/pwned", Type: repo.NodeFile, Mode: 0o755}, Data: []byte("#!/bin/sh\n")},
				})
				target := filepath.Join(base, "target")
				root, err := repo.OpenRestoreDir(target, repo.DirOptions{Create: true})
				if err != nil {
					t.Fatal(err)
				}
				defer root.Close()
				if walk {
					repo.ForceWalk(root)
				}
				_, err = r.RestoreTree(t.Context(), loadIndex(t, r), snap.Tree, repo.RestoreOptions{Root: root, UID: -1, GID: -1})
				if !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), "below the symlink web.git/hooks") {
					t.Fatalf("restore of a node below a stored link: %v", err)
				}
				for _, dir := range []string{outside, target} {
					if names, _ := os.ReadDir(dir); len(names) > 0 {
						t.Errorf("%s: %d entries written by a refused restore", dir, len(names))
					}
				}
			})
		}
	}
}

// TestRestoreMountedLink restores a link a kind maps (a tablespace): the
// link points to the mapped directory and what lies below it is written
// there, while a link the kind does not map stays data.
func TestRestoreMountedLink(t *testing.T) {
	t.Parallel()
	r := repotest.New(t)
	base := t.TempDir()
	snap := repotest.SaveTree(t, r, &repo.Snapshot{Asset: "pg", Kind: "postgres", Type: "full"}, []repotest.Entry{
		{Node: repo.Node{Path: "pg_tblspc", Type: repo.NodeDir, Mode: 0o700}},
		{Node: repo.Node{Path: "pg_tblspc/16400", Type: repo.NodeSymlink, Mode: 0o777, Link: "/srv/old-location"}},
		{Node: repo.Node{Path: "pg_tblspc/16400/PG_15/5", Type: repo.NodeDir, Mode: 0o700}},
		{Node: repo.Node{Path: "pg_tblspc/16400/PG_15/5/16401", Type: repo.NodeFile, Mode: 0o600}, Data: []byte("relation")},
	})
	ts, err := repo.OpenRestoreDir(filepath.Join(base, "ts"), repo.DirOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	data := filepath.Join(base, "data")
	if _, err := r.RestoreTree(t.Context(), loadIndex(t, r), snap.Tree, repo.RestoreOptions{Dir: data, UID: -1, GID: -1,
		Mounts: map[string]*repo.RestoreDir{"pg_tblspc/16400": ts}}); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(data, "pg_tblspc/16400")); err != nil || l != ts.Path() {
		t.Errorf("tablespace link: %q, %v; want %s", l, err, ts.Path())
	}
	if got, err := os.ReadFile(filepath.Join(base, "ts/PG_15/5/16401")); err != nil || string(got) != "relation" {
		t.Errorf("tablespace file: %q, %v", got, err)
	}
}

// TestDeltaReplacesWhatItMustNotWriteThrough prepares a delta target
// whose names are links to a directory elsewhere, a file with a second
// name elsewhere, and a file where a directory belongs: the restore
// replaces each and leaves elsewhere as it was.
func TestDeltaReplacesWhatItMustNotWriteThrough(t *testing.T) {
	t.Parallel()
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("walk=%v", walk), func(t *testing.T) {
			t.Parallel()
			r := repotest.New(t)
			base := t.TempDir()
			elsewhere := filepath.Join(base, "elsewhere")
			if err := os.MkdirAll(filepath.Join(elsewhere, "b"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"f0", "f1", "hard"} {
				if err := os.WriteFile(filepath.Join(elsewhere, f), []byte("elsewhere\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := treeState(t, elsewhere)
			target := filepath.Join(base, "target")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, to := range map[string]string{"a": elsewhere, "f0": filepath.Join(elsewhere, "f0")} {
				if err := os.Symlink(to, filepath.Join(target, name)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Link(filepath.Join(elsewhere, "hard"), filepath.Join(target, "hard")); err != nil {
				t.Fatal(err)
			}
			mt := time.Unix(1700000000, 0).UnixNano()
			uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
			snap := repotest.SaveTree(t, r, &repo.Snapshot{Asset: "delta", Kind: "files", Type: "full"}, []repotest.Entry{
				{Node: repo.Node{Path: "a", Type: repo.NodeDir, Mode: 0o777, UID: uid, GID: gid, MTime: mt}},
				{Node: repo.Node{Path: "a/f1", Type: repo.NodeFile, Mode: 0o666, UID: uid, GID: gid, MTime: mt}, Data: []byte("restored\n")},
				{Node: repo.Node{Path: "f0", Type: repo.NodeFile, Mode: 0o666, UID: uid, GID: gid, MTime: mt}, Data: []byte("restored\n")},
				{Node: repo.Node{Path: "hard", Type: repo.NodeFile, Mode: 0o666, UID: uid, GID: gid, MTime: mt}, Data: []byte("restored\n")},
			})
			root, err := repo.OpenRestoreDir(target, repo.DirOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			if walk {
				repo.ForceWalk(root)
			}
			if _, err := r.RestoreTree(t.Context(), loadIndex(t, r), snap.Tree, repo.RestoreOptions{Root: root, UID: -1, GID: -1, Delta: true}); err != nil {
				t.Fatal(err)
			}
			checkUnchanged(t, "elsewhere", want, treeState(t, elsewhere))
			for _, p := range []string{"a/f1", "f0", "hard"} {
				fi, err := os.Lstat(filepath.Join(target, p))
				if err != nil || !fi.Mode().IsRegular() || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
					t.Fatalf("%s: %v, %v", p, fi, err)
				}
				if got, _ := os.ReadFile(filepath.Join(target, p)); string(got) != "restored\n" {
					t.Errorf("%s: %q", p, got)
				}
			}
		})
	}
}

// TestOpenRestoreDirAsRoot: a symlink another user owns in the target's
// path is refused; a target another user owns is root's and 0700 while
// held, and given back on Close.
func TestOpenRestoreDirAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "repo", "taking a directory over needs root")
	}
	t.Parallel()
	u, err := pgbin.EnsureUser(context.Background(), pgtest.TestUser, "/nonexistent", "lifeboat tests (PostgreSQL refuses root)")
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(real, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	theirs, ours := filepath.Join(base, "theirs"), filepath.Join(base, "ours")
	for _, l := range []string{theirs, ours} {
		if err := os.Symlink(real, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Lchown(theirs, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.OpenRestoreDir(filepath.Join(theirs, "sub"), repo.DirOptions{Create: true}); !errors.Is(err, repo.ErrUnsafeTarget) {
		t.Fatalf("a path through another user's symlink: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(real, "sub")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused open created a directory: %v", err)
	}
	d, err := repo.OpenRestoreDir(ours, repo.DirOptions{TakeOver: true})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(real)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o700 {
		t.Errorf("held: owner %d, mode %v; want root's, 0700", st.Uid, fi.Mode())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(real)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uint32(u.UID) || fi.Mode().Perm() != 0o755 {
		t.Errorf("given back: owner %d, mode %v; want %d, 0755", st.Uid, fi.Mode(), u.UID)
	}
	// A directory every user writes to, as /tmp: never taken over.
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.OpenRestoreDir(shared, repo.DirOptions{TakeOver: true}); !errors.Is(err, repo.ErrUnsafeTarget) {
		t.Errorf("taking over a sticky directory every user writes to: %v", err)
	}
}
