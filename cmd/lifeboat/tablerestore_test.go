package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// loadDump loads a custom-format dump into a fresh cluster with the
// stock pg_restore, as an operator would, after setup (pg_dump --table
// leaves the table's schema out), and returns the cluster.
func loadDump(t *testing.T, file, setup string) *pgtest.Cluster {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{})
	if setup != "" {
		c.Psql(t, "postgres", setup)
	}
	cmd := exec.Command(filepath.Join(pgtest.PGBin(t), "pg_restore"), "--no-owner", "--exit-on-error", "--dbname", c.DSN("postgres"), file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore %s: %v\n%s", file, err, out)
	}
	return c
}

// dumpTOC lists a dump's table of contents with pg_restore -l.
func dumpTOC(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(pgtest.PGBin(t), "pg_restore"), "-l", file).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore -l %s: %v\n%s", file, err, out)
	}
	return string(out)
}

func TestTableRestore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.sql(`create schema app; create schema audit;
		create table app.orders (id int primary key, note text);
		create table app.other (id int);
		create table audit.log (id int primary key, what text);
		create table keep (id int)`)
	e.sql("insert into app.orders select g, 'before backup' from generate_series(1, 1000) g")
	e.sql("insert into audit.log select g, 'log' from generate_series(1, 300) g")
	e.mustRun("backup", "db")
	e.sql("insert into app.orders select g, 'after backup' from generate_series(1001, 1500) g")
	e.sql("insert into audit.log select g, 'log' from generate_series(301, 400) g")
	time.Sleep(1100 * time.Millisecond)
	ts := e.sql("select to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || 'Z'")
	sum := e.sql("select sum(id) || '/' || md5(string_agg(note, ',' order by id)) from app.orders")
	time.Sleep(1100 * time.Millisecond)
	// The incident: the table is dropped, the log goes on.
	e.sql("drop table app.orders")
	e.sql("insert into audit.log select g, 'late' from generate_series(401, 450) g")
	e.switchAndWait()

	t.Run("dropped table comes back as at T", func(t *testing.T) {
		t.Parallel()
		// Short: the server's socket is made in it (108 bytes at most).
		work, err := os.MkdirTemp("", "lbw")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(work) })
		out := filepath.Join(t.TempDir(), "orders.dump")
		e.forTest(t).mustRun("restore", "db", "--time", ts, "--table", "app.orders", "--out", out, "--work-dir", work)
		toc := dumpTOC(t, out)
		if !strings.Contains(toc, "TABLE DATA app orders") || strings.Contains(toc, " other ") || strings.Contains(toc, " log ") {
			t.Fatalf("the dump holds more or less than app.orders:\n%s", toc)
		}
		c := loadDump(t, out, "create schema app")
		if got := c.Psql(t, "postgres", "select sum(id) || '/' || md5(string_agg(note, ',' order by id)) from app.orders"); got != sum {
			t.Fatalf("restored app.orders: %s, want %s as at %s", got, sum, ts)
		}
		if left, _ := os.ReadDir(work); len(left) != 0 {
			t.Fatalf("the throwaway server's work directory is left: %v", left)
		}
	})
	t.Run("schema", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "audit.dump")
		e.forTest(t).mustRun("restore", "db", "--time", ts, "--schema", "audit", "--out", out)
		c := loadDump(t, out, "")
		if got := c.Psql(t, "postgres", "select count(*) from audit.log"); got != "400" {
			t.Fatalf("restored audit.log has %s rows, want the 400 of %s", got, ts)
		}
		if got := c.Psql(t, "postgres", "select count(*) from pg_tables where schemaname = 'app'"); got != "0" {
			t.Fatalf("a schema restore brought %s tables of another schema", got)
		}
	})
	t.Run("latest has the table gone", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "orders.dump")
		r := e.forTest(t).run("restore", "db", "--table", "app.orders", "--out", out)
		if r.code != 2 || !strings.Contains(r.stderr, `table "app"."orders" does not exist in database "postgres"`) {
			t.Fatalf("want exit 2 naming the dropped table; got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("nonexistent table", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out := filepath.Join(dir, "nope.dump")
		r := e.forTest(t).run("restore", "db", "--time", ts, "--table", "app.nope", "--table", "app.orders", "--out", out)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `table "app"."nope" does not exist`) {
			t.Fatalf("want exit 2 and one line naming app.nope; got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("a failed table restore left %v", left)
		}
	})
	t.Run("unreachable time refuses", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out := filepath.Join(dir, "late.dump")
		future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
		r := e.forTest(t).run("restore", "db", "--time", future, "--table", "app.orders", "--out", out)
		if r.code == 0 || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("want a one-line refusal of a target past the archive; got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("a refused table restore left %v", left)
		}
	})
	t.Run("bad names and flags", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "x.dump")
		for _, args := range [][]string{
			{"--table", "orders", "--out", out},
			{"--table", "app.orders"},
			{"--table", "app.orders", "--out", out, "--to", t.TempDir()},
			{"--out", out, "--to", t.TempDir()},
		} {
			r := e.forTest(t).run(append([]string{"restore", "db"}, args...)...)
			if r.code != 2 || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("restore %v: want one usage line, exit 2; got %d\n%s", args, r.code, r.stderr)
			}
		}
	})
}

