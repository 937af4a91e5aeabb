package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// withRetention puts a retention rule on the test asset.
func withRetention(rule string) func(*env) {
	return func(e *env) { e.assetExtra = "    retention: " + rule + "\n" }
}

func (e *env) mustVerify() {
	e.t.Helper()
	if r := e.run("verify", "--read-data"); r.code != 0 {
		e.t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func (e *env) packs() []string {
	e.t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(e.repo, "data"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			out = append(out, filepath.Base(p))
		}
		return nil
	})
	return out
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func (e *env) walFiles() int {
	e.t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(e.repo, "wal", "db"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, "history") {
			n++
		}
		return nil
	})
	return n
}

// incompressible is SQL creating a table of about mb megabytes that
// compresses only twofold, so that it fills packs of its own.
func incompressible(table string, mb int) string {
	return fmt.Sprintf("create table %s as select md5(random()::text) || md5(random()::text) as v from generate_series(1, %d)", table, mb*10000)
}

func TestExpireAppliesRetention(t *testing.T) {
	t.Parallel()
	e := startEnv(t, true, withRetention("{ pitr_window: 1d }"))
	// The dry runs below must leave the archive as it was. An autovacuum of the updated
	// pgbench_accounts right after a backup's checkpoint writes a full page image of every page,
	// several segments of WAL that the archiver would push meanwhile.
	e.sql("alter system set autovacuum = off")
	e.sql("select pg_reload_conf()")
	e.pg.PGBench(t, "-i", "-s", "3", "postgres")
	// The first snapshot alone holds this table: its packs become unused.
	e.sql(incompressible("scratch", 60))
	e.mustRun("backup", "db")
	e.sql("drop table scratch")
	for i := 0; i < 2; i++ {
		e.pg.PGBench(t, "-t", "300", "-c", "2", "postgres")
		e.sql("update pgbench_accounts set filler = md5(aid::text) where aid % 3 = " + fmt.Sprint(i))
		e.switchAndWait()
		e.mustRun("backup", "db")
	}
	snaps := e.snapshots()
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots, want 3", len(snaps))
	}
	// Today every snapshot is inside the window.
	out := e.mustRun("expire", "--dry-run")
	if strings.Count(out, "within pitr window") != 3 || strings.Contains(out, " delete ") {
		t.Fatalf("dry run today:\n%s", out)
	}
	// Three days on, only the newest is needed: it is the window's base.
	walBefore := e.walFiles()
	out = e.mustRun("expire", "--dry-run", "--clock-offset", "72h")
	if strings.Count(out, "no rule keeps it") != 2 || !strings.Contains(out, "pitr window base") {
		t.Fatalf("dry run three days on:\n%s", out)
	}
	if len(e.snapshots()) != 3 || e.walFiles() != walBefore {
		t.Fatal("dry run changed the repository")
	}
	packsBefore := e.packs()
	packsSize := dirSize(t, filepath.Join(e.repo, "data"))
	out = e.mustRun("expire", "--clock-offset", "72h")
	t.Logf("expire:\n%s", out)
	left := e.snapshots()
	if len(left) != 1 || left[0].ID != snaps[2].ID {
		t.Fatalf("after expire: %v, want only %s", left, snaps[2].ID)
	}
	if e.walFiles() >= walBefore {
		t.Fatalf("WAL files %d before, %d after: nothing expired", walBefore, e.walFiles())
	}
	if !strings.Contains(out, "condemned") || len(e.packs()) != len(packsBefore) {
		t.Fatalf("the first run must only condemn packs:\n%s", out)
	}
	e.mustVerify()
	// A grace period later, packs mixing live and dead data are repacked
	// (and condemned); another grace period on, they go.
	out = e.mustRun("expire", "--clock-offset", "100h")
	if !strings.Contains(out, "repacked") || strings.Contains(out, " 0 repacked") {
		t.Fatalf("second run repacked nothing:\n%s", out)
	}
	e.mustVerify()
	out = e.mustRun("expire", "--clock-offset", "130h")
	if sizeAfter, sizeBefore := dirSize(t, filepath.Join(e.repo, "data")), packsSize; sizeAfter > sizeBefore*2/3 {
		t.Fatalf("packs hold %d bytes after expire, %d before: the dropped table's data was not freed:\n%s", sizeAfter, sizeBefore, out)
	}
	e.mustVerify()
	want := e.pg.TableChecksums(t, "postgres")
	e.switchAndWait()
	c := e.restoreAndStart()
	if got := c.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restore after expire differs:\n got %v\nwant %v", got, want)
	}
}

