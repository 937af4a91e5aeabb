package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/storagetest"
)

// Keys of the users the write-once tests create.
const (
	backupUser, backupSecret = "lifeboat-backup", "backup-secret-key-0123"
	expireUser, expireSecret = "lifeboat-expire", "expire-secret-key-0123"
)

// openBackend connects a backend to bucket as the given user ("" for root) with the given lock.
func openBackend(t *testing.T, srv *s3test.Server, bucket, user, secret, mode string, retainFor time.Duration) storage.Backend {
	t.Helper()
	if user == "" {
		user, secret = srv.AccessKey, srv.SecretKey
	}
	be, err := New(t.Context(), Options{Bucket: bucket, Prefix: "repo", Endpoint: srv.Endpoint, Region: srv.Region,
		PathStyle: true, AccessKey: user, SecretKey: secret, LockMode: mode, RetainFor: retainFor})
	if err != nil {
		t.Fatalf("open %s as %s: %v", bucket, user, err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func putBytes(t *testing.T, be storage.Backend, name string, data []byte) error {
	t.Helper()
	return be.Put(t.Context(), name, bytes.NewReader(data), int64(len(data)))
}

func enableVersioning(t *testing.T, c *s3api.Client, bucket string) {
	t.Helper()
	_, err := c.PutBucketVersioning(t.Context(), &s3api.PutBucketVersioningInput{Bucket: aws.String(bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
	if err != nil {
		t.Fatalf("enable versioning of %s: %v", bucket, err)
	}
}

// versionsOf lists what the store still holds for key: version ids (newest first) and the number of
// delete markers.
func versionsOf(t *testing.T, c *s3api.Client, bucket, key string) (ids []string, markers int) {
	t.Helper()
	out, err := c.ListObjectVersions(t.Context(), &s3api.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatalf("list versions of %s/%s: %v", bucket, key, err)
	}
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == key {
			ids = append(ids, aws.ToString(v.VersionId))
		}
	}
	for _, m := range out.DeleteMarkers {
		if aws.ToString(m.Key) == key {
			markers++
		}
	}
	return ids, markers
}

func getVersion(t *testing.T, c *s3api.Client, bucket, key, version string) []byte {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3api.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), VersionId: aws.String(version)})
	if err != nil {
		t.Fatalf("get %s/%s version %s: %v", bucket, key, version, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read %s/%s version %s: %v", bucket, key, version, err)
	}
	return data
}

// wantAPIError fails unless err is the S3 error code want.
func wantAPIError(t *testing.T, what string, err error, want string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != want {
		t.Fatalf("%s: err = %v, want %s", what, err, want)
	}
}

// wantRetained fails unless err is a permanent *storage.RetainedError and returns it.
func wantRetained(t *testing.T, what string, err error) *storage.RetainedError {
	t.Helper()
	var re *storage.RetainedError
	if !errors.As(err, &re) || !errors.Is(err, storage.ErrRetained) || !storage.IsPermanent(err) {
		t.Fatalf("%s: err = %v, want a permanent RetainedError", what, err)
	}
	return re
}

func TestLockOptions(t *testing.T) {
	for _, tc := range []struct {
		mode      string
		retainFor time.Duration
		want, err string
	}{
		{mode: "", retainFor: 0, want: ""},
		{mode: "COMPLIANCE", retainFor: time.Hour, want: "COMPLIANCE"},
		{mode: "governance", retainFor: time.Second, want: "GOVERNANCE"},
		{mode: "Compliance", retainFor: 24 * time.Hour, want: "COMPLIANCE"},
		{mode: "", retainFor: time.Hour, err: "without a lock mode"},
		{mode: "COMPLIANCE", retainFor: 0, err: "positive retention period"},
		{mode: "governance", retainFor: -time.Second, err: "positive retention period"},
		{mode: "worm", retainFor: time.Hour, err: `unknown lock mode "worm"`},
	} {
		o := Options{Bucket: "b", Endpoint: "http://127.0.0.1:1", LockMode: tc.mode, RetainFor: tc.retainFor}
		got, err := o.checkLock()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("lock %q for %v: err = %v, want one containing %q", tc.mode, tc.retainFor, err, tc.err)
			}
			// New refuses before it tries to reach the store.
			if _, err := New(t.Context(), o); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("New with lock %q for %v: err = %v, want one containing %q", tc.mode, tc.retainFor, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("lock %q for %v = %q, %v; want %q", tc.mode, tc.retainFor, got, err, tc.want)
		}
	}
}

func TestRetainedErrorMessage(t *testing.T) {
	until := time.Date(2031, 5, 4, 3, 2, 1, 0, time.UTC)
	err := fmt.Errorf("prune: %w", storage.Permanent(&storage.RetainedError{Name: "data/ab/pack", Until: until, Mode: "COMPLIANCE"}))
	for _, want := range []string{"data/ab/pack", "COMPLIANCE", "2031-05-04 03:02:01 UTC"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
	if !errors.Is(err, storage.ErrRetained) || errors.Is(err, storage.ErrPermission) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%v matches the wrong sentinels", err)
	}
	hold := &storage.RetainedError{Name: "x", Mode: legalHoldMode}
	if !strings.Contains(hold.Error(), "LEGAL_HOLD") || strings.Contains(hold.Error(), "0001") {
		t.Errorf("legal hold message %q", hold.Error())
	}
}

// TestPutOnlyCredentials holds the backup role to its word on a versioned bucket: it creates and
// reads objects and can neither delete nor replace them.
func TestPutOnlyCredentials(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "put-only"
	srv.CreateBucket(t, bucket, false)
	root := srv.Client(t)
	enableVersioning(t, root, bucket)
	srv.CreateUser(t, backupUser, backupSecret, "lifeboat-backup", s3test.BackupRolePolicy(bucket))
	be := openBackend(t, srv, bucket, backupUser, backupSecret, "", 0)
	ctx := t.Context()

	const name, key = "data/ab/pack", "repo/data/ab/pack"
	original := []byte("the one true pack")
	if err := putBytes(t, be, name, original); err != nil {
		t.Fatalf("put as the backup role: %v", err)
	}
	if got := mustGet(t, be, name); !bytes.Equal(got, original) {
		t.Fatalf("get as the backup role = %q", got)
	}

	err := be.Delete(ctx, name)
	if !errors.Is(err, storage.ErrPermission) || !storage.IsPermanent(err) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete as the backup role: err = %v, want a permanent ErrPermission", err)
	}
	if !strings.Contains(err.Error(), "check the credentials and the bucket policy") {
		t.Errorf("delete error %q gives the operator no hint", err)
	}
	if err := putBytes(t, be, name, []byte("a second pack")); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second put of %s: err = %v, want ErrExists", name, err)
	}
	if got := mustGet(t, be, name); !bytes.Equal(got, original) {
		t.Fatalf("content after a refused put = %q", got)
	}

	// Through the raw API, without Lifeboat's care.
	user := srv.ClientAs(t, backupUser, backupSecret)
	ids, _ := versionsOf(t, root, bucket, key)
	if len(ids) != 1 {
		t.Fatalf("versions of %s = %q, want one", key, ids)
	}
	_, err = user.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	wantAPIError(t, "raw delete as the backup role", err, "AccessDenied")
	_, err = user.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), VersionId: aws.String(ids[0])})
	wantAPIError(t, "raw delete of the version as the backup role", err, "AccessDenied")

	// MinIO's policy engine has no s3:if-none-match condition key, so the role cannot forbid a
	// PutObject without If-None-Match: the overwrite is accepted as a new version. What protects
	// the data is versioning: the original version is still stored, readable by its id, and the
	// role cannot delete it. (If a MinIO release starts refusing the overwrite, this test fails:
	// then docs/storage.md should say so.)
	_, err = user.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("overwritten")})
	if err != nil {
		t.Fatalf("raw overwrite as the backup role: %v (MinIO refused it: update docs/storage.md)", err)
	}
	after, markers := versionsOf(t, root, bucket, key)
	if len(after) != 2 || after[1] != ids[0] || markers != 0 {
		t.Fatalf("versions after a raw overwrite = %q (+%d markers), want a new one over %s", after, markers, ids[0])
	}
	if got := getVersion(t, root, bucket, key, ids[0]); !bytes.Equal(got, original) {
		t.Fatalf("original version after a raw overwrite = %q", got)
	}
	_, err = user.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), VersionId: aws.String(ids[0])})
	wantAPIError(t, "raw delete of the original version as the backup role", err, "AccessDenied")
}

