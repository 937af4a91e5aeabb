package s3

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/asof"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
)

// readOf reads what a call opened, failing t on an error.
func readOf(t *testing.T) func(io.ReadCloser, error) []byte {
	return func(rc io.ReadCloser, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
}

// waitPast returns a moment the store's clock (this host's) has passed,
// at the millisecond the store keeps, so that what is stored from now on
// is stored after it.
func waitPast(t *testing.T) time.Time {
	t.Helper()
	at := time.Now().Truncate(time.Millisecond)
	for !time.Now().After(at.Add(time.Millisecond)) {
		time.Sleep(100 * time.Microsecond)
	}
	return at
}

// TestVersions: a raw overwrite (as a put-only credential can send) and a
// delete leave earlier versions that the backend lists, in order, reads
// and makes current again, as the documented roles allow.
func TestVersions(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	const bucket = "versioned"
	srv.CreateBucket(t, bucket, false)
	srv.CreateBucket(t, "plain", false)
	srv.EnableVersioning(t, bucket)
	srv.CreateUser(t, backupUser, backupSecret, "lifeboat-backup", s3test.BackupRolePolicy(bucket))
	srv.CreateUser(t, expireUser, expireSecret, "lifeboat-expire", s3test.ExpireRolePolicy(bucket))
	ctx := t.Context()
	// Found through the retry decorator, as the repository finds it.
	be := retry.New(openBackend(t, srv, bucket, backupUser, backupSecret, "", 0), retry.Options{})
	v, ok := storage.Capability[storage.Versioned](be)
	if !ok {
		t.Fatal("the s3 backend behind retry is not storage.Versioned")
	}
	if st, err := v.Versioning(ctx); err != nil || st != storage.VersioningEnabled {
		t.Fatalf("versioning as the backup role = %q %v", st, err)
	}
	plain, _ := storage.Capability[storage.Versioned](openBackend(t, srv, "plain", "", "", "", 0))
	if st, err := plain.Versioning(ctx); err != nil || st != storage.VersioningOff {
		t.Fatalf("versioning of a bucket that never had it = %q %v", st, err)
	}

	original := []byte("the one true pack")
	for _, n := range []string{"data/ab/pack", "data/ab/pack2", "index/i"} {
		if err := putBytes(t, be, n, original); err != nil {
			t.Fatal(err)
		}
	}
	before := waitPast(t)
	attacker := srv.ClientAs(t, backupUser, backupSecret)
	for _, junk := range []string{"junk one", "junk two"} {
		if _, err := attacker.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("repo/data/ab/pack"),
			Body: strings.NewReader(junk)}); err != nil {
			t.Fatalf("raw overwrite: %v", err)
		}
	}
	admin := srv.ClientAs(t, expireUser, expireSecret)
	if _, err := admin.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("repo/index/i")}); err != nil {
		t.Fatalf("delete leaving a marker: %v", err)
	}

	var got []storage.Version
	if err := v.ListVersions(ctx, "", func(ver storage.Version) error { got = append(got, ver); return nil }); err != nil {
		t.Fatal(err)
	}
	type short struct {
		name         string
		size         int64
		latest, mark bool
	}
	var brief []short
	for _, g := range got {
		brief = append(brief, short{g.Name, g.Size, g.Latest, g.DeleteMarker})
	}
	want := []short{
		{"data/ab/pack", 8, true, false}, {"data/ab/pack", 8, false, false}, {"data/ab/pack", int64(len(original)), false, false},
		{"data/ab/pack2", int64(len(original)), true, false},
		{"index/i", 0, true, true}, {"index/i", int64(len(original)), false, false},
	}
	if len(brief) != len(want) {
		t.Fatalf("versions = %+v, want %+v", brief, want)
	}
	for i := range want {
		if brief[i] != want[i] {
			t.Fatalf("version %d = %+v, want %+v (all: %+v)", i, brief[i], want[i], brief)
		}
	}
	vers, err := storage.Versions(ctx, v, "data/ab/pack")
	if err != nil || len(vers) != 3 {
		t.Fatalf("versions of data/ab/pack = %+v %v, want 3 (not those of data/ab/pack2)", vers, err)
	}
	first := vers[2]
	if !first.ModTime.Before(vers[0].ModTime) && !first.ModTime.Equal(vers[0].ModTime) {
		t.Errorf("versions not newest first: %+v", vers)
	}
	if data := readOf(t)(v.GetVersion(ctx, "data/ab/pack", first.ID)); !bytes.Equal(data, original) {
		t.Fatalf("original version = %q", data)
	}
	if data := readOf(t)(v.GetVersionRange(ctx, "data/ab/pack", first.ID, 4, 3)); string(data) != "one" {
		t.Fatalf("range of the original version = %q", data)
	}
	if _, err := v.GetVersionRange(ctx, "data/ab/pack", first.ID, 10, 100); err == nil || !storage.IsPermanent(err) {
		t.Fatalf("range past the end of a version: %v, want a permanent error", err)
	}
	if _, err := v.GetVersion(ctx, "data/ab/pack", "00000000-0000-0000-0000-000000000000"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a version that does not exist: %v, want ErrNotFound", err)
	}

	// As of before the attack, the pack and the index object read as
	// they were; as of now, the index object is gone.
	past, err := asof.New(ctx, be, before)
	if err != nil {
		t.Fatal(err)
	}
	if data := mustGet(t, past, "data/ab/pack"); !bytes.Equal(data, original) {
		t.Fatalf("pack as of before the overwrite = %q", data)
	}
	var names []string
	if err := past.List(ctx, "", func(oi storage.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "data/ab/pack data/ab/pack2 index/i" {
		t.Fatalf("listing as of before = %v", names)
	}
	if err := past.Put(ctx, "x", bytes.NewReader(nil), 0); !errors.Is(err, asof.ErrReadOnly) {
		t.Fatalf("put as of a past time: %v, want ErrReadOnly", err)
	}
	now, err := asof.New(ctx, be, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := now.Stat(ctx, "index/i"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted object as of now: %v, want ErrNotFound", err)
	}
	if data := mustGet(t, now, "data/ab/pack"); string(data) != "junk two" {
		t.Fatalf("pack as of now = %q", data)
	}
	ancient, err := asof.New(ctx, be, before.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ancient.List(ctx, "", func(oi storage.ObjectInfo) error { return errors.New("listed " + oi.Name) }); err != nil {
		t.Fatalf("listing before anything was stored: %v", err)
	}
	if _, err := asof.New(ctx, openBackend(t, srv, "plain", "", "", "", 0), before); !errors.Is(err, asof.ErrNoVersions) {
		t.Fatalf("as of on a bucket without versioning: %v, want ErrNoVersions", err)
	}

	// The expire role makes the original current again; nothing is
	// deleted.
	av, _ := storage.Capability[storage.Versioned](openBackend(t, srv, bucket, expireUser, expireSecret, "", 0))
	if err := av.RestoreVersion(ctx, "data/ab/pack", first.ID); err != nil {
		t.Fatalf("restore the original version as the expire role: %v", err)
	}
	if data := mustGet(t, be, "data/ab/pack"); !bytes.Equal(data, original) {
		t.Fatalf("pack after the repair = %q", data)
	}
	if vers, _ := storage.Versions(ctx, v, "data/ab/pack"); len(vers) != 4 {
		t.Fatalf("versions after the repair = %+v, want the three kept and one more", vers)
	}
}

// TestRestoreVersionUnderLock: on a bucket with object lock, the version
// made current again is locked like any upload, by the bucket's default
// retention or by the backend's lock mode.
func TestRestoreVersionUnderLock(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	const bucket = "locked-versions"
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
		t.Fatal(err)
	}
	srv.CreateUser(t, expireUser, expireSecret, "lifeboat-expire", s3test.ExpireRolePolicy(bucket))
	plainBe := openBackend(t, srv, bucket, expireUser, expireSecret, "", 0)
	lockingBe := openBackend(t, srv, bucket, expireUser, expireSecret, "compliance", 72*time.Hour)
	for _, tc := range []struct {
		name    string
		be      storage.Backend
		atLeast time.Duration
	}{{"snapshots/default", plainBe, 23 * time.Hour}, {"snapshots/locked", lockingBe, 71 * time.Hour}} {
		if err := putBytes(t, tc.be, tc.name, []byte("manifest")); err != nil {
			t.Fatal(err)
		}
		if _, err := root.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("repo/" + tc.name),
			Body: strings.NewReader("junk"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c}); err != nil {
			t.Fatal(err)
		}
		v := tc.be.(storage.Versioned)
		vers, err := storage.Versions(ctx, v, tc.name)
		if err != nil || len(vers) != 2 {
			t.Fatalf("versions of %s = %+v %v", tc.name, vers, err)
		}
		start := time.Now()
		if err := v.RestoreVersion(ctx, tc.name, vers[1].ID); err != nil {
			t.Fatalf("restore %s under object lock: %v", tc.name, err)
		}
		if data := mustGet(t, tc.be, tc.name); string(data) != "manifest" {
			t.Fatalf("%s after the repair = %q", tc.name, data)
		}
		until, mode, err := tc.be.(storage.Retainer).Retention(ctx, tc.name)
		if err != nil || mode != LockCompliance || until.Before(start.Add(tc.atLeast)) {
			t.Fatalf("retention of the repaired %s = %v %q %v, want COMPLIANCE at least %v on", tc.name, until, mode, err, tc.atLeast)
		}
	}
}
