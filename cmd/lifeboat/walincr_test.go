package main

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// The log lines a verbose incremental ends its planning with.
const (
	walUsedLine     = `msg="incremental reads the blocks the WAL references"`
	walFallbackLine = `msg="incremental compares every changed file: the WAL cannot vouch for the changes"`
)

var filesWAL = regexp.MustCompile(`files_wal=(\d+)`)

// backupVerbose takes a backup with info logging and returns its log.
func (e *env) backupVerbose(args ...string) string {
	e.t.Helper()
	r := e.run(append([]string{"-v", "backup", "db"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("backup: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r.stderr
}

// dumpall returns pg_dumpall's output for a cluster.
func dumpall(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_dumpall"), "-h", c.SocketDir, "-p", fmt.Sprint(c.Port), "-U", "postgres")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("pg_dumpall: %v: %s", err, stderr)
	}
	// \restrict and \unrestrict carry a random key per run.
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "\\restrict ") && !strings.HasPrefix(l, "\\unrestrict ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestWALIncrementalChainEqualsDumpall takes ten incrementals, each read
// from the WAL (and proved against a full read: the test binary sets
// LIFEBOAT_CHECK_BLOCKS), under random DDL and writes, and restores two
// of them to the same pg_dumpall as the source had at their stop.
func TestWALIncrementalChainEqualsDumpall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.pg.PGBench(t, "-i", "-s", "1", "postgres")
	e.mustRun("backup", "db")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 16))
	var tables []string
	pick := func() string { return tables[rng.IntN(len(tables))] }
	step := func(i, k int) string {
		if len(tables) == 0 {
			name := fmt.Sprintf("r%d_%d", i, k)
			tables = append(tables, name)
			return fmt.Sprintf("create table %s (id int primary key, v text); insert into %[1]s select g, md5(g::text) from generate_series(1, %d) g", name, 500+rng.IntN(5000))
		}
		switch rng.IntN(8) {
		case 0:
			name := fmt.Sprintf("r%d_%d", i, k)
			tables = append(tables, name)
			return fmt.Sprintf("create table %s (id int primary key, v text); insert into %[1]s select g, md5(g::text) from generate_series(1, %d) g", name, 500+rng.IntN(5000))
		case 1:
			return fmt.Sprintf("update %s set v = md5(v) where id %% %d = 0", pick(), 2+rng.IntN(20))
		case 2: // vacuum truncates the emptied tail
			tb := pick()
			return fmt.Sprintf("delete from %s where id > %d; vacuum %[1]s", tb, rng.IntN(400))
		case 3:
			j := rng.IntN(len(tables))
			tb := tables[j]
			tables = append(tables[:j], tables[j+1:]...)
			return "drop table " + tb
		case 4:
			return fmt.Sprintf("alter table %s add column c%d_%d int default %d", pick(), i, k, rng.IntN(100))
		case 5:
			tb := pick()
			return fmt.Sprintf("alter table %s set unlogged; alter table %[1]s set logged", tb)
		case 6:
			tb := pick()
			return fmt.Sprintf("truncate %s; insert into %[1]s (id, v) select g, 'x' || g from generate_series(1, %d) g", tb, rng.IntN(3000))
		default:
			return "vacuum full " + pick()
		}
	}
	type point struct{ id, stop, dump string }
	var points []point
	patched := 0
	for i := 0; i < 10; i++ {
		e.pg.PGBench(t, "-t", "100", "-c", "2", "postgres")
		for k := 0; k < 3; k++ {
			q := step(i, k)
			t.Logf("round %d: %s", i, q)
			e.sql(q)
		}
		log := e.backupVerbose()
		if !strings.Contains(log, walUsedLine) {
			t.Fatalf("incremental %d did not read its blocks from the WAL:\n%s", i, log)
		}
		// pgbench changed its tables since the parent: those files are
		// read at the WAL's blocks.
		if m := filesWAL.FindStringSubmatch(log); m == nil || m[1] == "0" {
			t.Fatalf("incremental %d read no file by WAL reference:\n%s", i, log)
		}
		s := e.snapshots()
		last := s[len(s)-1]
		if last.Type != "incr" {
			t.Fatalf("backup %d is %s, want an incremental", i, last.Type)
		}
		points = append(points, point{id: last.ID, stop: last.StopLSN, dump: dumpall(t, e.pg)})
		patched += last.ListsPatched
	}
	// pgbench_accounts changed in a few of its pages each round: its list
	// is stored as a patch, which the restores below read back.
	if patched == 0 {
		t.Fatal("no incremental stored a block list as a patch")
	}
	e.switchAndWait()
	for _, i := range []int{4, 9} {
		p := points[i]
		t.Run(fmt.Sprint("incremental ", i), func(t *testing.T) {
			t.Parallel()
			c := e.forTest(t).restoreAndStart("--snapshot", p.id, "--lsn", p.stop)
			if got := dumpall(t, c); got != p.dump {
				t.Fatalf("restore of incremental %d differs from the source's pg_dumpall at its stop:\n%s", i, firstDiff(got, p.dump))
			}
		})
	}
}

// firstDiff shows the first line where two dumps differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got %q\nwant %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(g), len(w))
}