// TestPutOnlyOnLockedBucket: the backup role of the object_lock set-up locks what it writes
// (s3:PutObjectRetention is what lets an upload carry a lock) but cannot weaken a lock, set a
// legal hold, bypass governance or delete.
func TestPutOnlyOnLockedBucket(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "vault"
	srv.CreateBucket(t, bucket, true)
	srv.CreateUser(t, backupUser, backupSecret, "lifeboat-backup", s3test.BackupRoleObjectLockPolicy(bucket))
	root, user := srv.Client(t), srv.ClientAs(t, backupUser, backupSecret)
	ctx := t.Context()
	compliance := openBackend(t, srv, bucket, backupUser, backupSecret, "compliance", time.Hour)
	governance := openBackend(t, srv, bucket, backupUser, backupSecret, "governance", time.Hour)

	const name, key = "snapshots/c", "repo/snapshots/c"
	if err := putBytes(t, compliance, name, []byte("manifest")); err != nil {
		t.Fatalf("put with a compliance lock as the backup role: %v", err)
	}
	until, mode, err := compliance.(storage.Retainer).Retention(ctx, name)
	if err != nil || mode != LockCompliance || time.Until(until) < 59*time.Minute {
		t.Fatalf("retention = %v %q %v, want COMPLIANCE an hour on", until, mode, err)
	}
	re := wantRetained(t, "delete as the backup role", compliance.Delete(ctx, name))
	if !re.Until.Equal(until) {
		t.Fatalf("retained until %v, want %v", re.Until, until)
	}
	setRetention := func(key string, mode types.ObjectLockRetentionMode, until time.Time, bypass bool) error {
		_, err := user.PutObjectRetention(ctx, &s3api.PutObjectRetentionInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Retention:                 &types.ObjectLockRetention{Mode: mode, RetainUntilDate: aws.Time(until)},
			BypassGovernanceRetention: aws.Bool(bypass), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
		return err
	}
	if err := setRetention(key, types.ObjectLockRetentionModeCompliance, until.Add(-30*time.Minute), false); err == nil {
		t.Fatal("the backup role shortened a compliance lock")
	}
	if err := setRetention(key, types.ObjectLockRetentionModeGovernance, until, false); err == nil {
		t.Fatal("the backup role turned a compliance lock into governance")
	}
	_, err = user.PutObjectLegalHold(ctx, &s3api.PutObjectLegalHoldInput{Bucket: aws.String(bucket), Key: aws.String(key),
		LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOn}, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	wantAPIError(t, "legal hold as the backup role", err, "AccessDenied")

	const gname, gkey = "snapshots/g", "repo/snapshots/g"
	if err := putBytes(t, governance, gname, []byte("governed")); err != nil {
		t.Fatalf("put with a governance lock as the backup role: %v", err)
	}
	guntil, _, err := governance.(storage.Retainer).Retention(ctx, gname)
	if err != nil {
		t.Fatal(err)
	}
	if err := setRetention(gkey, types.ObjectLockRetentionModeGovernance, guntil.Add(-30*time.Minute), false); err == nil {
		t.Fatal("the backup role shortened a governance lock")
	}
	_, err = user.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(gkey),
		VersionId: aws.String(headVersion(t, root, bucket, gkey)), BypassGovernanceRetention: aws.Bool(true)})
	wantAPIError(t, "delete with governance bypass as the backup role", err, "AccessDenied")
	// A MinIO flaw that docs/storage.md warns of: PutObjectRetention honours the bypass header
	// without asking for s3:BypassGovernanceRetention, so any credential that may set retention
	// can shorten a governance lock (AWS refuses this). Governance mode is therefore no
	// protection on MinIO; compliance mode, checked above, is. If a MinIO release refuses this,
	// the test fails: then update the docs.
	shorter := guntil.Add(-30 * time.Minute).Truncate(time.Millisecond)
	if err := setRetention(gkey, types.ObjectLockRetentionModeGovernance, shorter, true); err != nil {
		t.Fatalf("shorten a governance lock with the bypass header: %v (MinIO refused it: update docs/storage.md)", err)
	}
	if got, _, _ := governance.(storage.Retainer).Retention(ctx, gname); !got.Equal(shorter) {
		t.Fatalf("governance lock after a bypassing shortening = %v, want %v", got, shorter)
	}

	// A raw overwrite becomes a new version; the locked original stays, and not even root can
	// delete it.
	ids, _ := versionsOf(t, root, bucket, key)
	if _, err := user.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("junk")}); err != nil {
		t.Fatalf("raw overwrite as the backup role: %v (MinIO refused it: update docs/storage.md)", err)
	}
	if got := getVersion(t, root, bucket, key, ids[0]); string(got) != "manifest" {
		t.Fatalf("original version after a raw overwrite = %q", got)
	}
	_, err = root.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), VersionId: aws.String(ids[0])})
	if err == nil {
		t.Fatal("root deleted a version under compliance retention")
	}
}

