package pgdump

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// TestSecretsStayOffCommandLine dumps and restores through a server that
// demands a password, the connection string holding it and an
// sslpassword. Every PostgreSQL program runs through a wrapper recording
// its /proc/<pid>/cmdline and environ: the password gets through (the
// backup and restore succeed) but appears on no command line and in no
// environment, nor does sslpassword, nor a secret of this process's
// environment.
func TestSecretsStayOffCommandLine(t *testing.T) {
	// t.Setenv: this process's environment is what is under test.
	const (
		password    = `p:w\d 'x`
		sslPassword = "ssl-secret-91b2"
		awsSecret   = "planted-aws-secret-77c3"
	)
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsSecret)
	t.Setenv("PGPASSWORD", "not-this-one")
	c := pgtest.Start(t, pgtest.Options{})
	c.Psql(t, "postgres", "create role dumper login superuser password '"+strings.ReplaceAll(password, "'", "''")+"'; create database app owner dumper; create database target owner dumper")
	c.Psql(t, "app", "create table t as select g from generate_series(1, 100) g")
	hba := "local all dumper scram-sha-256\nlocal all all trust\n"
	if err := os.WriteFile(filepath.Join(c.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Psql(t, "postgres", "select pg_reload_conf()")

	logDir := t.TempDir()
	shims := t.TempDir()
	entries, err := os.ReadDir(c.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		script := "#!/bin/sh\n" +
			"{ tr '\\0' ' ' < /proc/$$/cmdline; echo; } >> " + filepath.Join(logDir, "cmdline") + "\n" +
			"{ tr '\\0' '\\n' < /proc/$$/environ; echo; } >> " + filepath.Join(logDir, "environ") + "\n" +
			"exec " + filepath.Join(c.BinDir, e.Name()) + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(shims, e.Name()), []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(pgbin.EnvBin, shims)

	dsn := func(db string) string {
		return strings.Replace(c.DSN(db), "user=postgres", "user=dumper", 1) +
			` password='` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(password) + `' sslpassword=` + sslPassword
	}
	r := repotest.New(t)
	ctx := context.Background()
	snap, err := Backup(ctx, r, BackupOptions{Asset: "dump", DSN: dsn("app"), Globals: true})
	if err != nil {
		t.Fatalf("backup with a password: %v", err)
	}
	if _, err := Restore(ctx, r, snap, RestoreOptions{DSN: dsn("target"), Globals: true}); err != nil {
		t.Fatalf("restore with a password: %v", err)
	}
	if n := c.Psql(t, "target", "select count(*) from t"); n != "100" {
		t.Fatalf("restored %s rows", n)
	}
	cmdlines, _ := os.ReadFile(filepath.Join(logDir, "cmdline"))
	environ, _ := os.ReadFile(filepath.Join(logDir, "environ"))
	for _, prog := range []string{"pg_dump ", "pg_dumpall ", "pg_restore ", "psql "} {
		if !strings.Contains(string(cmdlines), prog) {
			t.Errorf("no %s ran through the wrapper:\n%s", prog, cmdlines)
		}
	}
	for what, secret := range map[string]string{"password": `p:w\d`, "sslpassword": sslPassword, "AWS secret": awsSecret, "PGPASSWORD": "not-this-one"} {
		if strings.Contains(string(cmdlines), secret) {
			t.Errorf("the %s is on a command line:\n%s", what, cmdlines)
		}
		if strings.Contains(string(environ), secret) {
			t.Errorf("the %s is in a program's environment", what)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "lifeboat-pgconn-*")); len(left) > 0 {
		// Other tests of this package may hold theirs right now; this
		// one's are gone once Backup and Restore returned, which the
		// passfile paths in the recorded command lines tell apart.
		for _, dir := range left {
			if strings.Contains(string(cmdlines), dir) {
				t.Errorf("%s was left behind", dir)
			}
		}
	}
}

func TestToolConn(t *testing.T) {
	// t.Setenv: PGPASSWORD of this process is read.
	t.Setenv("PGPASSWORD", "")
	p, _ := parseDSN("host=/tmp user=u password=a:b\\\\c sslpassword=s")
	tc, err := newToolConn(p)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if s := tc.conn.String(); strings.Contains(s, "a:b") || strings.Contains(s, "sslpassword") || !strings.Contains(s, "service='lifeboat'") {
		t.Fatalf("conn %s", s)
	}
	pf, _ := os.ReadFile(tc.conn.get("passfile"))
	if string(pf) != "*:*:*:*:a\\:b\\\\c\n" {
		t.Fatalf("passfile %q", pf)
	}
	for _, f := range []string{tc.conn.get("passfile"), filepath.Join(tc.dir, "pg_service.conf")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, err, fi)
		}
	}
	dir := tc.dir
	tc.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Close left %s", dir)
	}

	// A password a file cannot hold goes in the environment.
	p, _ = parseDSN("host=/tmp password='a\nb'")
	tc, err = newToolConn(p)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if !strings.Contains(strings.Join(tc.env, "\x00"), "PGPASSWORD=a\nb") || tc.conn.get("passfile") != "" {
		t.Fatalf("env %q conn %s", tc.env, tc.conn)
	}
	// sslpassword next to a service of the operator's is refused.
	p, _ = parseDSN("service=prod sslpassword=s")
	if _, err := newToolConn(p); err == nil || !strings.Contains(err.Error(), "service") {
		t.Fatalf("service and sslpassword: %v", err)
	}
	// No secret: no files.
	p, _ = parseDSN("host=/tmp user=u")
	tc, err = newToolConn(p)
	if err != nil || tc.dir != "" || tc.conn.String() != p.String() {
		t.Fatalf("no secret: %v %+v", err, tc)
	}
}