func TestPinnedSnapshotSurvivesExpire(t *testing.T) {
	t.Parallel()
	e := startEnv(t, true, withRetention("{ daily: 1 }"))
	e.sql("create table t as select generate_series(1, 1000) id")
	e.mustRun("backup", "db")
	e.sql("insert into t select generate_series(1001, 2000)")
	e.switchAndWait()
	e.mustRun("backup", "db")
	first := e.snapshots()[0].ID
	if r := e.run("pin", first[:8]); r.code != 2 || !strings.Contains(r.stderr, "--reason") {
		t.Fatalf("pin without a reason: exit %d %s", r.code, r.stderr)
	}
	e.mustRun("pin", first[:8], "--reason", "litigation hold 2026-114")
	out := e.mustRun("expire", "--clock-offset", "48h")
	if !strings.Contains(out, "pinned: litigation hold 2026-114") || len(e.snapshots()) != 2 {
		t.Fatalf("pinned snapshot not kept:\n%s", out)
	}
	e.mustRun("unpin", first[:8])
	e.mustRun("expire", "--clock-offset", "48h")
	if s := e.snapshots(); len(s) != 1 || s[0].ID == first {
		t.Fatalf("after unpin: %v", s)
	}
	e.mustVerify()
	c := e.restoreAndStart("--snapshot", e.snapshots()[0].ID[:8])
	if n := c.Psql(t, "postgres", "select count(*) from t"); n != "2000" {
		t.Fatalf("restored %s rows, want 2000", n)
	}
}

func TestExpireKilledMidwayThenRerun(t *testing.T) {
	t.Parallel()
	e := startEnv(t, true, withRetention("{ daily: 1 }"))
	e.pg.PGBench(t, "-i", "-s", "3", "postgres")
	e.mustRun("backup", "db")
	for i := 0; i < 3; i++ {
		e.pg.PGBench(t, "-t", "200", "-c", "2", "postgres")
		e.sql("update pgbench_accounts set filler = md5(aid::text || " + fmt.Sprint(i) + ") where aid % 2 = 0")
		e.switchAndWait()
		e.mustRun("backup", "--full", "db")
	}
	want := e.pg.TableChecksums(t, "postgres")
	e.switchAndWait()
	offset := 48
	for i, delay := range []time.Duration{5, 20, 40, 80, 150} {
		offset += 30 // each run a grace period after the last: deletions happen
		cmd := exec.Command(e.bin, "-c", e.policy, "expire", "--clock-offset", fmt.Sprintf("%dh", offset))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("run %d killed after %dms: %q", i, delay, out.String())
		e.mustVerify()
	}
	offset += 30
	e.mustRun("expire", "--clock-offset", fmt.Sprintf("%dh", offset))
	offset += 30
	e.mustRun("expire", "--clock-offset", fmt.Sprintf("%dh", offset))
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots after expire, want 1", n)
	}
	e.mustVerify()
	c := e.restoreAndStart()
	if got := c.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restore after interrupted expires differs:\n got %v\nwant %v", got, want)
	}
}