// TestObjectLockMultipart: an object uploaded in parts is locked like one put whole, from the
// moment it exists, and the backup role can both upload in parts and abort an upload that
// failed (s3:AbortMultipartUpload), so that it leaves no parts behind.
func TestObjectLockMultipart(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "vault-parts"
	srv.CreateBucket(t, bucket, true)
	srv.CreateUser(t, backupUser, backupSecret, "lifeboat-backup", s3test.BackupRoleObjectLockPolicy(bucket))
	ctx := t.Context()
	be, err := New(ctx, Options{Bucket: bucket, Prefix: "repo", Endpoint: srv.Endpoint, Region: srv.Region,
		PathStyle: true, AccessKey: backupUser, SecretKey: backupSecret, LockMode: "compliance", RetainFor: time.Hour,
		MultipartThreshold: 1 << 20, PartSize: MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()

	data := randomBytes(2*MinPartSize + 4321)
	start := time.Now()
	if err := putBytes(t, be, "wal/big", data); err != nil {
		t.Fatalf("multipart put with a compliance lock as the backup role: %v", err)
	}
	// Uploaded in parts, not whole.
	head, err := srv.Client(t).HeadObject(ctx, &s3api.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("repo/wal/big"),
		ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	if etag := aws.ToString(head.ETag); !strings.HasSuffix(strings.Trim(etag, `"`), "-3") {
		t.Errorf("ETag %s: not an upload of 3 parts", etag)
	}
	until, mode, err := be.(storage.Retainer).Retention(ctx, "wal/big")
	if err != nil || mode != LockCompliance || until.Before(start.Add(time.Hour-time.Minute)) || until.After(time.Now().Add(time.Hour)) {
		t.Fatalf("retention of a multipart object = %v %q %v, want COMPLIANCE an hour on", until, mode, err)
	}
	wantRetained(t, "delete a locked multipart object", be.Delete(ctx, "wal/big"))
	if got := mustGet(t, be, "wal/big"); !bytes.Equal(got, data) {
		t.Fatal("locked multipart object reads back different")
	}

	// A body that fails after the first part: the role aborts its upload.
	body := &failAfter{r: bytes.NewReader(data), left: MinPartSize + 1000}
	if err := be.Put(ctx, "wal/failed", body, int64(len(data))); err == nil {
		t.Fatal("a put whose body failed succeeded")
	}
	if _, err := be.Stat(ctx, "wal/failed"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a failed multipart put left an object: %v", err)
	}
	noUploadsLeft(t, srv, bucket)
}

// failAfter reads like its reader until left bytes are read, then fails. It is not an
// io.ReaderAt, so the backend reads it in order into buffers.
type failAfter struct {
	r    *bytes.Reader
	left int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errors.New("disk failed (injected)")
	}
	p = p[:min(len(p), f.left)]
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}

func (f *failAfter) Seek(offset int64, whence int) (int64, error) { return f.r.Seek(offset, whence) }

// TestStrictBackupRoleWithDefaultRetention covers the recommended set-up: the documented backup
// role, which may not set retention at all (s3:PutObjectRetention denied), on a bucket whose
// default retention locks every upload. Lifeboat then must not set a lock itself, and the role
// cannot lock anything (junk it planted included) for longer.
func TestStrictBackupRoleWithDefaultRetention(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "vault-default"
	srv.CreateBucket(t, bucket, true)
	root := srv.Client(t)
	ctx := t.Context()
	_, err := root.PutObjectLockConfiguration(ctx, &s3api.PutObjectLockConfigurationInput{Bucket: aws.String(bucket),
		ObjectLockConfiguration: &types.ObjectLockConfiguration{
			ObjectLockEnabled: types.ObjectLockEnabledEnabled,
			Rule: &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{
				Mode: types.ObjectLockRetentionModeCompliance, Days: aws.Int32(1)}},
		}})
	if err != nil {
		t.Fatalf("set default retention: %v", err)
	}
	srv.CreateUser(t, backupUser, backupSecret, "lifeboat-backup", s3test.BackupRolePolicy(bucket))

	be := openBackend(t, srv, bucket, backupUser, backupSecret, "", 0)
	const name, key = "snapshots/one", "repo/snapshots/one"
	start := time.Now()
	if err := putBytes(t, be, name, []byte("manifest")); err != nil {
		t.Fatalf("put under default retention: %v", err)
	}
	until, mode, err := be.(storage.Retainer).Retention(ctx, name)
	if err != nil || mode != LockCompliance || until.Before(start.Add(23*time.Hour)) || until.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("retention from the bucket default = %v %q %v, want COMPLIANCE about a day on", until, mode, err)
	}
	re := wantRetained(t, "delete under default retention", be.Delete(ctx, name))
	if !re.Until.Equal(until) || re.Mode != LockCompliance || re.Name != name {
		t.Fatalf("retained error = %+v, want %v %s", re, until, LockCompliance)
	}
	locking := openBackend(t, srv, bucket, backupUser, backupSecret, "compliance", time.Hour)
	if err := putBytes(t, locking, "snapshots/two", []byte("x")); !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("put with a lock without s3:PutObjectRetention: err = %v, want ErrPermission", err)
	}
	_, err = srv.ClientAs(t, backupUser, backupSecret).PutObjectRetention(ctx, &s3api.PutObjectRetentionInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Retention:         &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: aws.Time(until.Add(24 * time.Hour))},
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	wantAPIError(t, "extend retention with the strict role", err, "AccessDenied")
	// A compromised backup host overwriting with junk it locks for years: refused. A plain
	// overwrite is stored, as a new version under the bucket's one-day default, over the
	// original, which stays.
	user := srv.ClientAs(t, backupUser, backupSecret)
	_, err = user.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("junk"),
		ObjectLockMode: types.ObjectLockModeCompliance, ObjectLockRetainUntilDate: aws.Time(time.Now().AddDate(10, 0, 0)),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	wantAPIError(t, "an upload locked for ten years by the strict role", err, "AccessDenied")
	if _, err := user.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("junk")}); err != nil {
		t.Fatalf("raw overwrite as the strict role: %v (MinIO refused it: update docs/storage.md)", err)
	}
	junkUntil, _, err := be.(storage.Retainer).Retention(ctx, name)
	if err != nil || junkUntil.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("retention of the overwrite = %v %v, want the bucket's one day", junkUntil, err)
	}
	if ids, _ := versionsOf(t, root, bucket, key); len(ids) != 2 || string(getVersion(t, root, bucket, key, ids[1])) != "manifest" {
		t.Fatalf("versions after the overwrite = %q, want the original kept under the new one", ids)
	}
}

