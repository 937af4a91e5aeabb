package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// newS3Env is newEnv with the repository in a bucket of a real MinIO. It
// also returns the name of the environment variable holding the secret key.
func newS3Env(t *testing.T) (*env, *s3test.Server, string) {
	t.Helper()
	// HTTPS, as at AWS: uploads travel differently than over plain HTTP.
	srv := s3test.StartTLS(t)
	srv.CreateBucket(t, "backups", false)
	// The policy reads the secret from the environment, as operators
	// should; the server started next inherits it for archive_command.
	secret := testEnv(t, "LB_TEST_S3_SECRET", srv.SecretKey)
	e := startEnv(t, true, func(e *env) {
		e.repoURL = fmt.Sprintf("s3://backups/db?endpoint=%s&region=%s&path_style=true&ca_file=%s", srv.Endpoint, srv.Region, srv.CAFile)
		e.repoCreds = fmt.Sprintf("\n    access_key: %s\n    secret_key: ${%s}", srv.AccessKey, secret)
	})
	return e, srv, secret
}

// ledgerHistory writes 1000 rows, backs up, writes batch A (1000 rows),
// then batch B (1000 rows) and archives it all. It returns the LSN between
// the batches: a restore to it has 2000 rows, to the latest 3000.
func (e *env) ledgerHistory() string {
	e.t.Helper()
	e.sql("create table ledger (id int primary key, note text)")
	e.sql("insert into ledger select g, 'before' from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	e.sql("insert into ledger select g, 'batch A' from generate_series(1001, 2000) g")
	lsn := e.sql("select pg_current_wal_lsn()")
	e.sql("insert into ledger select g, 'batch B' from generate_series(2001, 3000) g")
	e.switchAndWait()
	return lsn
}

func TestPITROnS3(t *testing.T) {
	t.Parallel()
	e, srv, secret := newS3Env(t)
	lsn := e.ledgerHistory()
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
	os.Setenv(secret, "wrong-secret-key")
	r := e.run("snapshots")
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || strings.Contains(r.stderr, "wrong-secret-key") {
		t.Fatalf("wrong S3 secret: exit %d: %s", r.code, r.stderr)
	}
}

// TestRestoreFromCopyAlone copies to a repository on a second S3 server
// ("another region"), deletes the primary bucket, and restores from the
// copy with nothing but the policy and the copy's key.
func TestRestoreFromCopyAlone(t *testing.T) {
	t.Parallel()
	// The copy's secret must be in the environment before the server
	// starts: archive_command loads the whole policy.
	dr := s3test.Start(t)
	dr.CreateBucket(t, "backups-dr", false)
	drSecret := testEnv(t, "LB_TEST_DR_SECRET", dr.SecretKey)
	e, srv, _ := newS3Env(t)
	policy, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	copyRepo := fmt.Sprintf(`  - name: dr-copy
    url: s3://backups-dr/db?endpoint=%s&region=%s&path_style=true
    key_file: %s/dr.key
    access_key: %s
    secret_key: ${%s}
tiers:`, dr.Endpoint, dr.Region, e.dir, dr.AccessKey, drSecret)
	text := strings.Replace(string(policy), "tiers:", copyRepo, 1)
	text = strings.Replace(text, "repositories: [primary]", "repositories: [primary, dr-copy]", 1)
	if err := os.WriteFile(e.policy, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := e.mustRun("repo", "init", "dr-copy"); !strings.Contains(out, "as a copy of primary") {
		t.Fatalf("repo init of a copy: %s", out)
	}

	lsn := e.ledgerHistory()
	if out := e.mustRun("copy"); !strings.Contains(out, "to dr-copy") {
		t.Fatalf("copy: %s", out)
	}
	if out := e.mustRun("copy"); !strings.HasPrefix(out, "copied 0 objects") {
		t.Fatalf("a second copy transferred again: %s", out)
	}
	ids := func(repository string) []string {
		var snaps []snapshotJSON
		if err := json.Unmarshal([]byte(e.mustRun("snapshots", "--repository", repository, "--json")), &snaps); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range snaps {
			out = append(out, s.ID)
		}
		return out
	}
	if primary, copied := ids("primary"), ids("dr-copy"); len(primary) != 1 || fmt.Sprint(primary) != fmt.Sprint(copied) {
		t.Fatalf("the copy lists other snapshots: primary %v, copy %v", primary, copied)
	}

	// The primary region is gone.
	ctx := t.Context()
	client := srv.Client(t)
	objs, err := client.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: aws.String("backups")})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs.Contents {
		if _, err := client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String("backups"), Key: o.Key}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.DeleteBucket(ctx, &s3api.DeleteBucketInput{Bucket: aws.String("backups")}); err != nil {
		t.Fatal(err)
	}
	e.pg.Stop(t)
	if r := e.run("snapshots", "db"); r.code == 0 {
		t.Fatal("the deleted primary still answers")
	}
	// A new host: nothing of the old one's state directory.
	policy, err = os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	fresh := strings.Replace(string(policy), "state_dir: "+filepath.Join(e.dir, "state"), "state_dir: "+filepath.Join(t.TempDir(), "state"), 1)
	if fresh == string(policy) {
		t.Fatal("the policy has no state_dir to replace")
	}
	if err := os.WriteFile(e.policy, []byte(fresh), 0o600); err != nil {
		t.Fatal(err)
	}
	c := e.restoreAndStart("--repository", "dr-copy", "--lsn", lsn)
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "2000" {
		t.Fatalf("restored %s rows from the copy, want 2000", got)
	}
}