func TestTableRestorePGDump(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, "")
	e.pg.Psql(t, "app", `create schema sales;
		create table sales.orders (id int primary key, note text);
		create index orders_note on sales.orders (note);
		create table sales.other (id int);
		create table keep (id int);
		insert into sales.orders select g, 'first' from generate_series(1, 700) g`)
	e.mustRun("backup", "dump")
	time.Sleep(1100 * time.Millisecond)
	between := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(1100 * time.Millisecond)
	e.pg.Psql(t, "app", "insert into sales.orders select g, 'second' from generate_series(701, 900) g")
	e.mustRun("backup", "dump")

	t.Run("table at a time", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out := filepath.Join(dir, "orders.dump")
		e.forTest(t).mustRun("restore", "dump", "--time", between, "--table", "sales.orders", "--out", out)
		toc := dumpTOC(t, out)
		if !strings.Contains(toc, "INDEX sales orders_note") || strings.Contains(toc, " other ") || strings.Contains(toc, " keep ") {
			t.Fatalf("the dump holds more or less than sales.orders and its index:\n%s", toc)
		}
		c := loadDump(t, out, "create schema sales")
		if got := c.Psql(t, "postgres", "select count(*) || ' ' || max(note) from sales.orders"); got != "700 first" {
			t.Fatalf("restored sales.orders from the first dump: %s, want 700 first", got)
		}
		if left, _ := os.ReadDir(dir); len(left) != 1 {
			t.Fatalf("want only the dump in %s, got %v", dir, left)
		}
	})
	t.Run("schema from the newest dump", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "sales.dump")
		e.forTest(t).mustRun("restore", "dump", "--schema", "sales", "--out", out)
		c := loadDump(t, out, "")
		if got := c.Psql(t, "postgres", "select count(*) from sales.orders"); got != "900" {
			t.Fatalf("restored sales.orders from the newest dump has %s rows, want 900", got)
		}
	})
	t.Run("nonexistent table", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out := filepath.Join(dir, "nope.dump")
		r := e.forTest(t).run("restore", "dump", "--table", "sales.nope", "--out", out)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `table "sales"."nope" does not exist in database "app"`) {
			t.Fatalf("want exit 2 and one line naming sales.nope; got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("a failed table restore left %v", left)
		}
	})
	t.Run("flags of the postgres kind are refused", func(t *testing.T) {
		t.Parallel()
		r := e.forTest(t).run("restore", "dump", "--table", "sales.orders", "--out", filepath.Join(t.TempDir(), "x"), "--lsn", "0/1")
		if r.code != 2 || !strings.Contains(r.stderr, "--lsn does not apply to pg_dump assets") {
			t.Fatalf("want --lsn refused; got %d\n%s", r.code, r.stderr)
		}
	})
}

func TestRestoreOneDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.sql("create database app")
	e.sql("create database other")
	e.pg.Psql(t, "app", "create table t (id int primary key); insert into t select generate_series(1, 500)")
	e.pg.Psql(t, "other", "create table big (id int, pad text); insert into big select g, repeat('x', 500) from generate_series(1, 20000) g")
	e.mustRun("backup", "db")
	e.pg.Psql(t, "app", "insert into t select generate_series(501, 600)")
	e.pg.Psql(t, "other", "insert into big select g, 'after' from generate_series(1, 100) g")
	e.switchAndWait()

	dir := filepath.Join(t.TempDir(), "restored")
	out := e.mustRun("restore", "db", "--to", dir, "--database", "app", "--archive-off")
	if !strings.Contains(out, "marked invalid: other") {
		t.Fatalf("want the other database named as left out:\n%s", out)
	}
	// The left-out database's 10 MB were not written: its files are holes.
	oid := e.pg.Psql(t, "postgres", "select oid from pg_database where datname = 'other'")
	var used int64
	filepath.WalkDir(filepath.Join(dir, "base", oid), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				used += fi.Sys().(*syscall.Stat_t).Blocks * 512
			}
		}
		return nil
	})
	if used > 2<<20 {
		t.Fatalf("the left-out database takes %d bytes on disk", used)
	}
	c := pgtest.Open(t, dir, nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.Psql(t, "app", "select count(*) from t"); got != "600" {
		t.Fatalf("restored app.t has %s rows, want 600", got)
	}
	if got := c.Psql(t, "postgres", "select datname from pg_database where datconnlimit = -2"); got != "other" {
		t.Fatalf("invalid databases: %q, want other", got)
	}
	cmd := exec.Command(filepath.Join(pgtest.PGBin(t), "psql"), "-X", "-d", c.DSN("other"), "-c", "select 1")
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), `invalid database "other"`) {
		t.Fatalf("connecting to the left-out database: %v\n%s", err, msg)
	}
	c.Psql(t, "postgres", "drop database other")

	// A table of one database, the others' data not read.
	dump := filepath.Join(t.TempDir(), "t.dump")
	e.mustRun("restore", "db", "--database", "app", "--table", "public.t", "--out", dump)
	if got := loadDump(t, dump, "").Psql(t, "postgres", "select count(*) from t"); got != "600" {
		t.Fatalf("restored t has %s rows, want 600", got)
	}

	r := e.run("restore", "db", "--to", filepath.Join(t.TempDir(), "x"), "--database", "nope")
	if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `database "nope" is not in snapshot`) {
		t.Fatalf("want one usage line for a database the snapshot lacks; got %d\n%s", r.code, r.stderr)
	}
}