func TestObjectLockCompliance(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "locked", true)
	srv.CreateBucket(t, "unlocked", false)
	ctx := t.Context()

	_, err := New(ctx, Options{Bucket: "unlocked", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, LockMode: "compliance", RetainFor: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "no object lock") || !storage.IsPermanent(err) {
		t.Fatalf("open a bucket without object lock with a lock mode: err = %v", err)
	}

	be := openBackend(t, srv, "locked", "", "", "compliance", time.Hour)
	ret := be.(storage.Retainer)
	const name = "data/cd/pack"
	before := time.Now()
	if err := putBytes(t, be, name, []byte("locked pack")); err != nil {
		t.Fatalf("put under compliance lock: %v", err)
	}
	after := time.Now()
	until, mode, err := ret.Retention(ctx, name)
	if err != nil || mode != LockCompliance {
		t.Fatalf("retention = %v %q %v, want COMPLIANCE", until, mode, err)
	}
	// The store keeps milliseconds.
	if until.Before(before.Add(time.Hour).Add(-time.Millisecond)) || until.After(after.Add(time.Hour)) {
		t.Fatalf("retained until %v, want an hour after the put (%v .. %v)", until, before, after)
	}

	re := wantRetained(t, "delete under compliance lock", be.Delete(ctx, name))
	if !re.Until.Equal(until) || re.Mode != LockCompliance || re.Name != name {
		t.Fatalf("retained error = %+v, want until %v", re, until)
	}
	if got := mustGet(t, be, name); string(got) != "locked pack" {
		t.Fatalf("object after a refused delete = %q", got)
	}

	later := time.Now().Add(2 * time.Hour)
	if err := ret.ExtendRetention(ctx, name, later); err != nil {
		t.Fatalf("extend retention: %v", err)
	}
	got, mode, err := ret.Retention(ctx, name)
	if err != nil || mode != LockCompliance || !got.Equal(later.Truncate(time.Millisecond)) {
		t.Fatalf("retention after extending to %v = %v %q %v", later, got, mode, err)
	}
	if err := ret.ExtendRetention(ctx, name, time.Now().Add(30*time.Minute)); err != nil {
		t.Fatalf("extend retention to an earlier date: %v, want a no-op", err)
	}
	if err := ret.ExtendRetention(ctx, name, later); err != nil {
		t.Fatalf("extend retention to the same date: %v, want a no-op", err)
	}
	if got2, _, _ := ret.Retention(ctx, name); !got2.Equal(got) {
		t.Fatalf("retention moved from %v to %v by a shorter date", got, got2)
	}

	// Retention of an object without a lock, and of a missing one.
	plain := openBackend(t, srv, "unlocked", "", "", "", 0)
	if err := putBytes(t, plain, "config", []byte("c")); err != nil {
		t.Fatal(err)
	}
	if until, mode, err := plain.(storage.Retainer).Retention(ctx, "config"); !until.IsZero() || mode != "" || err != nil {
		t.Fatalf("retention of an unlocked object = %v %q %v, want zero", until, mode, err)
	}
	if err := plain.(storage.Retainer).ExtendRetention(ctx, "config", later); err == nil || !storage.IsPermanent(err) {
		t.Fatalf("extend retention of an unlocked object without a lock mode: err = %v", err)
	}
	if _, _, err := ret.Retention(ctx, "data/cd/missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("retention of a missing object: err = %v, want ErrNotFound", err)
	}
}

