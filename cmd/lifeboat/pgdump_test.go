package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// newDumpEnv starts a cluster with a database "app" and writes a policy
// with one pg_dump asset, "dump", whose entry gets assetExtra (indented
// keys), and a file repository for it.
func newDumpEnv(t *testing.T, dsn func(*pgtest.Cluster) string, assetExtra string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	e.pg = pgtest.Start(t, pgtest.Options{})
	e.sql("create database app")
	if dsn == nil {
		dsn = func(c *pgtest.Cluster) string { return c.DSN("app") }
	}
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: dump
    kind: pg_dump
    dsn: "%s"
    repositories: [primary]
    retention: { keep_within: 90d, time_zone: Asia/Singapore }
%s`, filepath.Join(dir, "state"), e.repo, filepath.Join(dir, "repo.key"), dsn(e.pg), assetExtra)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init")
	return e
}

type dumpSnapshot struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	BytesNew int64  `json:"bytes_new"`
	Total    int64  `json:"bytes_total"`
}

func (e *env) dumpSnapshots() []dumpSnapshot {
	e.t.Helper()
	var s []dumpSnapshot
	if err := json.Unmarshal([]byte(e.mustRun("snapshots", "dump", "--json")), &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// fillApp gives database app what a dump has to carry: tables with rows
// and types, an identity, a sequence, a view, a large object, a job queue
// and a session table whose rows the asset leaves out, and a role owning
// a table.
func fillApp(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Psql(t, "postgres", "create role app_owner")
	c.Psql(t, "app", `
create table ledger (id bigint generated always as identity primary key, iban text not null, amount numeric(12,2),
  booked_at timestamptz, memo text, tags text[], extra jsonb);
insert into ledger (iban, amount, booked_at, memo, tags, extra)
  select 'NO' || lpad(g::text, 11, '0'), (g % 20000 - 10000) / 100.0, timestamptz '2024-01-01' + g * interval '1 minute',
         repeat(md5(g::text), 1 + g % 3), array['a', g::text], jsonb_build_object('n', g)
  from generate_series(1, 20000) g;
create sequence invoice_no start 1000;
select nextval('invoice_no') from generate_series(1, 5);
create view big_spenders as select iban from ledger where amount > 90;
create table owned (x int);
alter table owned owner to app_owner;
insert into owned values (1), (2);
create schema jobs;
create table jobs.queue (id serial primary key, payload text);
insert into jobs.queue (payload) select 'job ' || g from generate_series(1, 500) g;
create table staff_sessions (token text primary key, staff int);
insert into staff_sessions select md5(g::text), g from generate_series(1, 300) g;
select lo_from_bytea(0, 'a large object'::bytea);`)
}

func without(m map[string]string, keys ...string) map[string]string {
	out := maps.Clone(m)
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// TestPGDumpRoundTrip backs up a database, restores it with lifeboat
// restore into another cluster (globals first), and exports the archive
// that a stock pg_restore restores; both come back with the same table
// checksums, and the excluded tables with their definitions but no rows.
func TestPGDumpRoundTrip(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, "    exclude_table_data: [jobs.queue, staff_sessions]\n")
	fillApp(t, e.pg)
	want := e.pg.TableChecksums(t, "app")
	out := e.mustRun("backup", "dump")
	if !strings.Contains(out, "snapshot ") || !strings.Contains(out, "(pg_dump)") {
		t.Fatalf("backup output: %s", out)
	}
	snaps := e.dumpSnapshots()
	if len(snaps) != 1 || snaps[0].Kind != "pg_dump" {
		t.Fatalf("snapshots: %+v", snaps)
	}
	sgt, _ := time.LoadLocation("Asia/Singapore")
	wantName := "dump_" + time.Now().In(sgt).Format("2006-01-02")
	if snaps[0].Name != wantName {
		t.Fatalf("dump name %q, want %q (the date in the retention's time zone)", snaps[0].Name, wantName)
	}
	if table := e.mustRun("snapshots"); !strings.Contains(table, wantName) {
		t.Fatalf("snapshots table lacks the dump name:\n%s", table)
	}
	excluded := []string{"jobs.queue", "public.staff_sessions"}
	checkExcluded := func(c *pgtest.Cluster, db string, got map[string]string) {
		t.Helper()
		for _, tbl := range excluded {
			if got[tbl] == "" {
				t.Errorf("%s: table %s is missing (its definition must be kept)", db, tbl)
			}
			if n := c.Psql(t, db, "select count(*) from "+tbl); n != "0" {
				t.Errorf("%s: excluded table %s has %s rows", db, tbl, n)
			}
		}
		if got, want := without(got, excluded...), without(want, excluded...); !maps.Equal(got, want) {
			t.Errorf("%s: checksums differ:\n got %v\nwant %v", db, got, want)
		}
	}

	// lifeboat restore into a second cluster, which lacks the role.
	dst := pgtest.Start(t, pgtest.Options{})
	dst.Psql(t, "postgres", "create database app")
	out = e.mustRun("restore", "dump", "--to-dsn", dst.DSN("app"), "--globals", "--workers", "2")
	if !strings.Contains(out, wantName) || !strings.Contains(out, "with globals") || !strings.Contains(out, "data streamed") {
		t.Fatalf("restore output: %s", out)
	}
	got := dst.TableChecksums(t, "app")
	checkExcluded(dst, "app", got)
	if owner := dst.Psql(t, "app", "select tableowner from pg_tables where tablename = 'owned'"); owner != "app_owner" {
		t.Errorf("owner of owned after restore with globals: %q", owner)
	}
	if lo := dst.Psql(t, "app", "select convert_from(lo_get(oid), 'UTF8') from pg_largeobject_metadata"); lo != "a large object" {
		t.Errorf("large object: %q", lo)
	}
	if v := dst.Psql(t, "app", "select nextval('invoice_no')"); v != "1005" {
		t.Errorf("sequence continues at %s, want 1005", v)
	}

	// export, then a stock pg_restore.
	file := filepath.Join(t.TempDir(), "app.dump")
	out = e.mustRun("export", snaps[0].ID[:8], "--out", file)
	if !strings.Contains(out, file) {
		t.Fatalf("export output: %s", out)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("export left %s.tmp behind: %v", file, err)
	}
	e.sql("create database exported")
	pgRestore := exec.Command(filepath.Join(e.pg.BinDir, "pg_restore"), "--dbname", e.pg.DSN("exported"), file)
	if b, err := pgRestore.CombinedOutput(); err != nil {
		t.Fatalf("stock pg_restore of the export: %v\n%s", err, b)
	}
	checkExcluded(e.pg, "exported", e.pg.TableChecksums(t, "exported"))

	// An existing file is never overwritten.
	before, _ := os.ReadFile(file)
	r := e.run("export", snaps[0].ID, "--out", file)
	after, _ := os.ReadFile(file)
	if r.code != exitUsage || !strings.Contains(r.stderr, "exists") || !bytes.Equal(before, after) {
		t.Fatalf("export over an existing file: exit %d, %s", r.code, r.stderr)
	}
	globals := filepath.Join(t.TempDir(), "globals.sql")
	e.mustRun("export", snaps[0].ID, "--globals", "--out", globals)
	if b, _ := os.ReadFile(globals); !bytes.Contains(b, []byte("CREATE ROLE app_owner")) || bytes.Contains(b, []byte("PASSWORD")) {
		t.Fatalf("exported globals:\n%s", b)
	}
}

// TestPGDumpSeveralDatabases: a restore must name the database when a
// snapshot holds several. Database app has two tables of one size, which
// pg_restore -j loads side by side from a file; crm has one, which is
// streamed.
func TestPGDumpSeveralDatabases(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, "    databases: [app, crm]\n    globals: false\n")
	e.sql("create database crm")
	e.pg.Psql(t, "app", `create table a as select g, md5(g::text) from generate_series(1, 5000) g;
create table b as select g, md5(g::text) from generate_series(1, 5000) g; create index on b (md5)`)
	e.pg.Psql(t, "crm", "create table c as select g, md5(g::text) from generate_series(1, 10) g")
	e.mustRun("backup", "dump")
	e.sql("create database target")
	r := e.run("restore", "dump", "--to-dsn", e.pg.DSN("target"))
	if r.code != exitUsage || !strings.Contains(r.stderr, "app, crm") || !strings.Contains(r.stderr, "--database") {
		t.Fatalf("restore without --database: exit %d: %s", r.code, r.stderr)
	}
	out := e.mustRun("restore", "dump", "--to-dsn", e.pg.DSN("target"), "--database", "crm")
	if got, want := e.pg.TableChecksums(t, "target"), e.pg.TableChecksums(t, "crm"); !maps.Equal(got, want) || !strings.Contains(out, "streamed") {
		t.Fatalf("crm restored as %v, want %v: %s", got, want, out)
	}
	e.sql("create database target2")
	out = e.mustRun("restore", "dump", "--to-dsn", e.pg.DSN("target2"), "--database", "app", "--workers", "2")
	if got, want := e.pg.TableChecksums(t, "target2"), e.pg.TableChecksums(t, "app"); !maps.Equal(got, want) || !strings.Contains(out, "pg_restore -j 2") {
		t.Fatalf("app restored as %v, want %v: %s", got, want, out)
	}
	if r := e.run("restore", "dump", "--to-dsn", e.pg.DSN("target"), "--globals", "--database", "app"); r.code != exitUsage {
		t.Fatalf("--globals without globals: exit %d: %s", r.code, r.stderr)
	}
}

// TestPGDumpSecondDumpStoresLittle: a night's changes to a few percent of
// the rows store a small part of the dump again. The changes are what a
// ledger sees: 1% of the rows inserted, and 1% updated among the recent
// ones (see docs/pgdump.md for rows updated all over the table).
func TestPGDumpSecondDumpStoresLittle(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, "")
	e.pg.Psql(t, "app", `create table tx (id bigserial primary key, iban text, amount numeric(12,2), memo text);
insert into tx (iban, amount, memo) select 'NO' || g, g % 9999, repeat(md5(g::text), 2) from generate_series(1, 150000) g;`)
	e.mustRun("backup", "dump")
	e.pg.Psql(t, "app", `insert into tx (iban, amount, memo) select 'NO' || g, g % 9999, repeat(md5(g::text), 2) from generate_series(150001, 151500) g;
update tx set amount = amount + 1 where id between 140001 and 141500;`)
	e.mustRun("backup", "dump")
	s := e.dumpSnapshots()
	if len(s) != 2 {
		t.Fatalf("%d snapshots", len(s))
	}
	t.Logf("first dump %d bytes (%d new), second %d bytes (%d new)", s[0].Total, s[0].BytesNew, s[1].Total, s[1].BytesNew)
	if s[1].BytesNew*10 > s[0].BytesNew {
		t.Fatalf("the second dump stored %d new bytes, more than a tenth of the first's %d", s[1].BytesNew, s[0].BytesNew)
	}
}

// childNamed finds a child process of pid running the program name with
// arg among its arguments (pg_dump --version runs first).
func childNamed(pid int, name, arg string) int {
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		child, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		close := strings.LastIndexByte(s, ')')
		open := strings.IndexByte(s, '(')
		if open < 0 || close < 0 {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) < 2 || s[open+1:close] != name || fields[1] != strconv.Itoa(pid) {
			continue
		}
		if cmdline, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline")); bytes.Contains(cmdline, []byte(arg)) {
			return child
		}
	}
	return 0
}

// bytesWritten is what a process wrote so far (/proc/PID/io wchar).
func bytesWritten(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// TestPGDumpSIGTERMMidDump stops lifeboat with SIGTERM while pg_dump is
// half-way through a table: lifeboat exits non-zero, pg_dump is gone, no
// snapshot is recorded, the repository verifies clean, and the next
// backup succeeds.
func TestPGDumpSIGTERMMidDump(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, "")
	e.pg.Psql(t, "app", `create table big as select g as id, repeat(md5(g::text), 2) as pad from generate_series(1, 400000) g`)
	e.mustRun("backup", "dump")
	before := len(e.dumpSnapshots())

	cmd := exec.Command(e.bin, "-c", e.policy, "backup", "dump")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Catch pg_dump with its header written and the table's rows under
	// way, hold it there, stop lifeboat, then let pg_dump run on (into
	// the SIGTERM lifeboat sends it).
	var dump int
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if dump == 0 {
			dump = childNamed(cmd.Process.Pid, "pg_dump", "--format=custom")
		}
		if dump != 0 && bytesWritten(dump) > 2<<20 {
			break
		}

		time.Sleep(2 * time.Millisecond)
	}
	if dump == 0 || bytesWritten(dump) <= 2<<20 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("did not catch pg_dump mid-dump (pid %d): %s %s", dump, stdout.String(), stderr.String())
	}
	syscall.Kill(dump, syscall.SIGSTOP)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(dump, syscall.SIGCONT)
	err := cmd.Wait()
	if err == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("backup stopped by SIGTERM exited 0: %s", stdout.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "interrupted") {
		t.Fatalf("stderr: %q", msg)
	}
	if syscall.Kill(dump, 0) == nil {
		if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", dump)); len(stat) > 0 {
			t.Fatalf("pg_dump %d still runs: %s", dump, stat)
		}
	}
	if n := len(e.dumpSnapshots()); n != before {
		t.Fatalf("%d snapshots after the interrupted backup, want %d", n, before)
	}
	if out := e.mustRun("verify"); !strings.Contains(out, " 0 problems") {
		t.Fatalf("verify after the interrupted backup: %s", out)
	}
	e.mustRun("backup", "dump")
	if n := len(e.dumpSnapshots()); n != before+1 {
		t.Fatalf("%d snapshots after the next backup, want %d", n, before+1)
	}
}

// TestPGDumpBadInput: a wrong connection string, a missing database, a
// restore target that does not exist are one clear line each, and no
// password is shown.
func TestPGDumpBadInput(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, func(c *pgtest.Cluster) string {
		return strings.Replace(c.DSN("nosuchdb"), "sslmode=disable", "password=hunter2 sslmode=disable", 1)
	}, "")
	oneLine := func(r result, code int, want string) {
		t.Helper()
		msg := strings.TrimSpace(r.stderr)
		t.Logf("exit %d: %s", r.code, msg)
		if r.code != code || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, want) || strings.Contains(msg, "hunter2") {
			t.Fatalf("exit %d (want %d), stderr %q (want one line with %q, no password)", r.code, code, msg, want)
		}
	}
	oneLine(e.run("backup", "dump"), exitFailure, `database "nosuchdb" does not exist`)
	if s := e.dumpSnapshots(); len(s) != 0 {
		t.Fatalf("snapshots after a failed backup: %+v", s)
	}
	oneLine(e.run("restore", "dump", "--to-dsn", e.pg.DSN("app")), exitFailure, "no snapshot")
	oneLine(e.run("export", "abcd1234", "--out", filepath.Join(t.TempDir(), "x")), exitUsage, "no repository")
}

// TestPGDumpRestoreErrors: a restore into a database that already holds
// the tables fails with pg_restore's error on one line.
func TestPGDumpRestoreErrors(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, "    globals: false\n")
	e.pg.Psql(t, "app", "create table t (x int); insert into t values (1)")
	e.mustRun("backup", "dump")
	r := e.run("restore", "dump", "--to-dsn", e.pg.DSN("app"))
	msg := strings.TrimSpace(r.stderr)
	t.Logf("exit %d: %s", r.code, msg)
	if r.code != exitFailure || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "already exists") {
		t.Fatalf("restore over existing tables: exit %d: %s", r.code, msg)
	}
	if r := e.run("restore", "dump", "--to", t.TempDir()); r.code != exitUsage || !strings.Contains(r.stderr, "--to-dsn") {
		t.Fatalf("restore --to of a dump: exit %d: %s", r.code, r.stderr)
	}
	r = e.run("restore", "dump", "--to-dsn", e.pg.DSN("missing"))
	if msg := strings.TrimSpace(r.stderr); r.code != exitFailure || !strings.Contains(msg, `"missing" does not exist`) {
		t.Fatalf("restore into a missing database: exit %d: %s", r.code, msg)
	}
}
