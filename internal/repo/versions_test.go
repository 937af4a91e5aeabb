package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/asof"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
	"github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// versionedSite is a repository on a versioned MinIO bucket, reached with
// the documented roles.
type versionedSite struct {
	srv    *s3test.Server
	bucket string
	sec    Secret
}

func newVersionedSite(t *testing.T, bucket string) *versionedSite {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, bucket, false)
	srv.EnableVersioning(t, bucket)
	srv.CreateUser(t, "backup", "backup-secret", "lifeboat-backup", s3test.BackupRolePolicy(bucket))
	srv.CreateUser(t, "expire", "expire-secret", "lifeboat-expire", s3test.ExpireRolePolicy(bucket))
	s := &versionedSite{srv: srv, bucket: bucket, sec: testSecret(t)}
	if _, err := Init(t.Context(), s.as(t, "backup"), s.sec, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// as connects as a role, through the retry decorator as the service does.
func (s *versionedSite) as(t *testing.T, role string) storage.Backend {
	t.Helper()
	be, err := s3.New(t.Context(), s3.Options{Bucket: s.bucket, Prefix: "repo", Endpoint: s.srv.Endpoint, Region: s.srv.Region,
		PathStyle: true, AccessKey: role, SecretKey: role + "-secret"})
	if err != nil {
		t.Fatal(err)
	}
	return retry.New(be, retry.Options{})
}

// open opens the repository on be, logging into logs when not nil.
func (s *versionedSite) open(t *testing.T, be storage.Backend, logs *bytes.Buffer) *Repository {
	t.Helper()
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, nil))
	}
	r, err := Open(t.Context(), be, s.sec, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// overwrite replaces the object name as a put-only credential can: a raw
// PutObject without If-None-Match.
func (s *versionedSite) overwrite(t *testing.T, name string) {
	t.Helper()
	c := s.srv.ClientAs(t, "backup", "backup-secret")
	if _, err := c.PutObject(t.Context(), &s3api.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("repo/" + name),
		Body: strings.NewReader("overwritten by " + name)}); err != nil {
		t.Fatalf("overwrite %s: %v", name, err)
	}
}

func firstName(t *testing.T, be storage.Backend, prefix string) string {
	t.Helper()
	names, err := listNames(t.Context(), be, prefix)
	if err != nil || len(names) == 0 {
		t.Fatalf("list %s: %v %v", prefix, names, err)
	}
	return names[0]
}

// restoreAndCompare restores the only snapshot of asset db and compares
// it with files.
func restoreAndCompare(t *testing.T, r *Repository, files map[string][]byte) {
	t.Helper()
	snaps, err := r.Snapshots(t.Context(), "db")
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots = %d, %v; want 1", len(snaps), err)
	}
	dir := filepath.Join(t.TempDir(), "restore")
	if _, err := restoreTo(t, r, snaps[0], false, dir); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, "dir", p))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("restored %s: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
		}
	}
}

const walName = "000000010000000000000001"