// TestObjectLockExpires deletes an object once its lock has passed: nothing of it may stay
// behind, neither the version nor a delete marker.
func TestObjectLockExpires(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "short", true)
	be := openBackend(t, srv, "short", "", "", "COMPLIANCE", 2*time.Second)
	ctx := t.Context()
	const name, key = "wal/000000010000000000000001", "repo/wal/000000010000000000000001"
	if err := putBytes(t, be, name, []byte("segment")); err != nil {
		t.Fatal(err)
	}
	re := wantRetained(t, "delete before the date", be.Delete(ctx, name))
	time.Sleep(time.Until(re.Until) + 100*time.Millisecond)
	if err := be.Delete(ctx, name); err != nil {
		t.Fatalf("delete after the retention passed: %v", err)
	}
	if _, err := be.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("stat after delete: err = %v, want ErrNotFound", err)
	}
	if ids, markers := versionsOf(t, srv.Client(t), "short", key); len(ids) != 0 || markers != 0 {
		t.Fatalf("after delete the store holds versions %q and %d delete markers, want nothing", ids, markers)
	}
	if err := putBytes(t, be, name, []byte("again")); err != nil {
		t.Fatalf("put of a deleted name: %v", err)
	}
}

func TestDeleteOnVersionedBucket(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "versioned", false)
	root := srv.Client(t)
	enableVersioning(t, root, "versioned")
	be := openBackend(t, srv, "versioned", "", "", "", 0)
	ctx := t.Context()
	for _, n := range []string{"index/a", "index/b"} {
		if err := putBytes(t, be, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := be.Delete(ctx, "index/a"); err != nil {
		t.Fatalf("delete on a versioned bucket: %v", err)
	}
	if ids, markers := versionsOf(t, root, "versioned", "repo/index/a"); len(ids) != 0 || markers != 0 {
		t.Fatalf("after delete the store holds versions %q and %d delete markers, want nothing", ids, markers)
	}
	if err := be.Delete(ctx, "index/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: err = %v, want ErrNotFound", err)
	}
	if got := mustGet(t, be, "index/b"); string(got) != "index/b" {
		t.Fatalf("neighbour after delete = %q", got)
	}
}

