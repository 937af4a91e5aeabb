package files

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// The tests run as an unprivileged user (RunMain re-executes them when
// run as root), so that a file without read permission is unreadable.
func TestMain(m *testing.M) {
	os.Exit(pgtest.RunMain(m, pgtest.MainOptions{}))
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// sampleTree builds a tree with what a round trip must keep: nested and
// empty directories, empty and large files, modes, symlinks (relative,
// absolute, dangling), names with spaces and non-ASCII letters, names
// that sort around "/" ("a" < "a b" < "a-" < "a.b" < "a/b"), and past
// modification times.
func sampleTree(t *testing.T, root string) {
	t.Helper()
	write(t, filepath.Join(root, "app.conf"), "listen = 8080\nworkers = 4\n", 0o644)
	write(t, filepath.Join(root, "secret.key"), "s3cr3t\n", 0o600)
	write(t, filepath.Join(root, "run.sh"), "#!/bin/sh\nexec app\n", 0o755)
	write(t, filepath.Join(root, "empty"), "", 0o640)
	write(t, filepath.Join(root, "conf.d", "10-base.conf"), "base\n", 0o644)
	write(t, filepath.Join(root, "conf.d", "deep", "er", "x.conf"), "deep\n", 0o444)
	write(t, filepath.Join(root, "with space ü 日本.txt"), "unicode\n", 0o644)
	for _, n := range []string{"a", "a b", "a-", "a.b", "a0"} {
		write(t, filepath.Join(root, "order", n, "f"), n+"\n", 0o644)
		write(t, filepath.Join(root, "order", n+"x"), n+"x\n", 0o644)
	}
	big := make([]byte, 5<<20+123)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(root, "data.bin"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "empty-dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "sticky"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "sticky"), 0o755|os.ModeSticky|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"current": "conf.d", "abs-link": "/etc/hostname", "dangling": "does/not/exist"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	// Past times on everything, deepest first so a directory's own time
	// is set after its entries.
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		return nil
	})
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	base := time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.UTC)
	for i, p := range paths {
		mt := base.Add(time.Duration(i) * time.Hour)
		if err := lutimes(p, mt); err != nil {
			t.Fatal(err)
		}
	}
}

// fileState is what a round trip must keep of one path.
type fileState struct {
	mode  fs.FileMode
	mtime int64
	uid   uint32
	gid   uint32
	link  string
	sum   [32]byte
}

// snapshotOf reads a tree from disk, by path relative to root.
func snapshotOf(t *testing.T, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := fileState{mode: fi.Mode(), mtime: fi.ModTime().UnixNano(), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			s.link, _ = os.Readlink(p)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s.sum = sha256.Sum256(data)
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, want, got map[string]fileState) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s: missing after restore", p)
		case g != w:
			t.Errorf("%s: restored as %+v, want %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: restored, but not in the source", p)
		}
	}
}

func restore(t *testing.T, r *repo.Repository, snap *repo.Snapshot, opts RestoreOptions) *RestoreResult {
	t.Helper()
	opts.UID, opts.GID = -1, -1
	res, err := Restore(t.Context(), r, snap, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	rootA, rootB := filepath.Join(src, "etc", "drop"), filepath.Join(src, "srv", "drop.d")
	sampleTree(t, rootA)
	write(t, filepath.Join(rootB, "other.conf"), "x\n", 0o600)
	// A root that is a single file, and one that sorts between rootB
	// and a path below it.
	write(t, filepath.Join(src, "srv", "drop", "single.conf"), "single\n", 0o640)
	r := repotest.New(t)
	snap, info, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg",
		Paths: []string{rootA, rootB, filepath.Join(src, "srv", "drop", "single.conf")}})
	if err != nil {
		t.Fatal(err)
	}
	if info.Special+info.Vanished+info.ChangedCount+info.Excluded != 0 || info.Symlinks != 3 {
		t.Errorf("info %+v", info)
	}
	out := t.TempDir()
	res := restore(t, r, snap, RestoreOptions{Dir: out})
	sameTree(t, snapshotOf(t, rootA), snapshotOf(t, filepath.Join(out, rootA)))
	sameTree(t, snapshotOf(t, rootB), snapshotOf(t, filepath.Join(out, rootB)))
	sameTree(t, snapshotOf(t, filepath.Join(src, "srv", "drop", "single.conf")),
		snapshotOf(t, filepath.Join(out, src, "srv", "drop", "single.conf")))
	if res.Stats.Files == 0 || res.Target != out {
		t.Errorf("result %+v", res)
	}
	// The directories above the roots come back as directories with
	// their modes.
	for _, d := range []string{filepath.Join(out, src), filepath.Join(out, src, "etc"), filepath.Join(out, src, "srv", "drop")} {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v %v", d, fi, err)
		}
	}
	// Nothing outside the roots: srv/drop holds only the single file.
	if entries, _ := os.ReadDir(filepath.Join(out, src, "srv", "drop")); len(entries) != 1 {
		t.Errorf("srv/drop restored with %d entries", len(entries))
	}

	// Restore into a non-empty directory needs Delta.
	if _, err := Restore(t.Context(), r, snap, RestoreOptions{Dir: out, UID: -1, GID: -1}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty directory: %v", err)
	}
	// With Delta, damage is repaired and the rest left alone.
	if err := os.WriteFile(filepath.Join(out, rootA, "app.conf"), []byte("damaged"), 0o666); err != nil {
		t.Fatal(err)
	}
	restore(t, r, snap, RestoreOptions{Dir: out, Delta: true})
	sameTree(t, snapshotOf(t, rootA), snapshotOf(t, filepath.Join(out, rootA)))
}

