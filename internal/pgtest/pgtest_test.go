package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	os.Exit(RunMain(m, MainOptions{Build: []string{"./internal/pgtest/testdata/pgtesthello"}}))
}

func TestRunsUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("tests run as root: RunMain should have re-executed them as " + TestUser)
	}
	if os.Getenv(envPIDDir) != "" {
		// Re-executed by a root parent: we must be the dedicated user, with a private HOME.
		uid, _, ok := lookupUser(TestUser)
		if !ok || uid != os.Geteuid() {
			t.Fatalf("euid %d, want %s (uid %d, found %v)", os.Geteuid(), TestUser, uid, ok)
		}
		home := os.Getenv("HOME")
		fi, err := os.Stat(home)
		if err != nil || !fi.IsDir() {
			t.Fatalf("HOME %q: %v", home, err)
		}
		if err := os.WriteFile(filepath.Join(home, "probe"), []byte("x"), 0o600); err != nil {
			t.Fatalf("HOME not writable by the test user: %v", err)
		}
	}
}

func TestBin(t *testing.T) {
	out, err := exec.Command(Bin(t, "pgtesthello")).CombinedOutput()
	if err != nil {
		t.Fatalf("run pgtesthello: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("euid=%d", os.Geteuid()); got != want {
		t.Fatalf("pgtesthello printed %q, want %q", got, want)
	}
}

func TestStartPsqlAndChecksums(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{})
	if got := c.Psql(t, "postgres", "select 1"); got != "1" {
		t.Fatalf("select 1 = %q", got)
	}
	c.Psql(t, "postgres", `
create table items (id int primary key, name text, price numeric, created timestamptz);
insert into items select g, 'item ' || g, g * 1.5, '2024-01-01'::timestamptz + g * interval '1 hour'
  from generate_series(1, 500) g;
create schema "Mixed";
create table "Mixed"."Odd|Name" (v text);
insert into "Mixed"."Odd|Name" values ('a'), (null), ('b');
create table empty (x int);
create temp table scratch (x int);`)

	first := c.TableChecksums(t, "postgres")
	want := map[string]string{"public.items": ":500", `"Mixed"."Odd|Name"`: ":3", "public.empty": ":0"}
	if len(first) != len(want) {
		t.Fatalf("checksums for %v, want tables %v", first, want)
	}
	for tbl, suffix := range want {
		sum, ok := first[tbl]
		if !ok || !strings.HasSuffix(sum, suffix) || len(sum) != 32+len(suffix) {
			t.Fatalf("checksum of %s = %q, want md5 followed by %q (all: %v)", tbl, sum, suffix, first)
		}
	}
	if again := c.TableChecksums(t, "postgres"); !equalMaps(first, again) {
		t.Fatalf("checksums not stable:\n%v\n%v", first, again)
	}

	// The same rows in another physical order must give the same checksum.
	c.Psql(t, "postgres", "create table items2 as select * from items order by id desc")
	sums := c.TableChecksums(t, "postgres")
	if sums["public.items2"] != sums["public.items"] {
		t.Fatalf("same rows, different checksums: %q vs %q", sums["public.items2"], sums["public.items"])
	}
	c.Psql(t, "postgres", "update items set name = 'changed' where id = 250")
	if after := c.TableChecksums(t, "postgres"); after["public.items"] == first["public.items"] {
		t.Fatal("checksum did not change after an update")
	}

	if tail := c.logTail(); !strings.Contains(tail, "ready to accept connections") {
		t.Fatalf("server log tail lacks the ready message:\n%s", tail)
	}
	if want := fmt.Sprintf("host=%s port=%d user=postgres dbname=app sslmode=disable", c.SocketDir, c.Port); c.DSN("app") != want {
		t.Fatalf("DSN = %q, want %q", c.DSN("app"), want)
	}
	if got := c.Psql(t, "postgres", "show listen_addresses"); got != "" {
		t.Fatalf("listen_addresses = %q, want empty (unix socket only)", got)
	}
	if got := c.Psql(t, "postgres", "show fsync"); got != "on" {
		t.Fatalf("fsync = %q, want on", got)
	}
}

func TestRestartAndCrashRecoveryKeepData(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{})
	c.Psql(t, "postgres", "create table t (id int); insert into t select generate_series(1, 1000)")
	before := c.TableChecksums(t, "postgres")

	c.Restart(t)
	if got := c.TableChecksums(t, "postgres"); !equalMaps(before, got) {
		t.Fatalf("after restart: %v, want %v", got, before)
	}

	// Committed rows survive an immediate stop (no checkpoint): this is what fsync=on buys.
	c.Psql(t, "postgres", "insert into t values (1001)")
	c.StopImmediate(t)
	if c.running() {
		t.Fatal("server still running after StopImmediate")
	}
	c.Start(t)
	c.WaitRecoveryDone(t, time.Minute)
	if got := c.Psql(t, "postgres", "select count(*) from t"); got != "1001" {
		t.Fatalf("rows after crash recovery = %s, want 1001", got)
	}
}