// TestExpireRole checks the expire credential: it deletes what has expired and extends what is
// kept, but cannot bypass governance, and a legal hold stops its deletes.
func TestExpireRole(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "expire"
	srv.CreateBucket(t, bucket, true)
	srv.CreateUser(t, expireUser, expireSecret, "lifeboat-expire", s3test.ExpireRolePolicy(bucket))
	ctx := t.Context()
	long := openBackend(t, srv, bucket, "", "", "governance", time.Hour)
	short := openBackend(t, srv, bucket, "", "", "governance", 2*time.Second)
	exp := openBackend(t, srv, bucket, expireUser, expireSecret, "", 0)
	user := srv.ClientAs(t, expireUser, expireSecret)

	if err := putBytes(t, long, "data/ee/kept", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	re := wantRetained(t, "delete under governance as the expire role", exp.Delete(ctx, "data/ee/kept"))
	if re.Mode != LockGovernance {
		t.Fatalf("retained error mode = %q, want GOVERNANCE", re.Mode)
	}
	_, err := user.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("repo/data/ee/kept"),
		VersionId: aws.String(headVersion(t, user, bucket, "repo/data/ee/kept")), BypassGovernanceRetention: aws.Bool(true)})
	wantAPIError(t, "delete with governance bypass as the expire role", err, "AccessDenied")
	target := re.Until.Add(24 * time.Hour)
	if err := exp.(storage.Retainer).ExtendRetention(ctx, "data/ee/kept", target); err != nil {
		t.Fatalf("extend retention as the expire role: %v", err)
	}
	if until, mode, err := exp.(storage.Retainer).Retention(ctx, "data/ee/kept"); err != nil || mode != LockGovernance || !until.Equal(target) {
		t.Fatalf("retention after extending = %v %q %v, want %v GOVERNANCE", until, mode, err, target)
	}

	for _, n := range []string{"data/ee/old", "data/ee/held"} {
		if err := putBytes(t, short, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = user.PutObjectLegalHold(ctx, &s3api.PutObjectLegalHoldInput{Bucket: aws.String(bucket), Key: aws.String("repo/data/ee/held"),
		LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOn}, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	if err != nil {
		t.Fatalf("legal hold as the expire role: %v", err)
	}
	until, _, err := exp.(storage.Retainer).Retention(ctx, "data/ee/old")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(until) + 100*time.Millisecond)
	if err := exp.Delete(ctx, "data/ee/old"); err != nil {
		t.Fatalf("delete of an expired object as the expire role: %v", err)
	}
	if ids, markers := versionsOf(t, srv.Client(t), bucket, "repo/data/ee/old"); len(ids) != 0 || markers != 0 {
		t.Fatalf("after delete the store holds versions %q and %d delete markers, want nothing", ids, markers)
	}
	re = wantRetained(t, "delete under legal hold", exp.Delete(ctx, "data/ee/held"))
	if re.Mode != legalHoldMode || !re.Until.IsZero() {
		t.Fatalf("retained error for a legal hold = %+v", re)
	}
}

func headVersion(t *testing.T, c *s3api.Client, bucket, key string) string {
	t.Helper()
	out, err := c.HeadObject(t.Context(), &s3api.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("head %s/%s: %v", bucket, key, err)
	}
	return aws.ToString(out.VersionId)
}

// TestConformanceObjectLock runs the storage contract on object-locked buckets with every object
// put under a one-second governance lock. The contract's Delete test deletes at once, which a lock
// forbids; waitOutRetention checks that refusal and then waits the second out. Objects of more
// than 512 KiB go up as multipart uploads, so that both kinds of upload are checked on a
// versioned, locked bucket.
func TestConformanceObjectLock(t *testing.T) {
	srv := s3test.Start(t)
	n := 0
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		n++
		bucket := sanitizeBucket("locked-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), n)
		srv.CreateBucket(t, bucket, true)
		t.Cleanup(func() { noUploadsLeft(t, srv, bucket) })
		be, err := New(context.Background(), Options{Bucket: bucket, Prefix: "repo", Endpoint: srv.Endpoint, Region: srv.Region,
			PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, LockMode: "GOVERNANCE", RetainFor: time.Second,
			MultipartThreshold: 512 << 10, PartSize: MinPartSize})
		if err != nil {
			t.Fatal(err)
		}
		return waitOutRetention{Backend: be, t: t, retainFor: time.Second}
	})
}

// waitOutRetention makes Delete wait for a lock to pass, after checking that the backend
// refused the early delete with a date no further away than the lock's length.
type waitOutRetention struct {
	storage.Backend
	t         *testing.T
	retainFor time.Duration
}

func (w waitOutRetention) Delete(ctx context.Context, name string) error {
	err := w.Backend.Delete(ctx, name)
	var re *storage.RetainedError
	if !errors.As(err, &re) {
		return err
	}
	if !storage.IsPermanent(err) || re.Mode != LockGovernance || re.Name != name {
		w.t.Errorf("delete %s under a lock: %v (mode %q), want a permanent GOVERNANCE RetainedError", name, err, re.Mode)
	}
	wait := time.Until(re.Until)
	if wait <= 0 || wait > w.retainFor {
		w.t.Errorf("delete %s: retained until %v, %v from now, want within %v", name, re.Until, wait, w.retainFor)
	}
	time.Sleep(wait + 50*time.Millisecond)
	return w.Backend.Delete(ctx, name)
}