// TestPausedBackupVersusExpire: a backup stops (SIGSTOP) mid-way; another
// host, whose clock is hours ahead, finds its lock stale and expires twice,
// deleting the packs the paused backup wrote. Resumed, the backup must
// fail rather than record a snapshot referencing deleted data.
func TestPausedBackupVersusExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.mustRun("backup", "db")
	e.sql(incompressible("big", 150))
	before := len(e.packs())
	cmd := exec.Command(e.bin, "-c", e.policy, "backup", "db", "--full", "--workers", "1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(e.packs()) < before+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGSTOP)
	if len(e.packs()) < before+1 {
		cmd.Process.Kill()
		t.Fatalf("the backup wrote no pack within a minute: %s", out.String())
	}
	first := e.mustRun("expire", "--grace", "1h", "--clock-offset", "3h")
	second := e.mustRun("expire", "--grace", "1h", "--clock-offset", "5h")
	t.Logf("expire while paused:\n%s\n%s", first, second)
	if !strings.Contains(second, "deleted") || strings.Contains(second, " 0 deleted") {
		t.Fatalf("the second expire deleted no pack of the paused backup:\n%s", second)
	}
	cmd.Process.Signal(syscall.SIGCONT)
	err := cmd.Wait()
	t.Logf("resumed backup: %v\n%s", err, out.String())
	if err == nil {
		t.Fatal("the resumed backup succeeded although its data was swept")
	}
	if !strings.Contains(out.String(), "stale") && !strings.Contains(out.String(), "expire") {
		t.Fatalf("the failure does not say why: %s", out.String())
	}
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots, want only the first", n)
	}
	e.mustRun("expire", "--grace", "1h", "--clock-offset", "7h")
	e.mustVerify()
	e.mustRun("backup", "db")
	want := e.pg.TableChecksums(t, "postgres")
	e.switchAndWait()
	c := e.restoreAndStart()
	if got := c.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restore after the refused backup differs:\n got %v\nwant %v", got, want)
	}
}

// TestExpireKeepsForgedSnapshotOutAndForgetRemovesIt: a manifest written
// with the key but dated into the future is kept out of retention and
// reported; once judged not genuine, forget removes it.
func TestExpireKeepsForgedSnapshotOutAndForgetRemovesIt(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a.conf"), "a", 0o600, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	pol, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	pol = bytes.Replace(pol, []byte("    kind: files\n"), []byte("    kind: files\n    retention: { daily: 1 }\n"), 1)
	if err := os.WriteFile(e.policy, pol, 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("backup", "app-config")
	forged := forgeSnapshot(t, e, func(s *repo.Snapshot) { s.EndTime = time.Now().Add(365 * 24 * time.Hour) })

	out := e.mustRun("expire", "--dry-run")
	if !strings.Contains(out, forged.ID.Short()) || !strings.Contains(out, "untrusted: it claims to end at") ||
		!strings.Contains(out, "lifeboat forget SNAPSHOT --repository primary") || strings.Contains(out, " delete ") {
		t.Fatalf("expire with a snapshot from the future:\n%s", out)
	}
	if r := e.run("forget", forged.ID.Short()); r.code != 2 || !strings.Contains(r.stderr, "forget needs --repository") {
		t.Fatalf("forget without --repository: exit %d: %s", r.code, r.stderr)
	}
	e.mustRun("pin", forged.ID.Short(), "--reason", "evidence")
	if r := e.run("forget", forged.ID.Short(), "--repository", "primary"); r.code == 0 || !strings.Contains(r.stderr, "unpin it first") {
		t.Fatalf("forget of a pinned snapshot: exit %d: %s", r.code, r.stderr)
	}
	e.mustRun("unpin", forged.ID.Short())
	out = e.mustRun("forget", forged.ID.Short(), "--repository", "primary")
	if !strings.Contains(out, "forgotten in primary") {
		t.Fatalf("forget: %s", out)
	}
	var left []snapshotJSON
	if err := json.Unmarshal([]byte(e.mustRun("snapshots", "app-config", "--json")), &left); err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].ID == forged.ID.String() {
		t.Fatalf("snapshots after forget: %+v", left)
	}
}

// forgeSnapshot writes, with the repository key, a copy of the newest
// manifest changed by edit: what a compromised backup host can do.
func forgeSnapshot(t *testing.T, e *env, edit func(*repo.Snapshot)) *repo.Snapshot {
	t.Helper()
	be, err := fs.New(e.repo)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := repo.KeyFile(filepath.Join(e.dir, "repo.key"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snaps, err := r.Snapshots(t.Context(), "")
	if err != nil || len(snaps) == 0 {
		t.Fatalf("snapshots: %v (%d)", err, len(snaps))
	}
	f := *snaps[len(snaps)-1]
	edit(&f)
	if err := r.SaveSnapshot(t.Context(), &f); err != nil {
		t.Fatal(err)
	}
	return &f
}