func TestDataChecksums(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		checksums bool
		want      string
	}{
		{"enabled", true, "on"},
		{"disabled", false, "off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Start(t, Options{Checksums: tc.checksums})
			if got := c.Psql(t, "postgres", "show data_checksums"); got != tc.want {
				t.Fatalf("data_checksums = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConfValuesReachTheServer(t *testing.T) {
	t.Parallel()
	// Quotes, backslashes and percent signs must arrive unchanged through postgresql.conf.
	archive := `printf 'it''s \n %%' %p > /dev/null`
	c := Start(t, Options{Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": archive,
		"wal_level":       "'replica'", // already quoted
		"work_mem":        "5MB",
	}})
	for setting, want := range map[string]string{
		"archive_mode": "on", "archive_command": archive, "wal_level": "replica", "work_mem": "5MB",
	} {
		if got := c.Psql(t, "postgres", "show "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
}

func TestNoStart(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{NoStart: true})
	if c.running() {
		t.Fatal("server running with NoStart")
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, "PG_VERSION")); err != nil {
		t.Fatalf("initdb did not run: %v", err)
	}
	c.Start(t)
	if got := c.Psql(t, "postgres", "select current_user"); got != "postgres" {
		t.Fatalf("current_user = %q", got)
	}
}

func TestOpenCopiedDataDir(t *testing.T) {
	t.Parallel()
	src := Start(t, Options{Conf: map[string]string{"work_mem": "5MB"}})
	src.Psql(t, "postgres", `create database app;`)
	src.Psql(t, "app", `create table orders (id bigint primary key, note text);
insert into orders select g, repeat('x', g % 50) from generate_series(1, 2000) g;`)
	want := src.TableChecksums(t, "app")
	src.Stop(t)

	copyDir := filepath.Join(t.TempDir(), "restored")
	if out, err := exec.Command("cp", "-a", src.DataDir, copyDir).CombinedOutput(); err != nil {
		t.Fatalf("copy data dir: %v\n%s", err, out)
	}
	// postgresql.auto.conf would win over postgresql.conf; Open's command-line settings must still win.
	if err := os.WriteFile(filepath.Join(copyDir, "postgresql.auto.conf"),
		[]byte(fmt.Sprintf("port = %d\nwork_mem = '6MB'\n", src.Port)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The value goes through pg_ctl's shell: quotes, spaces and backslashes must survive it.
	name := `it's "a b" \x`
	dst := Open(t, copyDir, map[string]string{"work_mem": "7MB", "cluster_name": name})
	if dst.Port == src.Port || dst.SocketDir == src.SocketDir {
		t.Fatalf("Open reused port/socket: %d %s", dst.Port, dst.SocketDir)
	}
	for setting, want := range map[string]string{
		"port": fmt.Sprint(dst.Port), "unix_socket_directories": dst.SocketDir,
		"work_mem": "7MB", "cluster_name": name, "listen_addresses": "",
	} {
		if got := dst.Psql(t, "postgres", "show "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if got := dst.TableChecksums(t, "app"); !equalMaps(got, want) {
		t.Fatalf("copy checksums %v, want %v", got, want)
	}
	dst.Restart(t)
	if got := dst.Psql(t, "postgres", "show port"); got != fmt.Sprint(dst.Port) {
		t.Fatalf("port after restart = %s, want %d", got, dst.Port)
	}
}

func TestPGBench(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{})
	c.PGBench(t, "-i", "-s", "1", "-q", "postgres")
	before := c.TableChecksums(t, "postgres")
	if !strings.HasSuffix(before["public.pgbench_accounts"], ":100000") {
		t.Fatalf("pgbench_accounts checksum %q, want 100000 rows (all: %v)", before["public.pgbench_accounts"], before)
	}
	out := c.PGBench(t, "-c", "2", "-j", "2", "-t", "20", "postgres")
	if !strings.Contains(out, "number of transactions actually processed: 40") {
		t.Fatalf("unexpected pgbench output:\n%s", out)
	}
	if after := c.TableChecksums(t, "postgres"); after["public.pgbench_history"] == before["public.pgbench_history"] {
		t.Fatal("pgbench run did not change pgbench_history")
	}
}

func TestPGBinFromEnv(t *testing.T) {
	dir := PGBin(t)
	t.Setenv(envPGBin, dir)
	if got := PGBin(t); got != dir {
		t.Fatalf("PGBin with %s=%s returned %s", envPGBin, dir, got)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
