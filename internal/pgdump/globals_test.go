package pgdump

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// genuineGlobals is pg_dumpall --globals-only as 15.14 and later write it.
const genuineGlobals = `--
-- PostgreSQL database cluster dump
--

\restrict vbzsA8dHTsAvo8pOTZ4Vhhtzt0LatY4htLZaGozekTniaWVl2YZoMP1rL06PM6b

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE "odd""name: -- \x";
ALTER ROLE "odd""name: -- \x" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS VALID UNTIL '2031-01-01 00:00:00+00';
COMMENT ON ROLE "odd""name: -- \x" IS 'it''s; -- not a comment: $1 /* nor this */
second line \ no';
ALTER ROLE app SET search_path TO '$user', 'public';

\unrestrict vbzsA8dHTsAvo8pOTZ4Vhhtzt0LatY4htLZaGozekTniaWVl2YZoMP1rL06PM6b

--
-- PostgreSQL database cluster dump complete
--

`

func TestCheckGlobals(t *testing.T) {
	t.Parallel()
	ok := strings.Replace(genuineGlobals, `second line \ no`, "second line", 1)
	if err := checkGlobals("globals.sql", []byte(ok)); err != nil {
		t.Fatalf("genuine globals refused: %v", err)
	}
	for _, tc := range []struct {
		name, text, want string
	}{
		{"shell", "SELECT 1;\n\\! touch /tmp/x\n", `line 2: psql meta-command "\\! touch /tmp/x"`},
		{"shell after SQL", "SELECT 1; \\! touch /tmp/x\n", "line 1: a psql meta-command that does not start its line"},
		{"shell after a CR", "-- c\r\\! touch /tmp/x\n", "line 1: a psql meta-command that does not start its line"},
		{"backquote in unrestrict", "\\restrict k\n\\unrestrict `touch /tmp/x`\n", `line 2: psql meta-command "\\unrestrict`},
		{"variable in unrestrict", "\\restrict postgres\n\\unrestrict :USER\n", "line 2: psql meta-command"},
		{"pipe", "\\o |sh\n", "line 1: psql meta-command"},
		{"include", "\n\n\\i /etc/passwd\n", "line 3: psql meta-command"},
		{"copy program", "\\copy t from program 'id'\n", "line 1: psql meta-command"},
		{"two on a line", "\\connect app \\! id\n", "line 1: psql meta-command"},
		{"backslash in a string", "COMMENT ON ROLE a IS 'x\\';\n\\! id\n';\n", "line 1: a backslash inside a string"},
		{"dollar quote", "DO $$ begin end $$;\n", "line 1: a dollar sign outside quotes"},
		{"block comment", "/* \\! id */\n", "line 1: a block comment"},
		{"variable", "SELECT :'LAST_ERROR_MESSAGE';\n", "line 1: a colon outside quotes"},
		{"string spanning lines", "SELECT 'a\nb\nc';\n\\! id\n", "line 4: psql meta-command"},
		{"unterminated", "SELECT 'a\n", "a string that never ends"},
	} {
		err := checkGlobals("globals.sql", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "globals.sql, line ") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	for _, good := range []string{"\\connect app\n", "\\c \"my db\"\n", "SELECT 1::int;\n", "SELECT E'abc';\n"} {
		if err := checkGlobals("globals.sql", []byte(good)); err != nil {
			t.Errorf("%q refused: %v", good, err)
		}
	}
}

// TestRealGlobalsPass: what a real pg_dumpall writes for roles with odd
// names, comments and settings passes the check.
func TestRealGlobalsPass(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	c.Psql(t, "postgres", `create role "odd""name: -- x" login valid until '2031-01-01';
comment on role "odd""name: -- x" is 'it''s; -- not a comment: $1 /* nor this */
second line';
create role app;
alter role app set search_path to '$user', public;
alter role app set work_mem = '64MB';
create role "$weird:role";
grant app to "$weird:role";`)
	out, err := exec.Command(filepath.Join(c.BinDir, "pg_dumpall"), "--globals-only", "--no-role-passwords", "--dbname="+c.DSN("postgres")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkGlobals("globals.sql", out); err != nil {
		t.Fatalf("real pg_dumpall output refused: %v\n%s", err, out)
	}
}

// TestForgedGlobalsRefused: a snapshot whose globals hold \! (made here
// by a pg_dumpall that writes what an attacker holding the repository key
// would) is refused at restore, before psql runs anything: the command
// does not run and no role is created. The same file given to psql as
// Lifeboat used to run it does run the command, so the test is real.
func TestForgedGlobalsRefused(t *testing.T) {
	// t.Setenv: LIFEBOAT_PG_BIN points this process's tool lookup at the
	// forging pg_dumpall.
	c := pgtest.Start(t, pgtest.Options{})
	c.Psql(t, "postgres", "create database app")
	marker := filepath.Join(t.TempDir(), "pwned")
	forged := "--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE forged_role;\n\\! touch " + marker + "\n\n" +
		"--\n-- PostgreSQL database cluster dump complete\n--\n\n"
	shims := t.TempDir()
	entries, err := os.ReadDir(c.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(c.BinDir, e.Name()), filepath.Join(shims, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	forgedFile := filepath.Join(t.TempDir(), "forged.sql")
	if err := os.WriteFile(forgedFile, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	dumpall := filepath.Join(shims, "pg_dumpall")
	os.Remove(dumpall)
	script := "#!/bin/sh\ncase \"$1\" in --version) exec " + filepath.Join(c.BinDir, "pg_dumpall") + " --version;; esac\ncat " + forgedFile + "\n"
	if err := os.WriteFile(dumpall, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv(pgbin.EnvBin, shims)

	r := repotest.New(t)
	ctx := context.Background()
	snap, err := Backup(ctx, r, BackupOptions{Asset: "dump", DSN: c.DSN("app"), Globals: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Restore(ctx, r, snap, RestoreOptions{DSN: c.DSN("app"), Globals: true})
	if err == nil || !strings.Contains(err.Error(), "line 6: psql meta-command \"\\\\! touch") || !strings.Contains(err.Error(), "globals of snapshot "+snap.ID.Short()) {
		t.Fatalf("restore of forged globals: %v", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the forged command ran: %v", err)
	}
	if n := c.Psql(t, "postgres", "select count(*) from pg_roles where rolname = 'forged_role'"); n != "0" {
		t.Fatalf("the refused globals created a role")
	}

	// psql as Lifeboat ran it before: the command runs.
	psql := exec.Command(filepath.Join(c.BinDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "--dbname="+c.DSN("postgres"), "-f", forgedFile)
	if out, err := psql.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the forged file does not do what the test says it does: %v", err)
	}
}
