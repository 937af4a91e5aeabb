package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// TestKilledBackupLeavesCleanRepository kills backups at random moments;
// the repository must verify clean and the next backup must succeed and
// restore.
func TestKilledBackupLeavesCleanRepository(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.pg.PGBench(t, "-i", "-s", "10", "postgres")
	e.mustRun("backup", "db")
	e.pg.PGBench(t, "-t", "500", "-c", "2", "postgres")
	for i := 0; i < 3; i++ {
		cmd := exec.Command(e.bin, "-c", e.policy, "backup", "db", "--full")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+rand.IntN(1200)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("killed backup %d after it printed: %q", i, errb.String())
		if r := e.run("verify", "--read-data"); r.code != 0 {
			t.Fatalf("verify after a killed backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	e.pg.PGBench(t, "-t", "200", "-c", "2", "postgres")
	e.mustRun("backup", "db")
	want := e.pg.TableChecksums(t, "postgres")
	e.switchAndWait()
	c := e.restoreAndStart()
	if got := c.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restore after killed backups differs:\n got %v\nwant %v", got, want)
	}
}

func TestConcurrentBackupsOfOneAsset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.pg.PGBench(t, "-i", "-s", "10", "postgres")
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run("backup", "db", "--full")
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		switch {
		case r.code == 0:
			ok++
		case !strings.Contains(r.stderr, "another backup of db is running"):
			t.Fatalf("the refused backup does not say why: exit %d: %s", r.code, r.stderr)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of 2 simultaneous backups succeeded, want exactly 1: %+v", ok, results)
	}
	// With --lock-wait the second one waits its turn instead.
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run("backup", "db", "--lock-wait", "5m")
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.code != 0 {
			t.Fatalf("backup with --lock-wait failed: %s", r.stderr)
		}
	}
	e.mustRun("verify", "--read-data")
	if n := len(e.snapshots()); n != 3 {
		t.Fatalf("%d snapshots, want 3", n)
	}
}

// flipByte damages one byte in the middle of a file.
func flipByte(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x20
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func firstFile(t testing.TB, dir string) string {
	t.Helper()
	var found string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && found == "" {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no file under %s", dir)
	}
	return found
}

func TestDamageIsFoundAndRestoreRefuses(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"data", "index", "snapshots", "wal"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, false)
			e.pg.PGBench(t, "-i", "-s", "1", "postgres")
			e.mustRun("backup", "db")
			e.switchAndWait()
			victim := firstFile(t, filepath.Join(e.repo, kind))
			flipByte(t, victim)
			r := e.run("verify", "--read-data")
			if r.code != 1 || !strings.Contains(r.stdout, filepath.Base(victim)[:8]) {
				t.Fatalf("verify --read-data: exit %d, output does not name %s:\n%s%s", r.code, victim, r.stdout, r.stderr)
			}
			if kind == "wal" {
				name := filepath.Base(victim)
				if r := e.run("wal-fetch", "db", name, filepath.Join(e.dir, "x")); r.code != exitWALFetchAbort {
					t.Fatalf("wal-fetch of a damaged segment: exit %d: %s", r.code, r.stderr)
				}
				return
			}
			dir := filepath.Join(t.TempDir(), "restored")
			if r := e.run("restore", "db", "--to", dir); r.code == 0 {
				t.Fatalf("restore from a damaged %s succeeded:\n%s", kind, r.stdout)
			}
		})
	}
}

func TestDeltaRestore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.pg.PGBench(t, "-i", "-s", "2", "postgres")
	e.mustRun("backup", "db")
	want := e.pg.TableChecksums(t, "postgres")
	lsn := e.sql("select pg_current_wal_lsn()")
	e.pg.PGBench(t, "-t", "300", "-c", "2", "postgres")
	e.switchAndWait()

	dir := filepath.Join(t.TempDir(), "restored")
	e.mustRun("restore", "db", "--to", dir, "--archive-off")
	// Untouched since, the files are compared with the snapshot by the
	// record the restore left, not read: only the settings file the
	// restore itself rewrites is.
	again := e.mustRun("restore", "db", "--to", dir, "--archive-off", "--delta")
	if m := regexp.MustCompile(`\(([0-9.]+ [KMG]?i?B) of the files there read to compare\)`).FindStringSubmatch(again); m == nil || !strings.HasSuffix(m[1], " B") {
		t.Fatalf("a delta restore over an untouched restore read more than its settings file:\n%s", again)
	}
	c := pgtest.Open(t, dir, nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	// The copy moves on, then is rewound in place to the earlier point.
	c.PGBench(t, "-t", "300", "-c", "2", "postgres")
	c.Psql(t, "postgres", "create table stray as select 1")
	c.Stop(t)
	if r := e.run("restore", "db", "--to", dir); r.code == 0 || !strings.Contains(r.stderr, "--delta") {
		t.Fatalf("restore into a non-empty directory without --delta: exit %d: %s", r.code, r.stderr)
	}
	out := e.mustRun("restore", "db", "--to", dir, "--delta", "--lsn", lsn, "--archive-off")
	t.Log(out)
	c2 := pgtest.Open(t, dir, nil)
	c2.WaitRecoveryDone(t, 120*time.Second)
	if got := c2.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delta restore differs:\n got %v\nwant %v", got, want)
	}
}

func TestTablespaceRestoredElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	tsDir := filepath.Join(e.dir, "ts1")
	if err := os.Mkdir(tsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	e.sql(fmt.Sprintf("create tablespace fast location '%s'", tsDir))
	e.sql("create table hot (id int, v text) tablespace fast")
	e.sql("insert into hot select g, md5(g::text) from generate_series(1, 50000) g")
	e.mustRun("backup", "db")
	e.sql("insert into hot select g, 'after' from generate_series(50001, 60000) g")
	want := e.pg.TableChecksums(t, "postgres")
	e.switchAndWait()
	// The original location is in use: restore must refuse to write there.
	dir := filepath.Join(t.TempDir(), "restored")
	if r := e.run("restore", "db", "--to", dir); r.code == 0 || !strings.Contains(r.stderr, "--tablespace") {
		t.Fatalf("restore over a used tablespace location: exit %d: %s", r.code, r.stderr)
	}
	newTS := filepath.Join(t.TempDir(), "ts-moved")
	c := e.restoreAndStart("--tablespace", "fast="+newTS)
	if got := c.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restore with a moved tablespace differs:\n got %v\nwant %v", got, want)
	}
	loc := c.Psql(t, "postgres", "select pg_tablespace_location(oid) from pg_tablespace where spcname = 'fast'")
	if loc != newTS {
		t.Fatalf("tablespace location %q, want %q", loc, newTS)
	}
}

// TestChecksumFailureReportedNotFatal damages a page on disk: the backup
// succeeds, copies the page as it is, and says so.
func TestChecksumFailureReportedNotFatal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.sql("create table victim as select g, md5(g::text) from generate_series(1, 10000) g")
	e.sql("checkpoint")
	rel := e.sql("select pg_relation_filepath('victim')")
	e.pg.Stop(t)
	path := filepath.Join(e.pg.DataDir, rel)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[8192+4000] ^= 0xff // inside the second page's tuples, not its header
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	e.pg.Start(t)
	r := e.run("backup", "db")
	if r.code != 0 {
		t.Fatalf("backup with a damaged page failed: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, "1 pages failed their checksum") || !strings.Contains(r.stderr, rel+" block 1") {
		t.Fatalf("backup does not report the damaged page %s block 1:\n%s", rel, r.stderr)
	}
}

// TestOtherClusterRefused points the asset at a second cluster: its backup
// and its WAL are refused, and the first cluster's archive is untouched.
func TestOtherClusterRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table x as select 1")
	e.mustRun("backup", "db")
	// The first cluster stops so its archiver, which reads the policy this
	// test rewrites, adds nothing of its own to the archive after this point.
	e.pg.Stop(t)
	before := treeDigest(t, filepath.Join(e.repo, "wal"))

	other := pgtest.Start(t, pgtest.Options{Conf: map[string]string{"archive_mode": "on", "archive_command": "/bin/true"}})
	policyText, _ := os.ReadFile(e.policy)
	swapped := strings.Replace(string(policyText), e.pg.DataDir, other.DataDir, 1)
	swapped = strings.Replace(swapped, e.pg.DSN("postgres"), other.DSN("postgres"), 1)
	os.WriteFile(e.policy, []byte(swapped), 0o600)
	if r := e.run("backup", "db"); r.code != 1 || !strings.Contains(r.stderr, "belongs to the cluster with system identifier") {
		t.Fatalf("backup of another cluster: exit %d: %s", r.code, r.stderr)
	}
	seg := other.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn())")
	if r := e.run("wal-push", "db", filepath.Join(other.DataDir, "pg_wal", seg)); r.code != 1 || !strings.Contains(r.stderr, "system identifier") {
		t.Fatalf("wal-push from another cluster: exit %d: %s", r.code, r.stderr)
	}
	if after := treeDigest(t, filepath.Join(e.repo, "wal")); after != before {
		t.Fatal("the refused cluster changed the archive")
	}
}

// TestUnreadableFileFailsLoudly: a file the backup cannot read fails the
// backup at once, naming it; no snapshot is recorded and nothing hangs.
func TestUnreadableFileFailsLoudly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.pg.PGBench(t, "-i", "-s", "1", "postgres")
	bad := filepath.Join(e.pg.DataDir, "base", "zz_unreadable")
	if err := os.WriteFile(bad, []byte("secret"), 0o000); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- e.run("backup", "db") }()
	select {
	case r := <-done:
		if r.code != 1 || !strings.Contains(r.stderr, "zz_unreadable") || !strings.Contains(r.stderr, "permission denied") {
			t.Fatalf("backup with an unreadable file: exit %d: %s", r.code, r.stderr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("backup with an unreadable file hangs")
	}
	if n := len(e.snapshots()); n != 0 {
		t.Fatalf("%d snapshots recorded by a failed backup", n)
	}
	os.Remove(bad)
	e.mustRun("backup", "db")
	e.mustRun("verify", "--read-data")
}

// TestBackupUnderWriteLoad takes a backup while pgbench writes: pages torn
// while being read and files growing during the backup must come out right
// after WAL replay.
func TestBackupUnderWriteLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.pg.PGBench(t, "-i", "-s", "5", "postgres")
	e.mustRun("backup", "db")
	load := exec.Command(filepath.Join(e.pg.BinDir, "pgbench"), "-h", e.pg.SocketDir, "-p", fmt.Sprint(e.pg.Port),
		"-U", "postgres", "-c", "2", "-T", "8", "postgres")
	var out bytes.Buffer
	load.Stdout, load.Stderr = &out, &out
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	e.mustRun("backup", "db", "--full")
	if err := load.Wait(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out.String())
	}
	want := e.pg.TableChecksums(t, "postgres")
	e.switchAndWait()
	c := e.restoreAndStart()
	if got := c.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restore of a backup taken under load differs:\n got %v\nwant %v", got, want)
	}
	if r := c.Psql(t, "postgres", "select count(*) from pgbench_history"); r == "0" {
		t.Fatal("pgbench wrote nothing during the backup")
	}
}