func TestRestoreOnePath(t *testing.T) {
	src := t.TempDir()
	root := filepath.Join(src, "etc", "drop")
	sampleTree(t, root)
	r := repotest.New(t)
	snap, _, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	// One file: only it and the directories above it.
	out := filepath.Join(t.TempDir(), "new")
	res := restore(t, r, snap, RestoreOptions{Dir: out, Path: filepath.Join(root, "app.conf")})
	if res.Target != filepath.Join(out, root, "app.conf") || res.Stats.Files != 1 {
		t.Errorf("result %+v", res)
	}
	got := snapshotOf(t, filepath.Join(out, root))
	if len(got) != 2 || got["app.conf"] != snapshotOf(t, root)["app.conf"] {
		t.Errorf("restored %v", got)
	}
	// One directory, with everything below it; "conf.d" must not bring
	// "conf.d.old" or similar siblings.
	write(t, filepath.Join(root, "conf.dx"), "sibling\n", 0o644)
	snap, _, err = Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	out = t.TempDir()
	restore(t, r, snap, RestoreOptions{Dir: out, Path: filepath.Join(root, "conf.d") + "/"})
	sameTree(t, snapshotOf(t, filepath.Join(root, "conf.d")), snapshotOf(t, filepath.Join(out, root, "conf.d")))
	if _, err := os.Lstat(filepath.Join(out, root, "conf.dx")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sibling conf.dx restored: %v", err)
	}
	// A symlink on its own.
	out = t.TempDir()
	restore(t, r, snap, RestoreOptions{Dir: out, Path: filepath.Join(root, "current")})
	if l, err := os.Readlink(filepath.Join(out, root, "current")); err != nil || l != "conf.d" {
		t.Errorf("symlink restored as %q, %v", l, err)
	}
	// A path the snapshot does not hold.
	_, err = Restore(t.Context(), r, snap, RestoreOptions{Dir: t.TempDir(), Path: filepath.Join(root, "nope"), UID: -1, GID: -1})
	if !errors.Is(err, ErrNotInSnapshot) || !strings.Contains(err.Error(), root) {
		t.Errorf("restore of a missing path: %v", err)
	}
}

func TestExclude(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cfg")
	write(t, filepath.Join(root, "keep.conf"), "k\n", 0o644)
	write(t, filepath.Join(root, "x.tmp"), "t\n", 0o644)
	write(t, filepath.Join(root, "sub", "y.tmp"), "t\n", 0o644)
	write(t, filepath.Join(root, "cache", "a", "b"), "c\n", 0o644)
	write(t, filepath.Join(root, "logs", "app.log"), "l\n", 0o644)
	write(t, filepath.Join(root, "sub", "logs", "app.log"), "kept: the pattern is relative to the root\n", 0o644)
	write(t, filepath.Join(root, "private", "key"), "p\n", 0o600)
	write(t, filepath.Join(root, "private", "pub"), "p\n", 0o644)
	r := repotest.New(t)
	snap, info, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root},
		Exclude: []string{"*.tmp", "cache", "logs/*.log", filepath.Join(root, "private", "key")}})
	if err != nil {
		t.Fatal(err)
	}
	if info.Excluded != 5 {
		t.Errorf("excluded %d, want 5", info.Excluded)
	}
	out := t.TempDir()
	restore(t, r, snap, RestoreOptions{Dir: out})
	var got []string
	for p := range snapshotOf(t, filepath.Join(out, root)) {
		got = append(got, p)
	}
	sort.Strings(got)
	want := ".|keep.conf|logs|private|private/pub|sub|sub/logs|sub/logs/app.log"
	if strings.Join(got, "|") != want {
		t.Errorf("restored %s\nwant     %s", strings.Join(got, "|"), want)
	}
}