// TestTableRestoreEarlyCheck: a name the snapshot's list lacks, when no
// commit in the WAL up to the target changed the catalogs, is refused
// before anything is restored; a table created after the snapshot is
// still found; a snapshot without the list checks after the restore.
func TestTableRestoreEarlyCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	// Only the test's own commits may touch the catalogs: an autoanalyze
	// commit would (rightly) send the early check to the late one.
	e.sql("alter system set autovacuum = off")
	e.sql("select pg_reload_conf()")
	e.sql(`create schema app; create table app.orders (id int primary key);
		insert into app.orders select generate_series(1, 10)`)
	e.mustRun("backup", "db")
	stamp := "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || 'Z'"
	e.sql("insert into app.orders select generate_series(11, 15)")
	ts1 := e.sql(stamp)
	e.sql("create table app.late (id int); insert into app.late select generate_series(1, 20)")
	ts2 := e.sql(stamp)
	e.sql("drop table app.late")
	e.switchAndWait()

	t.Run("now", func(t *testing.T) {
		t.Run("misspelled table is refused before the restore", func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out := filepath.Join(dir, "x.dump")
			start := time.Now()
			r := e.forTest(t).run("restore", "db", "--time", ts1, "--table", "app.ordrs", "--out", out)
			took := time.Since(start)
			if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `table "app"."ordrs" does not exist in database "postgres"`) ||
				!strings.Contains(r.stderr, "no commit in the archived WAL from its start to time ") {
				t.Fatalf("want exit 2 and one early line naming app.ordrs; got %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			// -v shows the restore's steps: none of them ran.
			r = e.forTest(t).run("-v", "restore", "db", "--time", ts1, "--table", "app.ordrs", "--schema", "nope", "--out", out)
			if r.code != 2 || strings.Contains(r.stderr, "table restore: snapshot chosen") || !strings.Contains(r.stderr, `table "app"."ordrs", schema "nope" do not exist`) {
				t.Fatalf("want the refusal before any restore step; got %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			r = e.forTest(t).run("restore", "db", "--time", ts1, "--database", "nodb", "--table", "app.orders", "--out", out)
			if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `database "nodb" does not exist`) {
				t.Fatalf("want exit 2 and one early line naming database nodb; got %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("a refused table restore left %v", left)
			}
			t.Logf("early refusal took %s", took)
		})
		t.Run("table created after the snapshot is found", func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "late.dump")
			r := e.forTest(t).run("-v", "restore", "db", "--time", ts2, "--table", "app.late", "--out", out)
			if r.code != 0 || !strings.Contains(r.stderr, "names are checked after the restore") || !strings.Contains(r.stderr, "changed the catalogs") {
				t.Fatalf("want the late check and success; got %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			c := loadDump(t, out, "create schema app")
			if got := c.Psql(t, "postgres", "select count(*) from app.late"); got != "20" {
				t.Fatalf("restored app.late has %s rows, want 20", got)
			}
		})
	})

	t.Run("snapshot without the list checks late", func(t *testing.T) {
		// A database the backup may not connect to leaves the snapshot
		// without a list, as snapshots of older versions are.
		e.sql("create database nocat")
		hba := filepath.Join(e.pg.DataDir, "pg_hba.conf")
		old, err := os.ReadFile(hba)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hba, append([]byte("local nocat all reject\nhost nocat all all reject\n"), old...), 0o600); err != nil {
			t.Fatal(err)
		}
		e.sql("select pg_reload_conf()")
		e.mustRun("backup", "db")
		out := filepath.Join(t.TempDir(), "x.dump")
		r := e.forTest(t).run("-v", "restore", "db", "--table", "app.ordrs", "--out", out)
		if r.code != 2 || !strings.Contains(r.stderr, "the snapshot lists no relations") || !strings.Contains(r.stderr, "table restore: recovered and promoted") ||
			!strings.Contains(r.stderr, `table "app"."ordrs" does not exist in database "postgres" at the end of the archived WAL`) {
			t.Fatalf("want the late refusal after a restore; got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}
