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

	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// rolesEnv is an env whose repository is on a versioned MinIO bucket, reached with the
// credential of one of the four documented roles at a time (users made with the policies of
// docs/storage.md) and the policy's role key naming it.
type rolesEnv struct {
	*env
	srv                *s3test.Server
	access, secret     string // the variables the policy reads the credential from
	role, keyFile      string // as the policy now says
	policyText, bucket string
}

func newRolesEnv(t *testing.T) *rolesEnv {
	t.Helper()
	srv := s3test.Start(t)
	const bucket = "roles"
	srv.CreateBucket(t, bucket, false)
	srv.EnableVersioning(t, bucket)
	for role, policy := range s3test.Roles(bucket, "db") {
		srv.CreateUser(t, "lifeboat-"+role, role+"-secret-1234", "lifeboat-"+role, policy)
	}
	re := &rolesEnv{srv: srv, bucket: bucket, role: "backup"}
	// The server's archive_command keeps the backup role's credential it
	// started with, whatever the variables say later.
	re.access = testEnv(t, "LB_ROLE_ACCESS", "lifeboat-backup")
	re.secret = testEnv(t, "LB_ROLE_SECRET", "backup-secret-1234")
	re.env = startEnv(t, true, func(e *env) {
		e.repoURL = fmt.Sprintf("s3://%s/db?endpoint=%s&region=%s&path_style=true", bucket, srv.Endpoint, srv.Region)
		e.repoCreds = fmt.Sprintf("\n    access_key: ${%s}\n    secret_key: ${%s}\n    role: backup", re.access, re.secret)
		e.assetExtra = "    retention: { daily: 1 }\n"
	})
	text, err := os.ReadFile(re.policy)
	if err != nil {
		t.Fatal(err)
	}
	re.policyText, re.keyFile = string(text), filepath.Join(re.dir, "repo.key")
	return re
}

// as makes the next commands run with the credential of role cred, under a policy that gives
// the repository role and opens it with keyFile.
func (re *rolesEnv) as(cred, role, keyFile string) {
	re.t.Helper()
	os.Setenv(re.access, "lifeboat-"+cred)
	os.Setenv(re.secret, cred+"-secret-1234")
	text := strings.Replace(re.policyText, "role: backup", "role: "+role, 1)
	text = strings.Replace(text, "key_file: "+filepath.Join(re.dir, "repo.key"), "key_file: "+keyFile, 1)
	if err := os.WriteFile(re.policy, []byte(text), 0o600); err != nil {
		re.t.Fatal(err)
	}
}

// roleCheck runs check and returns its role result for the repository.
func (re *rolesEnv) roleCheck() health.Result {
	re.t.Helper()
	res := re.run("check", "--json")
	var rs []health.Result
	if err := json.Unmarshal([]byte(res.stdout), &rs); err != nil {
		re.t.Fatalf("check --json: exit %d: %v\n%s%s", res.code, err, res.stdout, res.stderr)
	}
	for _, r := range rs {
		if r.Check == health.CheckRole && r.Subject == "primary" {
			if !r.OK && res.code == 0 {
				re.t.Errorf("check exited 0 with a failing role check: %+v", r)
			}
			return r
		}
	}
	re.t.Fatalf("check has no role result for the repository:\n%s", res.stdout)
	return health.Result{}
}

