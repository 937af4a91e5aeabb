package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// newS3Env is newEnv with the repository in a bucket of a real MinIO.
func newS3Env(t *testing.T) (*env, *s3test.Server) {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "backups", false)
	// The policy reads the secret from the environment, as operators
	// should; the server started next inherits it for archive_command.
	t.Setenv("LB_TEST_S3_SECRET", srv.SecretKey)
	e := startEnv(t, true, func(e *env) {
		e.repoURL = fmt.Sprintf("s3://backups/db?endpoint=%s&region=%s&path_style=true", srv.Endpoint, srv.Region)
		e.repoCreds = fmt.Sprintf("\n    access_key: %s\n    secret_key: ${LB_TEST_S3_SECRET}", srv.AccessKey)
	})
	return e, srv
}

func TestPITROnS3(t *testing.T) {
	e, srv := newS3Env(t)
	e.sql("create table ledger (id int primary key, note text)")
	e.sql("insert into ledger select g, 'before' from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	e.sql("insert into ledger select g, 'batch A' from generate_series(1001, 2000) g")
	lsn := e.sql("select pg_current_wal_lsn()")
	e.sql("insert into ledger select g, 'batch B' from generate_series(2001, 3000) g")
	e.switchAndWait()
	e.mustRun("backup", "db")

	c := e.restoreAndStart("--lsn", lsn)
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "2000" {
		t.Fatalf("restored %s rows from S3, want 2000", got)
	}
	latest := e.restoreAndStart()
	if got := latest.Psql(t, "postgres", "select count(*) from ledger"); got != "3000" {
		t.Fatalf("restored %s rows from S3 to the latest point, want 3000", got)
	}
	if out := e.mustRun("verify", "--read-data"); !strings.Contains(out, "0 problems") {
		t.Fatalf("verify on S3: %s", out)
	}
	if out, _ := os.ReadFile(e.policy); strings.Contains(string(out), srv.SecretKey) {
		t.Fatal("the secret key was written into the policy")
	}
	// A wrong secret is one clear line and changes nothing.
	t.Setenv("LB_TEST_S3_SECRET", "wrong-secret-key")
	r := e.run("snapshots")
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || strings.Contains(r.stderr, "wrong-secret-key") {
		t.Fatalf("wrong S3 secret: exit %d: %s", r.code, r.stderr)
	}
}