// TestOverwrittenObjectsComeBack: the backup role overwrites a pack, an
// index object, a snapshot manifest and a WAL file. Reads use the
// earlier, authentic versions and say so; verify names each object and
// its version; the expire role's repair makes them current again, and
// verify is then clean. A credential that may not read versions fails as
// without versions, and says why.
func TestOverwrittenObjectsComeBack(t *testing.T) {
	t.Parallel()
	s := newVersionedSite(t, "overwritten")
	ctx := t.Context()
	files := map[string][]byte{"a": compressible(200<<10, 1), "b": compressible(30<<10, 2)}
	wal := compressible(64<<10, 3)
	w := s.open(t, s.as(t, "backup"), nil)
	backupFiles(t, w, "db", files)
	if _, err := w.PutNamed(ctx, "wal", "db", walName, wal, CodecZstd); err != nil {
		t.Fatal(err)
	}
	be := s.as(t, "backup")
	ids, err := w.SnapshotIDs(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatal(ids, err)
	}
	attacked := []string{firstName(t, be, "data/"), firstName(t, be, "index/"), "snapshots/" + ids[0].String(), "wal/db/" + walName}
	slices.Sort(attacked)
	for _, n := range attacked {
		s.overwrite(t, n)
	}

	// A new process, as a restore is.
	var logs bytes.Buffer
	r := s.open(t, s.as(t, "backup"), &logs)
	restoreAndCompare(t, r, files)
	if got, err := r.GetNamed(ctx, "wal", "db", walName); err != nil || !bytes.Equal(got, wal) {
		t.Fatalf("WAL after the overwrite: %d bytes, %v", len(got), err)
	}
	var met []string
	for _, o := range r.OverwrittenSince(0) {
		met = append(met, o.Name)
		if o.Version == "" || o.Stored.IsZero() || o.Reason == "" {
			t.Errorf("overwritten object recorded without its version: %+v", o)
		}
	}
	if !slices.Equal(met, attacked) {
		t.Fatalf("objects read from earlier versions = %v, want %v", met, attacked)
	}
	for _, n := range attacked {
		if !strings.Contains(logs.String(), "read an earlier version") || !strings.Contains(logs.String(), n) {
			t.Fatalf("no warning names %s:\n%s", n, logs.String())
		}
	}

	rep, err := r.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, o := range rep.Overwritten {
		listed = append(listed, o.Name)
		if o.Version == "" {
			t.Errorf("verify found no authentic version of %s", o.Name)
		}
	}
	if !slices.Equal(listed, attacked) || len(rep.Problems) != len(attacked) || rep.VersionsUnchecked != "" {
		t.Fatalf("verify listed %v (unchecked %q), problems %q; want %v", listed, rep.VersionsUnchecked, rep.Problems, attacked)
	}
	for _, pr := range rep.Problems {
		if !strings.Contains(pr, "lifeboat verify --repair") {
			t.Errorf("problem %q does not say how to repair", pr)
		}
	}

	// Without the right to read versions (on AWS, a role without
	// s3:ListBucketVersions; MinIO's policies cannot grant reading
	// objects but not their versions, so the store's refusal is
	// injected): the reads fail as they would without versions, and the
	// warning says which rights are missing.
	var blindLogs bytes.Buffer
	blind := s.open(t, deniedVersions{s.as(t, "backup")}, &blindLogs)
	if _, err := blind.GetNamed(ctx, "wal", "db", walName); !errors.Is(err, ErrUnauthentic) {
		t.Fatalf("WAL read without the right to read versions: %v, want ErrUnauthentic", err)
	}
	if !strings.Contains(blindLogs.String(), "s3:ListBucketVersions") {
		t.Fatalf("no warning names the missing right:\n%s", blindLogs.String())
	}

	// The repair, with the expire role.
	admin := s.open(t, s.as(t, "expire"), nil)
	done, left, err := admin.RepairVersions(ctx)
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	var repaired []string
	for _, d := range done {
		repaired = append(repaired, d.Name)
	}
	if !slices.Equal(repaired, attacked) || len(left.Overwritten) != 0 {
		t.Fatalf("repaired %v, left %v; want %v", repaired, left.Overwritten, attacked)
	}
	after := s.open(t, s.as(t, "backup"), nil)
	rep, err = after.Verify(ctx, VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() || len(rep.Overwritten) != 0 {
		t.Fatalf("verify after the repair: %v %v", rep.Problems, err)
	}
	restoreAndCompare(t, after, files)
	if o := after.OverwrittenSince(0); len(o) != 0 {
		t.Fatalf("after the repair, objects still read from earlier versions: %v", o)
	}
	// Nothing was deleted: the junk is still stored, as an earlier version.
	v, _ := storage.Capability[storage.Versioned](s.as(t, "expire"))
	for _, n := range attacked {
		if vers, err := storage.Versions(ctx, v, n); err != nil || len(vers) != 3 {
			t.Errorf("versions of %s after the repair: %d, %v; want 3", n, len(vers), err)
		}
	}
}

// TestRepositoryAsOf: a repository read as of a time sees its snapshots
// as they were, before a later overwrite and a later delete, and not a
// snapshot taken after it; a store without versions refuses.
func TestRepositoryAsOf(t *testing.T) {
	t.Parallel()
	s := newVersionedSite(t, "as-of")
	ctx := t.Context()
	files := map[string][]byte{"a": compressible(100<<10, 4)}
	w := s.open(t, s.as(t, "backup"), nil)
	first := backupFiles(t, w, "db", files)
	at := time.Now().Truncate(time.Millisecond)
	for !time.Now().After(at.Add(time.Millisecond)) {
		time.Sleep(100 * time.Microsecond)
	}
	s.overwrite(t, firstName(t, s.as(t, "backup"), "data/"))
	admin := s.srv.ClientAs(t, "expire", "expire-secret")
	if _, err := admin.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(s.bucket),
		Key: aws.String("repo/snapshots/" + first.ID.String())}); err != nil {
		t.Fatal(err)
	}
	later := s.open(t, s.as(t, "backup"), nil)
	backupFiles(t, later, "db", map[string][]byte{"a": compressible(10<<10, 5)})

	view, err := asof.New(ctx, s.as(t, "backup"), at)
	if err != nil {
		t.Fatal(err)
	}
	past := s.open(t, view, nil)
	restoreAndCompare(t, past, files)
	if o := past.OverwrittenSince(0); len(o) != 0 {
		t.Fatalf("as of before the overwrite, objects were read from earlier versions: %v", o)
	}
	if !strings.Contains(past.Location(), "as of "+at.UTC().Format(time.RFC3339)) {
		t.Errorf("location %q does not say as of when", past.Location())
	}

	fsBe, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = asof.New(ctx, fsBe, at)
	if !errors.Is(err, asof.ErrNoVersions) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("as of on a directory: %v, want one line matching ErrNoVersions", err)
	}
}

// deniedVersions is a backend whose store refuses every look at versions,
// as S3 does a credential without s3:ListBucketVersions.
type deniedVersions struct{ storage.Backend }

func (deniedVersions) Versioning(context.Context) (storage.Versioning, error) {
	return storage.VersioningEnabled, nil
}

func (deniedVersions) ListVersions(_ context.Context, prefix string, _ func(storage.Version) error) error {
	return storage.Permanent(fmt.Errorf("list versions of %s: %w (injected)", prefix, storage.ErrPermission))
}

func (deniedVersions) GetVersion(_ context.Context, name, _ string) (io.ReadCloser, error) {
	return nil, storage.Permanent(fmt.Errorf("get %s: %w (injected)", name, storage.ErrPermission))
}

func (d deniedVersions) GetVersionRange(ctx context.Context, name, id string, _, _ int64) (io.ReadCloser, error) {
	return d.GetVersion(ctx, name, id)
}

func (deniedVersions) RestoreVersion(_ context.Context, name, _ string) error {
	return storage.Permanent(fmt.Errorf("restore %s: %w (injected)", name, storage.ErrPermission))
}
