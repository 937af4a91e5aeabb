package s3test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, c *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	_, err := c.PutObject(testContext(t), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
	})
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

func get(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(testContext(t), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read %s/%s: %v", bucket, key, err)
	}
	return b
}

func TestPutGet(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") || srv.Region != "us-east-1" {
		t.Fatalf("server endpoint %q region %q", srv.Endpoint, srv.Region)
	}
	if srv.AccessKey == "" || srv.SecretKey == "" {
		t.Fatal("server has empty credentials")
	}
	srv.CreateBucket(t, "plain", false)
	c := srv.Client(t)
	want := bytes.Repeat([]byte("lifeboat "), 100_000) // large enough for a chunked, checksummed upload
	put(t, c, "plain", "dir/object", want)
	if got := get(t, c, "plain", "dir/object"); !bytes.Equal(got, want) {
		t.Fatalf("get returned %d bytes, want the %d put", len(got), len(want))
	}
	if _, err := os.Stat(filepath.Join(srv.DataDir, "plain")); err != nil {
		t.Fatalf("bucket not stored in DataDir: %v", err)
	}
}

func TestObjectLockBucket(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	srv.CreateBucket(t, "locked", true)
	srv.CreateBucket(t, "unlocked", false)
	c := srv.Client(t)
	ctx := testContext(t)

	lock, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String("locked")})
	if err != nil {
		t.Fatalf("get object lock configuration: %v", err)
	}
	if lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		t.Fatalf("object lock configuration = %+v, want enabled", lock.ObjectLockConfiguration)
	}
	ver, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String("locked")})
	if err != nil {
		t.Fatalf("get bucket versioning: %v", err)
	}
	if ver.Status != types.BucketVersioningStatusEnabled {
		t.Fatalf("versioning of an object-lock bucket = %q, want Enabled", ver.Status)
	}

	_, err = c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String("unlocked")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ObjectLockConfigurationNotFoundError" {
		t.Fatalf("object lock configuration of a plain bucket: err = %v, want ObjectLockConfigurationNotFoundError", err)
	}
}

// TestTwoServers runs two servers at once: each has its own port, data and credentials.
func TestTwoServers(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Endpoint == b.Endpoint || a.DataDir == b.DataDir {
		t.Fatalf("servers share endpoint or data: %+v %+v", a, b)
	}
	if a.AccessKey == b.AccessKey || a.SecretKey == b.SecretKey {
		t.Fatal("two servers got the same credentials")
	}
	a.CreateBucket(t, "same-name", false)
	b.CreateBucket(t, "same-name", false)
	put(t, a.Client(t), "same-name", "k", []byte("from a"))
	put(t, b.Client(t), "same-name", "k", []byte("from b"))
	if got := string(get(t, a.Client(t), "same-name", "k")); got != "from a" {
		t.Fatalf("server a returned %q", got)
	}
	if got := string(get(t, b.Client(t), "same-name", "k")); got != "from b" {
		t.Fatalf("server b returned %q", got)
	}

	wrong := *b
	wrong.AccessKey, wrong.SecretKey = a.AccessKey, a.SecretKey
	if _, err := wrong.Client(t).ListBuckets(testContext(t), &s3.ListBucketsInput{}); err == nil {
		t.Fatal("server b accepted server a's credentials")
	}
}

// TestConditionalPut pins the MinIO behaviour the S3 backend relies on for create-only writes:
// If-None-Match: * on an existing key is refused with 412 and leaves the object unchanged.
func TestConditionalPut(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	srv.CreateBucket(t, "cond", false)
	c := srv.Client(t)
	ctx := testContext(t)
	putIfAbsent := func(body string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("cond"), Key: aws.String("k"), Body: strings.NewReader(body),
			IfNoneMatch: aws.String("*"),
		})
		return err
	}
	if err := putIfAbsent("first"); err != nil {
		t.Fatalf("conditional put of a new key: %v", err)
	}
	err := putIfAbsent("second")
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "PreconditionFailed" {
		t.Fatalf("conditional put over an existing key: err = %v, want PreconditionFailed", err)
	}
	var respErr interface{ HTTPStatusCode() int }
	if !errors.As(err, &respErr) || respErr.HTTPStatusCode() != http.StatusPreconditionFailed {
		t.Fatalf("conditional put over an existing key: err = %v, want HTTP 412", err)
	}
	if got := string(get(t, c, "cond", "k")); got != "first" {
		t.Fatalf("object after refused conditional put = %q, want %q", got, "first")
	}
}

