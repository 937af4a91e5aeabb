package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// newRoleEnv puts the repository in bucket on a real MinIO, reached with
// the credentials in the environment variables LB_S3_ACCESS_n and
// LB_S3_SECRET_n (see testEnv), which start as those of a user bound by the
// put-only backup role. extra is added to the repository's entry
// (object_lock). useExpireRole switches the variables to the credential of
// the expire role.
func newRoleEnv(t *testing.T, bucket string, lock bool, extra string) (e *env, srv *s3test.Server, useExpireRole func()) {
	t.Helper()
	srv = s3test.Start(t)
	srv.CreateBucket(t, bucket, lock)
	backupRole := s3test.BackupRolePolicy(bucket)
	if strings.Contains(extra, "object_lock") {
		// Uploads that carry their own lock need s3:PutObjectRetention.
		backupRole = s3test.BackupRoleObjectLockPolicy(bucket)
	}
	srv.CreateUser(t, "lifeboat-backup", "backup-secret-1234", "lifeboat-backup", backupRole)
	srv.CreateUser(t, "lifeboat-expire", "expire-secret-1234", "lifeboat-expire", s3test.ExpireRolePolicy(bucket))
	access := testEnv(t, "LB_S3_ACCESS", "lifeboat-backup")
	secret := testEnv(t, "LB_S3_SECRET", "backup-secret-1234")
	e = startEnv(t, true, func(e *env) {
		e.repoURL = fmt.Sprintf("s3://%s/db?endpoint=%s&region=%s&path_style=true", bucket, srv.Endpoint, srv.Region)
		e.repoCreds = fmt.Sprintf("\n    access_key: ${%s}\n    secret_key: ${%s}", access, secret) + extra
		e.assetExtra = "    retention: { daily: 1 }\n"
	})
	return e, srv, func() {
		os.Setenv(access, "lifeboat-expire")
		os.Setenv(secret, "expire-secret-1234")
	}
}

func TestPutOnlyCredential(t *testing.T) {
	t.Parallel()
	e, srv, useExpireRole := newRoleEnv(t, "backups", false, "")
	// Backups and the archiver work with the put-only role; the second
	// backup also shows the first one's lock was released without delete.
	e.ledgerHistory()
	e.mustRun("backup", "db")
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots, want 2", n)
	}
	// That credential cannot delete, through lifeboat or the raw API.
	r := e.run("expire", "--clock-offset", "48h")
	if r.code != 1 || !strings.Contains(r.stderr, "permission denied") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("expire with the put-only role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots after a refused expire, want 2", n)
	}
	raw := srv.ClientAs(t, "lifeboat-backup", "backup-secret-1234")
	objs, err := raw.ListObjectsV2(t.Context(), &s3api.ListObjectsV2Input{Bucket: aws.String("backups"), Prefix: aws.String("db/snapshots/")})
	if err != nil || len(objs.Contents) == 0 {
		t.Fatalf("list as the backup role: %v", err)
	}
	if _, err := raw.DeleteObject(t.Context(), &s3api.DeleteObjectInput{Bucket: aws.String("backups"), Key: objs.Contents[0].Key}); err == nil {
		t.Fatal("the backup role deleted a snapshot through the S3 API")
	}
	// Expiry runs with its own, deleting credential.
	useExpireRole()
	out := e.mustRun("expire", "--clock-offset", "48h")
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots after expire, want 1:\n%s", n, out)
	}
	if out := e.mustRun("verify", "--read-data"); !strings.Contains(out, "0 problems") {
		t.Fatalf("verify: %s", out)
	}
	c := e.restoreAndStart()
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "3000" {
		t.Fatalf("restored %s rows, want 3000", got)
	}
}

func TestObjectLockCompliance(t *testing.T) {
	t.Parallel()
	e, _, useExpireRole := newRoleEnv(t, "locked", true, "\n    object_lock: { mode: compliance }")
	e.ledgerHistory()
	e.mustRun("backup", "db")
	useExpireRole()
	// Two days on, retention lets the first snapshot go, but its objects
	// are locked for a day from when they were written (real time).
	out := e.mustRun("expire", "--clock-offset", "48h")
	t.Logf("expire:\n%s", out)
	if !strings.Contains(out, "delete: under retention until 20") {
		t.Fatalf("expire did not report the retention date:\n%s", out)
	}
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots, want both (one is locked)", n)
	}
	if out := e.mustRun("verify", "--read-data"); !strings.Contains(out, "0 problems") {
		t.Fatalf("verify after expire skipped locked objects: %s", out)
	}
}