// TestRolesEndToEnd runs Lifeboat's own operations each with the credential of its role: backup
// and archiving as the backup role, expire as the expire role, restore as the restore role with
// a key file of its own; check holds each credential to its role, and alerts when the backup
// role's credential can delete.
func TestRolesEndToEnd(t *testing.T) {
	t.Parallel()
	re := newRolesEnv(t)
	re.ledgerHistory()
	re.mustRun("backup", "db")
	if n := len(re.snapshots()); n != 2 {
		t.Fatalf("%d snapshots, want 2", n)
	}
	if r := re.roleCheck(); !r.OK || !strings.Contains(r.Message, "no more rights than the backup role") || !strings.Contains(r.Message, "cannot delete") {
		t.Fatalf("role check of the backup role: %+v", r)
	}
	// The canary is stored, outside every area of the repository.
	raw := re.srv.Client(t)
	canaries, err := raw.ListObjectsV2(t.Context(), &s3api.ListObjectsV2Input{Bucket: aws.String(re.bucket), Prefix: aws.String("db/canary/")})
	if err != nil || len(canaries.Contents) != 1 {
		t.Fatalf("canaries after a check as the backup role: %v, %v", canaries, err)
	}
	// A second check reuses it.
	re.roleCheck()
	if again, err := raw.ListObjectsV2(t.Context(), &s3api.ListObjectsV2Input{Bucket: aws.String(re.bucket), Prefix: aws.String("db/canary/")}); err != nil || len(again.Contents) != 1 {
		t.Fatalf("canaries after two checks: %v, %v", again, err)
	}
	if out := re.mustRun("verify"); !strings.Contains(out, "0 problems") {
		t.Fatalf("verify with the canary in the bucket: %s", out)
	}
	// Its own key file for each of the other hosts: one can be revoked
	// (its keys/ object deleted) without touching the others.
	restoreKey, auditKey := filepath.Join(re.dir, "restore.key"), filepath.Join(re.dir, "audit.key")
	re.mustRun("repo", "add-key", "primary", "--key-file", restoreKey)
	re.mustRun("repo", "add-key", "primary", "--key-file", auditKey)

	// The backup role cannot expire; the expire role can.
	if r := re.run("expire", "--clock-offset", "48h"); r.code != 1 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("expire as the backup role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	re.as("expire", "expire", re.keyFile)
	out := re.mustRun("expire", "--clock-offset", "48h")
	if n := len(re.snapshots()); n != 1 {
		t.Fatalf("%d snapshots after expire as the expire role, want 1:\n%s", n, out)
	}
	if r := re.roleCheck(); !r.OK || !strings.Contains(r.Message, "no more rights than the expire role") {
		t.Fatalf("role check of the expire role: %+v", r)
	}

	// The expire role's credential on a host whose policy says backup: the alert.
	re.as("expire", "backup", re.keyFile)
	r := re.roleCheck()
	if r.OK || !strings.HasPrefix(r.Message, "credential of repository primary can delete") ||
		!strings.Contains(r.Message, "it has more rights than the backup role") {
		t.Fatalf("role check of a deleting credential held to the backup role: %+v", r)
	}

	// Restore as the restore role, with its own key file. It writes nothing
	// but the audit chain's seal, drill reports and approvals.
	re.as("restore", "restore", restoreKey)
	count := func(prefix string) int {
		out, err := raw.ListObjectsV2(t.Context(), &s3api.ListObjectsV2Input{Bucket: aws.String(re.bucket), Prefix: aws.String(prefix)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Contents)
	}
	before := count("db/audit/")
	c := re.restoreAndStart()
	if after := count("db/audit/"); after <= before {
		t.Errorf("the restore as the restore role sealed nothing into the repository (%d seals before, %d after)", before, after)
	}
	// A drill, on the restore host, stores its report.
	if r := re.run("drill", "db"); r.code != 0 || count("db/drills/") != 1 {
		t.Fatalf("drill as the restore role: exit %d, %d reports stored\n%s%s", r.code, count("db/drills/"), r.stdout, r.stderr)
	}
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "3000" {
		t.Fatalf("restored %s rows as the restore role, want 3000", got)
	}
	if r := re.roleCheck(); !r.OK || !strings.Contains(r.Message, "cannot create objects") {
		t.Fatalf("role check of the restore role: %+v", r)
	}
	if r := re.run("backup", "db"); r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("backup as the restore role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := re.mustRun("verify"); !strings.Contains(out, "0 problems") {
		t.Fatalf("verify as the restore role: %s", out)
	}

	// The audit reader opens the repository with its key file but reads no
	// snapshot.
	re.as("audit", "audit", auditKey)
	if r := re.roleCheck(); !r.OK || !strings.Contains(r.Message, "no more rights than the audit role") {
		t.Fatalf("role check of the audit role: %+v", r)
	}
	if r := re.run("snapshots", "db"); r.code == 0 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("snapshots as the audit role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// What it is for: the chain checked against the seals in the repository.
	if r := re.run("audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify as the audit role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