func TestBinFromEnv(t *testing.T) {
	bin := Bin(t)
	t.Setenv(envMinIOBin, bin)
	if got := Bin(t); got != bin {
		t.Fatalf("Bin with %s=%s returned %s", envMinIOBin, bin, got)
	}
}

// TestStartFailureReportsOutput checks that a server that dies before it is ready yields an error
// carrying its output, which is what a developer needs to see.
func TestStartFailureReportsOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fake := filepath.Join(dir, "minio")
	script := "#!/bin/sh\necho 'fake minio: cannot start' >&2\nexit 3\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{Region: region, AccessKey: "key", SecretKey: "secret-key", DataDir: filepath.Join(dir, "data")}
	err := s.start(t, fake, dir, 1)
	if err == nil {
		t.Fatal("start of a server that exits succeeded")
	}
	for _, want := range []string{"exited before it was ready", "exit status 3", "fake minio: cannot start"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if errors.Is(err, errPortTaken) {
		t.Errorf("error %v is marked as a port conflict", err)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		n             int
		want          string
	}{
		{"empty", "", 3, ""},
		{"shorter", "a\nb\n", 3, "a\nb"},
		{"longer", "1\n2\n3\n4\n5\n", 2, "4\n5"},
		{"no final newline", "1\n2\n3", 2, "2\n3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := tail(p, tc.n); got != tc.want {
				t.Fatalf("tail(%q, %d) = %q, want %q", tc.content, tc.n, got, tc.want)
			}
		})
	}
	if got := tail(filepath.Join(dir, "missing"), 3); !strings.Contains(got, "cannot read server log") {
		t.Fatalf("tail of a missing file = %q", got)
	}
}

// TestCreateUser checks the hand-written admin calls against the server: the user exists, signs
// with its own keys and is held to its policy.
func TestCreateUser(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	srv.CreateBucket(t, "users", false)
	srv.CreateUser(t, "reader", "reader-secret-key", "read-users", `{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::users/*"]}
  ]
}`)
	put(t, srv.Client(t), "users", "k", []byte("root wrote this"))
	reader := srv.ClientAs(t, "reader", "reader-secret-key")
	if got := string(get(t, reader, "users", "k")); got != "root wrote this" {
		t.Fatalf("user read %q", got)
	}
	ctx := testContext(t)
	_, err := reader.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("users"), Key: aws.String("k2"), Body: strings.NewReader("x")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDenied" {
		t.Fatalf("put by a read-only user: err = %v, want AccessDenied", err)
	}
	_, err = srv.ClientAs(t, "reader", "wrong-secret-key").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("users"), Key: aws.String("k")})
	if err == nil {
		t.Fatal("the server accepted a wrong secret key for the user")
	}
}