func TestBadRoots(t *testing.T) {
	dir := t.TempDir()
	r := repotest.New(t)
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{"etc/drop"}, "not absolute"},
		{[]string{dir, dir + "/"}, "listed twice"},
		{[]string{dir + "/a", dir, dir + ".b"}, "lies inside " + dir},
		{[]string{"/", dir}, "lies inside /"},
	} {
		_, _, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: tc.paths})
		if !errors.Is(err, ErrPaths) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.paths, err, tc.want)
		}
	}
	_, _, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{filepath.Join(dir, "missing")}})
	if err == nil || err.Error() != "path "+filepath.Join(dir, "missing")+" does not exist" {
		t.Errorf("missing root: %v", err)
	}
	if n := countSnapshots(t, r); n != 0 {
		t.Errorf("%d snapshots recorded", n)
	}
}

func countSnapshots(t *testing.T, r *repo.Repository) int {
	t.Helper()
	snaps, err := r.Snapshots(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return len(snaps)
}

func TestUnreadableFailsTheBackup(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("running as root: permissions do not stop root")
	}
	root := filepath.Join(t.TempDir(), "cfg")
	write(t, filepath.Join(root, "a.conf"), "a\n", 0o644)
	write(t, filepath.Join(root, "z", "locked.key"), "k\n", 0o000)
	r := repotest.New(t)
	_, _, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}})
	want := "cannot read " + filepath.Join(root, "z", "locked.key") + ": permission denied"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("backup: %v, want %q", err, want)
	}
	// An unreadable directory too.
	os.Chmod(filepath.Join(root, "z", "locked.key"), 0o644)
	os.Chmod(filepath.Join(root, "z"), 0o000)
	defer os.Chmod(filepath.Join(root, "z"), 0o755)
	_, _, err = Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}})
	if want := "cannot read " + filepath.Join(root, "z") + ": permission denied"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("backup: %v, want %q", err, want)
	}
	if n := countSnapshots(t, r); n != 0 {
		t.Errorf("%d snapshots recorded", n)
	}
	// Excluded, it no longer stops the backup.
	if _, _, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}, Exclude: []string{"z"}}); err != nil {
		t.Fatal(err)
	}
}

func TestSpecialFilesSkipped(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cfg")
	write(t, filepath.Join(root, "a.conf"), "a\n", 0o644)
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Socket paths are limited to about 100 bytes; listen from inside
	// the directory.
	wd, _ := os.Getwd()
	if err := os.Chdir(root); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", "sock")
	os.Chdir(wd)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := repotest.New(t)
	snap, info, err := Backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	if info.Special != 2 || snap.Stats.Files != 1 {
		t.Errorf("special %d, files %d", info.Special, snap.Stats.Files)
	}
}

func TestChangingAndVanishingFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cfg")
	write(t, filepath.Join(root, "gone"), "soon gone\n", 0o644)
	write(t, filepath.Join(root, "once"), "first\n", 0o644)
	write(t, filepath.Join(root, "log"), "line\n", 0o644)
	write(t, filepath.Join(root, "stable"), "stable\n", 0o644)
	r := repotest.New(t)
	onceDone := false
	snap, info, err := backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}}, func(abs string) {
		switch filepath.Base(abs) {
		case "gone":
			// The open file stays readable, but unlinking it changes its
			// ctime: the file is read again, and is then gone.
			os.Remove(abs)
		case "once":
			if !onceDone {
				onceDone = true
				os.WriteFile(abs, []byte("second, longer\n"), 0o644)
			}
		case "log":
			f, err := os.OpenFile(abs, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			f.WriteString("more\n")
			f.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.ChangedCount != 1 || len(info.Changed) != 1 || info.Changed[0] != filepath.Join(root, "log") {
		t.Errorf("changed: %d %v", info.ChangedCount, info.Changed)
	}
	out := t.TempDir()
	restore(t, r, snap, RestoreOptions{Dir: out})
	for name, want := range map[string]string{"once": "second, longer\n", "stable": "stable\n",
		// The log grew on every attempt; what was read last is the size
		// it had when opened the third time.
		"log": "line\nmore\nmore\n"} {
		data, err := os.ReadFile(filepath.Join(out, root, name))
		if err != nil || string(data) != want {
			t.Errorf("%s: %q %v, want %q", name, data, err, want)
		}
	}
	if info.Vanished != 1 {
		t.Errorf("vanished %d, want 1", info.Vanished)
	}
	if _, err := os.Lstat(filepath.Join(out, root, "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file deleted during the backup restored: %v", err)
	}

	// A file deleted between listing and opening is left out.
	write(t, filepath.Join(root, "a-first"), "a\n", 0o644)
	snap, info, err = backup(t.Context(), r, BackupOptions{Asset: "cfg", Paths: []string{root}}, func(abs string) {
		if filepath.Base(abs) == "a-first" {
			os.Remove(filepath.Join(root, "stable"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.Vanished != 1 {
		t.Errorf("vanished %d, want 1", info.Vanished)
	}
	out = t.TempDir()
	restore(t, r, snap, RestoreOptions{Dir: out})
	if _, err := os.Lstat(filepath.Join(out, root, "stable")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("vanished file restored: %v", err)
	}
}

func TestDiff(t *testing.T) {
	root := filepath.Join(t.TempDir(), "etc", "drop")
	sampleTree(t, root)
	r := repotest.New(t)
	ctx := t.Context()
	backupNow := func() *repo.Snapshot {
		snap, _, err := Backup(ctx, r, BackupOptions{Asset: "cfg", Paths: []string{root}})
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	first := backupNow()
	write(t, filepath.Join(root, "app.conf"), "listen = 9090\nworkers = 4\n", 0o644)
	write(t, filepath.Join(root, "conf.d", "20-new.conf"), "new = yes\n", 0o644)
	os.Remove(filepath.Join(root, "conf.d", "10-base.conf"))
	os.Chmod(filepath.Join(root, "run.sh"), 0o700)
	os.Remove(filepath.Join(root, "current"))
	os.Symlink("conf.d/20-new.conf", filepath.Join(root, "current"))
	os.Chtimes(filepath.Join(root, "secret.key"), time.Now(), time.Now()) // a new time only: no change
	big, _ := os.ReadFile(filepath.Join(root, "data.bin"))
	big[100] ^= 1
	os.WriteFile(filepath.Join(root, "data.bin"), big, 0o600)
	second := backupNow()

	res, err := Diff(ctx, r, first, second, DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range res.Changes {
		lines = append(lines, fmt.Sprintf("%s %s %v %s", c.Status, strings.TrimPrefix(c.Path, root), c.What, c.NoDiff))
	}
	want := []string{
		"changed /app.conf [content] ",
		"removed /conf.d/10-base.conf [] ",
		"added /conf.d/20-new.conf [] ",
		"changed /current [link] ",
		"changed /data.bin [content] larger than 262144 bytes",
		"changed /run.sh [mode] ",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if res.Added != 1 || res.Removed != 1 || res.Changed != 4 {
		t.Errorf("counts %d %d %d", res.Added, res.Removed, res.Changed)
	}
	wantDiff := fmt.Sprintf("--- a%[1]s/app.conf\n+++ b%[1]s/app.conf\n@@ -1,2 +1,2 @@\n-listen = 8080\n+listen = 9090\n workers = 4\n", root)
	if res.Changes[0].Diff != wantDiff {
		t.Errorf("diff:\n%s\nwant:\n%s", res.Changes[0].Diff, wantDiff)
	}
	if d := res.Changes[2].Diff; !strings.Contains(d, "--- /dev/null\n") || !strings.Contains(d, "+new = yes\n") {
		t.Errorf("diff of an added file:\n%s", d)
	}
	if c := res.Changes[5]; c.Old.Mode != "0755" || c.New.Mode != "0700" {
		t.Errorf("mode change %s -> %s", c.Old.Mode, c.New.Mode)
	}
	if c := res.Changes[3]; c.Old.Link != "conf.d" || c.New.Link != "conf.d/20-new.conf" {
		t.Errorf("link change %q -> %q", c.Old.Link, c.New.Link)
	}
	// Binary content is named, not shown.
	os.WriteFile(filepath.Join(root, "app.conf"), []byte("bin\x00ary"), 0o644)
	third := backupNow()
	res, err = Diff(ctx, r, second, third, DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || res.Changes[0].NoDiff != "binary" || res.Changes[0].Diff != "" {
		t.Errorf("binary change: %+v", res.Changes)
	}
	// A file that became a directory.
	os.Remove(filepath.Join(root, "empty"))
	write(t, filepath.Join(root, "empty", "x"), "x\n", 0o644)
	fourth := backupNow()
	res, err = Diff(ctx, r, third, fourth, DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 2 || fmt.Sprint(res.Changes[0].What) != "[type]" || res.Changes[0].New.Type != "dir" ||
		res.Changes[1].Status != Added || res.Changes[1].Path != root+"/empty/x" {
		t.Errorf("type change: %+v %+v", res.Changes[0], res.Changes[1])
	}
	// A snapshot compared with itself: nothing.
	if res, err := Diff(ctx, r, third, third, DiffOptions{}); err != nil || len(res.Changes) != 0 {
		t.Errorf("self diff: %v %v", res, err)
	}
}

func lutimes(path string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
