package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// TestOverwrittenRepositoryComesBack: on a versioned MinIO bucket, the
// documented backup role (what a compromised backup host holds) overwrites
// every pack, index object, snapshot manifest and WAL file with junk, as
// S3 lets a credential that may put do. The restore reads the earlier,
// authentic versions and says so, WAL replay included; check alerts;
// verify --read-data names every object; verify --repair with the expire
// role makes the authentic versions current again and the next verify is
// clean. Then a snapshot deleted later is restored from the repository as
// of before the delete.
func TestOverwrittenRepositoryComesBack(t *testing.T) {
	t.Parallel()
	const bucket = "versioned"
	e, srv, useExpireRole := newRoleEnv(t, bucket, false, "")
	srv.EnableVersioning(t, bucket)
	e.ledgerHistory()
	ctx := t.Context()
	attacker := srv.ClientAs(t, "lifeboat-backup", "backup-secret-1234")
	var attacked []string
	for _, area := range []string{"data/", "index/", "snapshots/", "wal/db/"} {
		out, err := attacker.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("db/" + area)})
		if err != nil || len(out.Contents) == 0 {
			t.Fatalf("list %s as the backup role: %d objects, %v", area, len(out.Contents), err)
		}
		for _, o := range out.Contents {
			if _, err := attacker.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: o.Key,
				Body: strings.NewReader("ransomed")}); err != nil {
				t.Fatalf("overwrite %s as the backup role: %v", aws.ToString(o.Key), err)
			}
			attacked = append(attacked, strings.TrimPrefix(aws.ToString(o.Key), "db/"))
		}
	}

	dir := filepath.Join(t.TempDir(), "restored")
	r := e.run("restore", "db", "--to", dir, "--archive-off")
	if r.code != 0 || !strings.Contains(r.stdout, "restored from its earlier version") || !strings.Contains(r.stderr, "read an earlier version") {
		t.Fatalf("restore from an overwritten repository: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c := pgtest.Open(t, dir, nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "3000" {
		t.Fatalf("restored %s rows, want 3000 (WAL fetched from earlier versions too)", got)
	}

	r = e.run("check")
	if r.code != 1 || !strings.Contains(r.stdout, "current version is not authentic") {
		t.Fatalf("check after the overwrite: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "versioning is on") {
		t.Errorf("check does not report the bucket's versioning:\n%s", r.stdout)
	}
	r = e.run("verify", "--read-data")
	if r.code != 1 {
		t.Fatalf("verify of an overwritten repository: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, name := range attacked {
		if !strings.Contains(r.stdout, name+": the current version is not authentic") {
			t.Errorf("verify does not name %s:\n%s", name, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "no earlier version is") {
		t.Errorf("verify found an object without an authentic version:\n%s", r.stdout)
	}

	// The backup host cannot repair where AWS's conditional-write policy
	// holds; the expire role can, anywhere.
	useExpireRole()
	out := e.mustRun("verify", "--read-data", "--repair")
	if n := strings.Count(out, ": repaired "); n != len(attacked) || !strings.Contains(out, "0 problems") {
		t.Fatalf("verify --repair repaired %d of %d objects:\n%s", n, len(attacked), out)
	}
	if out := e.mustRun("verify", "--read-data"); !strings.Contains(out, "0 problems") || strings.Contains(out, "repaired") {
		t.Fatalf("verify after the repair:\n%s", out)
	}
	if r := e.run("check"); strings.Contains(r.stdout, "not authentic") {
		t.Fatalf("check after the repair still reports:\n%s", r.stdout)
	}

	// Someone who may delete (here the expire role's raw API) deletes
	// the snapshot; as of before, it is there.
	before := time.Now().Truncate(time.Millisecond)
	for !time.Now().After(before.Add(time.Millisecond)) {
		time.Sleep(100 * time.Microsecond)
	}
	admin := srv.ClientAs(t, "lifeboat-expire", "expire-secret-1234")
	for _, name := range attacked {
		if strings.HasPrefix(name, "snapshots/") {
			if _, err := admin.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("db/" + name)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r := e.run("restore", "db", "--to", filepath.Join(t.TempDir(), "gone"), "--archive-off"); r.code == 0 {
		t.Fatalf("restore with every snapshot deleted succeeded:\n%s", r.stdout)
	}
	asOf := filepath.Join(t.TempDir(), "as-of")
	e.mustRun("restore", "db", "--to", asOf, "--archive-off", "--repository-as-of", before.UTC().Format(time.RFC3339Nano))
	c = pgtest.Open(t, asOf, nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "3000" {
		t.Fatalf("restored as of before the delete: %s rows, want 3000", got)
	}
}

// TestRepositoryAsOfRefusedWithoutVersions: a directory keeps no earlier
// versions, so a restore as of a time is refused in one line, with exit
// 2, before anything is written.
func TestRepositoryAsOfRefusedWithoutVersions(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "app.conf"), "listen = 8080\n", 0o644, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	e.filesBackup()
	to := filepath.Join(t.TempDir(), "restored")
	r := e.run("restore", "app-config", "--to", to, "--repository-as-of", "2026-01-01T00:00:00Z")
	if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "keeps no earlier versions") {
		t.Fatalf("restore as of on a directory: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(to); !os.IsNotExist(err) {
		t.Fatalf("a refused restore created %s: %v", to, err)
	}
	r = e.run("restore", "app-config", "--to", to, "--repository-as-of", "yesterday")
	if r.code != 2 || !strings.Contains(r.stderr, "--repository-as-of") {
		t.Fatalf("restore as of a bad time: exit %d\n%s", r.code, r.stderr)
	}
}