// TestWALIncrementalFallsBack provokes each change the WAL cannot vouch
// for and checks that the incremental notices it and compares instead.
func TestWALIncrementalFallsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table trunc_me (id int primary key, v text); insert into trunc_me select g, md5(g::text) from generate_series(1, 5000) g")
	e.sql("create table flip (id int); insert into flip select generate_series(1, 1000)")
	e.mustRun("backup", "db")

	e.sql("create database copied strategy file_copy")
	if log := e.backupVerbose(); !strings.Contains(log, walUsedLine) || !regexp.MustCompile(`database 1663/\d+ created by file copy`).MatchString(log) {
		t.Fatalf("CREATE DATABASE ... STRATEGY FILE_COPY not noticed:\n%s", log)
	}

	e.sql("alter table flip set unlogged")
	node := e.sql("select pg_relation_filenode('flip')")
	if log := e.backupVerbose(); !strings.Contains(log, fmt.Sprintf("/%s created", node)) {
		t.Fatalf("ALTER TABLE SET UNLOGGED (new relfilenode %s) not noticed:\n%s", node, log)
	}
	e.sql("alter table flip set logged")
	node = e.sql("select pg_relation_filenode('flip')")
	if log := e.backupVerbose(); !strings.Contains(log, fmt.Sprintf("/%s created", node)) {
		t.Fatalf("ALTER TABLE SET LOGGED (new relfilenode %s) not noticed:\n%s", node, log)
	}

	path := e.sql("select pg_relation_filepath('trunc_me')")
	before := e.sql("select pg_relation_size('trunc_me')")
	e.sql("delete from trunc_me where id > 100; vacuum trunc_me")
	if after := e.sql("select pg_relation_size('trunc_me')"); after == before {
		t.Fatalf("vacuum did not truncate trunc_me (%s bytes)", after)
	}
	if log := e.backupVerbose(); !strings.Contains(log, path+": the relation was created or truncated") {
		t.Fatalf("truncation of %s not noticed:\n%s", path, log)
	}

	e.pg.Restart(t)
	if log := e.backupVerbose(); !strings.Contains(log, walFallbackLine) || !strings.Contains(log, "shut down") {
		t.Fatalf("a restart between backups did not make the incremental compare:\n%s", log)
	}

	var segs []string
	for i := 0; i < 3; i++ {
		e.sql(fmt.Sprintf("insert into flip select generate_series(1, %d)", 100*(i+1)))
		out := e.sql("select pg_walfile_name(pg_current_wal_lsn()); select pg_switch_wal()")
		seg, _, _ := strings.Cut(out, "\n")
		e.pg.WaitArchived(t, seg, 60*time.Second)
		segs = append(segs, seg)
	}
	removed := false
	filepath.WalkDir(e.repo, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == segs[1] {
			removed = os.Remove(p) == nil
		}
		return nil
	})
	if !removed {
		t.Fatalf("segment %s not found in %s", segs[1], e.repo)
	}
	if log := e.backupVerbose(); !strings.Contains(log, walFallbackLine) || !strings.Contains(log, segs[1]) {
		t.Fatalf("a missing segment (%s) did not make the incremental compare:\n%s", segs[1], log)
	}
}

// TestCheckBlocksNamesMissedBlock changes a page behind PostgreSQL's back
// (no WAL): --check-blocks must fail naming it, and store nothing.
func TestCheckBlocksNamesMissedBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table victim (id int, v text); insert into victim select g, md5(g::text) from generate_series(1, 2000) g; checkpoint")
	e.mustRun("backup", "db")
	path := e.sql("select pg_relation_filepath('victim')")
	f, err := os.OpenFile(filepath.Join(e.pg.DataDir, path), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("not written by PostgreSQL"), 2*8192+4000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n := len(e.snapshots())
	r := e.run("backup", "db", "--check-blocks")
	if r.code == 0 || !strings.Contains(r.stderr, path+" block 2") {
		t.Fatalf("backup --check-blocks: exit %d, want a failure naming %s block 2\nstderr: %s", r.code, path, r.stderr)
	}
	if got := len(e.snapshots()); got != n {
		t.Fatalf("%d snapshots after the failed check, want %d", got, n)
	}
}
