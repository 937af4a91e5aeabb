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

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// TestBucketThroughTheCLI drives a bucket asset as an operator would, with
// the policy of the docs: credentials from the environment, backup,
// snapshots, restore to a directory, diff by asset, drill, and a flag of
// another kind refused.
func TestBucketThroughTheCLI(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "uploads", false)
	cl := srv.Client(t)
	put := func(key, body string) {
		t.Helper()
		if _, err := cl.PutObject(t.Context(), &s3api.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String(key),
			Body: strings.NewReader(body), ContentType: aws.String("text/plain")}); err != nil {
			t.Fatal(err)
		}
	}
	put("prod/invoices/1.txt", "invoice one")
	put("prod/invoices/2.txt", "invoice two")
	put("staging/ignored.txt", "not in the prefix")

	dir := t.TempDir()
	secret := testEnv(t, "LB_TEST_UPLOADS_SECRET", srv.SecretKey)
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: uploads
    kind: bucket
    url: s3://uploads/prod/?endpoint=%s&region=%s&path_style=true
    access_key: %s
    secret_key: ${%s}
    repositories: [primary]
`, filepath.Join(dir, "state"), e.repo, filepath.Join(dir, "repo.key"), srv.Endpoint, srv.Region, srv.AccessKey, secret)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init")

	out := e.mustRun("backup", "uploads")
	if !strings.Contains(out, "(bucket)") {
		t.Fatalf("backup: %s", out)
	}
	put("prod/invoices/2.txt", "invoice two, corrected")
	put("prod/invoices/3.txt", "invoice three")
	e.mustRun("backup", "uploads")
	var rows []snapshotJSON
	if err := json.Unmarshal([]byte(e.mustRun("snapshots", "uploads", "--json")), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("snapshots: %+v, %v", rows, err)
	}
	snaps := []string{rows[0].ID, rows[1].ID}

	to := filepath.Join(t.TempDir(), "restored")
	e.mustRun("restore", "uploads", "--to", to)
	for key, want := range map[string]string{"invoices/1.txt": "invoice one", "invoices/2.txt": "invoice two, corrected", "invoices/3.txt": "invoice three"} {
		if got, err := os.ReadFile(filepath.Join(to, key)); err != nil || string(got) != want {
			t.Errorf("restored %s: %q, %v", key, got, err)
		}
	}
	if _, err := os.Stat(filepath.Join(to, "ignored.txt")); err == nil {
		t.Error("an object outside the prefix was restored")
	}

	diff := e.mustRun("diff", "uploads", snaps[0], snaps[1])
	if !strings.Contains(diff, "invoices/3.txt") || !strings.Contains(diff, "invoices/2.txt") || strings.Contains(diff, "invoices/1.txt") {
		t.Errorf("diff: %s", diff)
	}

	if out := e.mustRun("drill", "uploads"); !strings.Contains(out, "PASSED") {
		t.Errorf("drill: %s", out)
	}

	r := e.run("restore", "uploads", "--to", t.TempDir(), "--time", "2026-12-01T00:00:00Z")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--time does not apply to bucket assets") {
		t.Errorf("restore --time: exit %d: %s", r.code, r.stderr)
	}
}