// TestPoliciesInDocs keeps docs/storage.md showing the policy documents the tests run.
func TestPoliciesInDocs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "storage.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, policy := range map[string]string{
		"backup role": backupRole, "backup role for object_lock": backupRoleObjectLock, "expire role": expireRole,
		"restore role": restoreRole, "audit role": auditRole, "AWS if-none-match statement": awsRequireIfNoneMatch,
	} {
		if !json.Valid([]byte(policy)) {
			t.Errorf("the %s is not valid JSON", name)
		}
		if !strings.Contains(string(doc), "```json\n"+policy+"```") {
			t.Errorf("docs/storage.md does not show the %s as in testdata", name)
		}
	}
	if got := BackupRolePolicy("vault"); strings.Contains(got, "BUCKET") || !strings.Contains(got, `"arn:aws:s3:::vault/*"`) {
		t.Errorf("BackupRolePolicy(vault) = %s", got)
	}
	for prefix, want := range map[string]string{"db": `"arn:aws:s3:::vault/db/audit/*"`, "": `"arn:aws:s3:::vault/audit/*"`} {
		if got := AuditRolePolicy("vault", prefix); strings.Contains(got, "BUCKET") || strings.Contains(got, "PREFIX") ||
			!strings.Contains(got, want) || !strings.Contains(got, `"arn:aws:s3:::vault"`) || !json.Valid([]byte(got)) {
			t.Errorf("AuditRolePolicy(vault, %q) = %s", prefix, got)
		}
		if got := RestoreRolePolicy("vault", prefix); strings.Contains(got, "BUCKET") || strings.Contains(got, "PREFIX") ||
			!strings.Contains(got, want) || !strings.Contains(got, `"arn:aws:s3:::vault/*"`) || !json.Valid([]byte(got)) {
			t.Errorf("RestoreRolePolicy(vault, %q) = %s", prefix, got)
		}
	}
}

// TestRolePoliciesAccepted runs every role document through MinIO's policy parser.
func TestRolePoliciesAccepted(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := testContext(t)
	for name, policy := range map[string]string{"backup": BackupRolePolicy("vault"), "backup-object-lock": BackupRoleObjectLockPolicy("vault"),
		"expire": ExpireRolePolicy("vault"), "restore": RestoreRolePolicy("vault", "db"), "audit": AuditRolePolicy("vault", "db"),
		"audit-at-root": AuditRolePolicy("vault", "")} {
		if err := srv.addCannedPolicy(ctx, "lifeboat-"+name, policy); err != nil {
			t.Errorf("MinIO refused the %s role: %v", name, err)
		}
	}
}

// TestIfNoneMatchConditionRefused pins why the backup role cannot refuse overwrites on MinIO:
// its policy engine does not know the s3:if-none-match condition key AWS offers.
func TestIfNoneMatchConditionRefused(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	// An identity policy holds no Principal; otherwise the AWS statement as documented, less
	// its exemption of multipart part uploads (s3:ObjectCreationOperation), a key MinIO does
	// not know either: what is pinned here is the want of s3:if-none-match.
	var doc map[string]any
	if err := json.Unmarshal([]byte(AWSRequireIfNoneMatchPolicy("vault")), &doc); err != nil {
		t.Fatal(err)
	}
	for _, st := range doc["Statement"].([]any) {
		delete(st.(map[string]any), "Principal")
		delete(st.(map[string]any)["Condition"].(map[string]any), "Bool")
	}
	policy, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.addCannedPolicy(testContext(t), "require-if-none-match", string(policy))
	if err == nil || !strings.Contains(err.Error(), "invalid condition key") || !strings.Contains(err.Error(), "s3:if-none-match") {
		t.Fatalf("MinIO on a policy with s3:if-none-match: err = %v, want it refused as an invalid condition key (if MinIO accepts it now, add it to the backup role and update docs/storage.md)", err)
	}
}

func TestEncryptAdminDataBounds(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, sioBufSize} {
		out, err := encryptAdminData("root-secret", make([]byte, n))
		if err != nil {
			t.Fatalf("encrypt %d bytes: %v", n, err)
		}
		// salt, algorithm id, nonce, ciphertext, GCM tag
		if want := adminSaltSize + 1 + sioNonceSize + n + 16; len(out) != want || out[adminSaltSize] != adminAlgPBKDF2 {
			t.Fatalf("encrypt %d bytes: %d bytes out (id %#x), want %d (id %#x)", n, len(out), out[adminSaltSize], want, adminAlgPBKDF2)
		}
	}
	if _, err := encryptAdminData("root-secret", make([]byte, sioBufSize+1)); err == nil {
		t.Fatal("a body larger than one fragment was encrypted as one")
	}
}
