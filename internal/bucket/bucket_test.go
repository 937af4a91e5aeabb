package bucket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// The tests below run against one real MinIO, each in buckets of its own,
// and against real repositories in temporary directories.

var bucketSeq atomic.Int64

// env is one MinIO server shared by the subtests of TestMinIO.
type env struct {
	srv *s3test.Server
	c   *s3.Client
}

// newBucket creates a bucket with a fresh name.
func (e *env) newBucket(t *testing.T, base string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", base, bucketSeq.Add(1))
	e.srv.CreateBucket(t, name, false)
	return name
}

// obj is an object to put, with what a backup must keep of it.
type obj struct {
	key     string
	body    []byte
	ctype   string
	disp    string
	cache   string
	enc     string
	lang    string
	meta    map[string]string
	tags    map[string]string
	expires string
}

func (e *env) put(t *testing.T, bucket string, o obj) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(o.key), Body: bytes.NewReader(o.body),
		ContentType: nonEmpty(o.ctype), ContentDisposition: nonEmpty(o.disp), CacheControl: nonEmpty(o.cache),
		ContentEncoding: nonEmpty(o.enc), ContentLanguage: nonEmpty(o.lang), Metadata: o.meta, Tagging: tagging(o.tags)}
	if o.expires != "" {
		tm, err := http.ParseTime(o.expires)
		if err != nil {
			t.Fatal(err)
		}
		in.Expires = &tm
	}
	if _, err := e.c.PutObject(t.Context(), in); err != nil {
		t.Fatalf("put %q: %v", o.key, err)
	}
}

func (e *env) delete(t *testing.T, bucket, key string) {
	t.Helper()
	if _, err := e.c.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
}

// state is what a bucket prefix holds, by key relative to the prefix.
func (e *env) state(t *testing.T, bucket, prefix string) map[string]Object {
	t.Helper()
	out := map[string]Object{}
	p := s3.NewListObjectsV2Paginator(e.c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix),
		EncodingType: types.EncodingTypeUrl})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			key, err := url.QueryUnescape(aws.ToString(o.Key))
			if err != nil {
				t.Fatal(err)
			}
			g, err := e.c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(g.Body)
			g.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			var got Object
			fillHeaders(&got, g.ContentLength, g.ETag, g.LastModified, g.ContentType, g.ContentEncoding, g.ContentDisposition,
				g.ContentLanguage, g.CacheControl, g.ExpiresString, g.WebsiteRedirectLocation, g.Metadata, g.StorageClass, g.VersionId)
			sum := sha256.Sum256(body)
			got.SHA256 = fmt.Sprintf("%x", sum)
			tg, err := e.c.GetObjectTagging(t.Context(), &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatal(err)
			}
			for _, tag := range tg.TagSet {
				if got.Tags == nil {
					got.Tags = map[string]string{}
				}
				got.Tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			got.setKey(strings.TrimPrefix(key, prefix))
			out[strings.TrimPrefix(key, prefix)] = got
		}
	}
	return out
}

// sameObjects fails unless two states hold the same keys with the same
// content, headers, user metadata and tags.
func sameObjects(t *testing.T, want, got map[string]Object) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%q: missing", k)
		case g.SHA256 != w.SHA256 || g.Size != w.Size:
			t.Errorf("%q: content differs", k)
		case len(metaDiff(&w, &g)) > 0:
			t.Errorf("%q: %v differ: %+v, want %+v", k, metaDiff(&w, &g), g, w)
		case !maps.Equal(g.Tags, w.Tags):
			t.Errorf("%q: tags %v, want %v", k, g.Tags, w.Tags)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%q: not in the source", k)
		}
	}
}

// counter counts the content GETs that pass through it (not listings,
// tags or heads), and can act before one is sent.
type counter struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	gets   []string
	before func(key string)
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.URL.Query().Get("x-id") == "GetObject" {
		_, key, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
		c.mu.Lock()
		c.gets = append(c.gets, key)
		before := c.before
		c.mu.Unlock()
		if before != nil {
			before(key)
		}
	}
	return c.rt.RoundTrip(req)
}

func (c *counter) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.gets
	c.gets = nil
	slices.Sort(g)
	return g
}

// newAsset is a bucket asset of bucket/prefix on the server, its requests
// counted by the returned counter.
func (e *env) newAsset(bucket, prefix string) (*policy.Asset, *counter) {
	cnt := &counter{}
	loc, err := ParseLocation(fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&path_style=true", bucket, url.PathEscape(prefix), e.srv.Endpoint, e.srv.Region))
	if err != nil {
		panic(err)
	}
	cfg := &Config{Location: loc, AccessKey: policy.Secret(e.srv.AccessKey), SecretKey: policy.Secret(e.srv.SecretKey),
		wrap: func(rt http.RoundTripper) http.RoundTripper { cnt.rt = rt; return cnt }}
	return &policy.Asset{Name: "uploads", Kind: KindName, Config: cfg}, cnt
}

// backupResult is a backup and what it warned about.
type backupResult struct {
	snap  *repo.Snapshot
	info  *Info
	warns []string
	err   error
}

func runBackup(t *testing.T, a *policy.Asset, r *repo.Repository) backupResult {
	t.Helper()
	var mu sync.Mutex
	var res backupResult
	b := &asset.Backup{Asset: a, Repo: r, Workers: 4, Log: slog.New(slog.DiscardHandler), Progress: func(asset.Progress) {},
		Warn: func(s string) { mu.Lock(); res.warns = append(res.warns, s); mu.Unlock() }}
	res.snap, res.err = NewKind().Backup(t.Context(), b)
	if res.err == nil {
		var err error
		if res.info, err = SnapshotInfo(res.snap); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

func mustBackup(t *testing.T, a *policy.Asset, r *repo.Repository) backupResult {
	t.Helper()
	res := runBackup(t, a, r)
	if res.err != nil {
		t.Fatalf("backup: %v", res.err)
	}
	return res
}

func restore(t *testing.T, a *policy.Asset, r *repo.Repository, s *repo.Snapshot, to string, flags asset.FlagValues) (*asset.Restored, error) {
	t.Helper()
	return NewKind().Restore(t.Context(), &asset.Restore{Asset: a, Repo: r, Snapshot: s, To: to, Workers: 3, UID: -1, GID: -1,
		Flags: flags, Log: slog.New(slog.DiscardHandler), Progress: func(asset.Progress) {}})
}

func random(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// sample is a prefix's worth of objects: keys a file system could not
// take as they are, headers, metadata and tags, empty, small, large and
// multipart-sized content, and a directory marker for the prefix itself.
func sample() []obj {
	return []obj{
		{key: "", body: nil, ctype: "application/x-directory"},
		{key: "a", body: []byte("file a"), ctype: "text/plain"},
		{key: "a/", body: []byte("a marker with content"), ctype: "application/x-directory"},
		{key: "a b", body: []byte("space")},
		{key: "a-", body: []byte("dash")},
		{key: "a.b", body: []byte("dot")},
		{key: "dir/sub/", body: nil},
		{key: "%", body: []byte("percent")},
		{key: "%2E", body: []byte("escaped-looking")},
		{key: "a%", body: []byte("a percent")},
		{key: "\x01ctl", body: []byte("control")},
		{key: "日本/ü.txt", body: []byte("unicode"), ctype: "text/plain; charset=utf-8", lang: "ja"},
		{key: ".lifeboat-bucket-metadata.jsonl", body: []byte("not the sidecar")},
		{key: "docs/report.pdf", body: random(1, 70_000), ctype: "application/pdf", disp: `attachment; filename="report.pdf"`,
			cache: "max-age=3600", enc: "identity", meta: map[string]string{"owner": "user-42", "checksum-note": "a b c"},
			tags: map[string]string{"class": "confidential", "retain": "7y"}, expires: "Wed, 21 Oct 2037 07:28:00 GMT"},
		{key: "docs/empty.txt", body: []byte{}, tags: map[string]string{"empty": "yes"}},
		{key: "media/large.bin", body: random(2, 5<<20+17), ctype: "application/octet-stream", meta: map[string]string{"k": "v"}},
		{key: "media/huge.bin", body: random(3, partSize+3<<20), tags: map[string]string{"size": "huge"}},
	}
}

func TestMinIO(t *testing.T) {
	e := &env{srv: s3test.Start(t)}
	e.c = e.srv.Client(t)
	t.Run("RoundTrip", e.testRoundTrip)
	t.Run("Incremental", e.testIncremental)
	t.Run("RestoreRefusesNonEmpty", e.testRestoreRefusesNonEmpty)
	t.Run("DrillCatchesDamage", e.testDrillCatchesDamage)
	t.Run("BucketVanishes", e.testBucketVanishes)
	t.Run("ObjectVanishes", e.testObjectVanishes)
	t.Run("Versioning", e.testVersioning)
}

func (e *env) testRoundTrip(t *testing.T) {
	t.Parallel()
	src := e.newBucket(t, "roundtrip")
	for _, o := range sample() {
		o.key = "prod/" + o.key
		e.put(t, src, o)
	}
	// Not below the prefix: left out.
	e.put(t, src, obj{key: "prodx", body: []byte("other")})
	e.put(t, src, obj{key: "other/prod/x", body: []byte("other")})
	want := e.state(t, src, "prod/")
	if len(want) != len(sample()) {
		t.Fatalf("the source holds %d objects below prod/, want %d", len(want), len(sample()))
	}
	a, cnt := e.newAsset(src, "prod")
	r := repotest.New(t)
	res := mustBackup(t, a, r)
	if res.info.Objects != int64(len(want)) || res.info.Downloaded != res.info.Objects || res.info.Reused != 0 || !res.info.Tags {
		t.Errorf("info %+v", res.info)
	}
	if got := cnt.reset(); len(got) != len(want) {
		t.Errorf("%d GETs for %d objects", len(got), len(want))
	}
	if len(res.warns) != 0 {
		t.Errorf("warnings: %q", res.warns)
	}

	t.Run("ToBucket", func(t *testing.T) {
		t.Parallel()
		dst := e.newBucket(t, "restored")
		out, err := restore(t, a, r, res.snap, "s3://"+dst+"/copy/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(out.Lines)
		sameObjects(t, want, e.state(t, dst, "copy/"))
	})
	t.Run("ToBucketOnePrefix", func(t *testing.T) {
		t.Parallel()
		dst := e.newBucket(t, "restored")
		if _, err := restore(t, a, r, res.snap, "s3://"+dst, asset.FlagValues{"path": "docs/"}); err != nil {
			t.Fatal(err)
		}
		got := e.state(t, dst, "")
		sub := map[string]Object{}
		for k, o := range want {
			if strings.HasPrefix(k, "docs/") {
				sub[k] = o
			}
		}
		sameObjects(t, sub, got)
		_, err := restore(t, a, r, res.snap, "s3://"+e.newBucket(t, "restored"), asset.FlagValues{"path": "nope"})
		if !errors.Is(err, ErrNotInSnapshot) || !asset.IsUsage(err) {
			t.Errorf("restore of a key not in the snapshot: %v", err)
		}
	})
	t.Run("ToDir", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		if _, err := restore(t, a, r, res.snap, dir, nil); err != nil {
			t.Fatal(err)
		}
		checkDirRestore(t, dir, want)
	})
}

// checkDirRestore checks a directory restore against the source: every
// object a file whose path reads back to its key, with its content, and
// its metadata in the sidecar.
func checkDirRestore(t *testing.T, dir string, want map[string]Object) {
	t.Helper()
	files := map[string]string{} // key -> path
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == sidecarName {
			return nil
		}
		k, err := keyOfLocal(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w, ok := want[k]
		if !ok {
			t.Errorf("%s restored (key %q), not in the source", rel, k)
			return nil
		}
		if fmt.Sprintf("%x", sha256.Sum256(data)) != w.SHA256 {
			t.Errorf("%s: content differs", rel)
		}
		if fi, _ := d.Info(); !fi.ModTime().Equal(w.LastModified) {
			t.Errorf("%s: mtime %v, last modified %v", rel, fi.ModTime(), w.LastModified)
		}
		files[k] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d files restored, want %d", len(files), len(want))
	}
	f, err := os.Open(filepath.Join(dir, sidecarName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	n := 0
	for dec.More() {
		var rec sidecarRecord
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		n++
		k, _ := rec.key()
		w := want[k]
		if files[k] != rec.File {
			t.Errorf("sidecar: %q is at %q, restored at %q", k, rec.File, files[k])
		}
		if rec.SHA256 != w.SHA256 || len(metaDiff(&w, &rec.Object)) > 0 || !maps.Equal(rec.Tags, w.Tags) || rec.ETag != w.ETag {
			t.Errorf("sidecar: %q recorded as %+v, want %+v", k, rec.Object, w)
		}
	}
	if n != len(want) {
		t.Errorf("sidecar: %d records, want %d", n, len(want))
	}
}

func (e *env) testIncremental(t *testing.T) {
	t.Parallel()
	src := e.newBucket(t, "incr")
	var keys []string
	for i := range 40 {
		o := obj{key: fmt.Sprintf("users/%03d/photo.jpg", i), body: random(uint64(i), 20_000+i*1000), ctype: "image/jpeg",
			meta: map[string]string{"n": fmt.Sprint(i)}}
		e.put(t, src, o)
		keys = append(keys, o.key)
	}
	e.put(t, src, obj{key: "big/video.mp4", body: random(99, 6<<20), ctype: "video/mp4"})
	a, cnt := e.newAsset(src, "")
	r := repotest.New(t)
	first := mustBackup(t, a, r)
	if got := cnt.reset(); len(got) != 41 {
		t.Fatalf("first backup: %d GETs, want 41", len(got))
	}

	// One object rewritten, one added, one removed, one given new tags,
	// one written again with the same content and new headers.
	e.put(t, src, obj{key: keys[3], body: random(1000, 25_000), ctype: "image/jpeg"})
	e.put(t, src, obj{key: "users/999/new.txt", body: []byte("new")})
	e.delete(t, src, keys[5])
	if _, err := e.c.PutObjectTagging(t.Context(), &s3.PutObjectTaggingInput{Bucket: aws.String(src), Key: aws.String(keys[7]),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("reviewed"), Value: aws.String("yes")}}}}); err != nil {
		t.Fatal(err)
	}
	e.put(t, src, obj{key: keys[9], body: random(9, 20_000+9*1000), ctype: "image/png", meta: map[string]string{"n": "9"}})

	second := mustBackup(t, a, r)
	gets := cnt.reset()
	if want := []string{keys[3], "users/999/new.txt"}; !slices.Equal(gets, want) {
		t.Errorf("second backup downloaded %q, want %q", gets, want)
	}
	if i := second.info; i.Objects != 41 || i.Reused != 39 || i.Downloaded != 2 || second.snap.Parent == nil || *second.snap.Parent != first.snap.ID {
		t.Errorf("second backup: %+v", i)
	}
	if second.snap.Stats.BytesNew > 64<<10 {
		t.Errorf("second backup stored %d new bytes", second.snap.Stats.BytesNew)
	}
	sameDirAfterRestore(t, e, a, r, second.snap, src)

	// --full downloads everything again, and stores nothing new but the tree.
	full := &asset.Backup{Asset: a, Repo: r, Full: true, Log: slog.New(slog.DiscardHandler), Progress: func(asset.Progress) {}, Warn: func(string) {}}
	snap3, err := NewKind().Backup(t.Context(), full)
	if err != nil {
		t.Fatal(err)
	}
	if got := cnt.reset(); len(got) != 41 {
		t.Errorf("full backup: %d GETs, want 41", len(got))
	}

	res, err := diff(t.Context(), r, first.snap, second.snap)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	res.WriteText(&b, first.snap, second.snap)
	t.Log(b.String())
	wantLines := []string{
		"M users/003/photo.jpg (content, 22.5 KiB -> 24.4 KiB; metadata)",
		"- users/005/photo.jpg",
		"M users/007/photo.jpg (tags)",
		"M users/009/photo.jpg (metadata)",
		"+ users/999/new.txt (3 B)",
		"1 added, 1 removed, 3 changed",
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")[1:]
	if !slices.Equal(lines, wantLines) {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}
	if res, err := diff(t.Context(), r, second.snap, snap3); err != nil || len(res.Changes) != 0 {
		t.Errorf("diff of two backups of an unchanged bucket: %+v, %v", res, err)
	}
}

// sameDirAfterRestore restores s to a directory and compares it with the
// bucket as it is now.
func sameDirAfterRestore(t *testing.T, e *env, a *policy.Asset, r *repo.Repository, s *repo.Snapshot, bucket string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := restore(t, a, r, s, dir, nil); err != nil {
		t.Fatal(err)
	}
	checkDirRestore(t, dir, e.state(t, bucket, ""))
}

func (e *env) testRestoreRefusesNonEmpty(t *testing.T) {
	t.Parallel()
	src := e.newBucket(t, "refuse")
	e.put(t, src, obj{key: "x/one", body: []byte("one")})
	e.put(t, src, obj{key: "x/two", body: []byte("two")})
	a, _ := e.newAsset(src, "x")
	r := repotest.New(t)
	res := mustBackup(t, a, r)

	dst := e.newBucket(t, "target")
	e.put(t, dst, obj{key: "p/one", body: []byte("old")})
	e.put(t, dst, obj{key: "p/keep", body: []byte("keep")})
	if _, err := restore(t, a, r, res.snap, "s3://"+dst+"/p", nil); !asset.IsUsage(err) || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a prefix that is not empty: %v", err)
	}
	if _, err := restore(t, a, r, res.snap, "s3://"+dst+"/p", asset.FlagValues{"overwrite": true}); err != nil {
		t.Fatal(err)
	}
	got := e.state(t, dst, "p/")
	if len(got) != 3 || got["one"].Size != 3 || got["keep"].Size != 4 {
		t.Errorf("after --overwrite the target holds %+v", got)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "someone-elses"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(t, a, r, res.snap, dir, nil); !asset.IsUsage(err) || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a directory that is not empty: %v", err)
	}
	if _, err := restore(t, a, r, res.snap, dir, asset.FlagValues{"overwrite": true}); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "two")); err != nil || string(data) != "two" {
		t.Errorf("two: %q, %v", data, err)
	}
	if _, err := restore(t, a, r, res.snap, "relative/dir", nil); !asset.IsUsage(err) {
		t.Errorf("restore to a relative directory: %v", err)
	}
}

// fakeDrill is the drill handle internal/drill gives a kind.
type fakeDrill struct {
	t       *testing.T
	a       *policy.Asset
	r       *repo.Repository
	work    string
	cleanup []func()
	phases  []string
	checks  []asset.IntegrityCheck
	rep     evidence.DrillReport
}

func (d *fakeDrill) Asset() *policy.Asset   { return d.a }
func (d *fakeDrill) Repo() *repo.Repository { return d.r }
func (d *fakeDrill) Workers() int           { return 3 }
func (d *fakeDrill) Log() *slog.Logger      { return slog.New(slog.NewTextHandler(tlog{d.t}, nil)) }
func (d *fakeDrill) WorkDir() string        { return d.work }
func (d *fakeDrill) Cleanup(f func())       { d.cleanup = append(d.cleanup, f) }
func (d *fakeDrill) PickSnapshot(ctx context.Context) (*repo.Snapshot, error) {
	snaps, err := d.r.Snapshots(ctx, d.a.Name)
	if err != nil || len(snaps) == 0 {
		return nil, fmt.Errorf("no snapshot: %v", err)
	}
	return snaps[len(snaps)-1], nil
}
func (d *fakeDrill) Phase(name string)                                           { d.phases = append(d.phases, name) }
func (d *fakeDrill) Integrity(c asset.IntegrityCheck)                            { d.checks = append(d.checks, c) }
func (d *fakeDrill) Report() *evidence.DrillReport                               { return &d.rep }
func (d *fakeDrill) Point() (string, time.Time, string)                          { return policy.DrillLatest, time.Time{}, "" }
func (d *fakeDrill) Now() time.Time                                              { return time.Now() }
func (d *fakeDrill) RunAs() string                                               { return "" }
func (d *fakeDrill) RestoreCommand(string) (string, error)                       { return "", errors.New("no WAL") }
func (d *fakeDrill) RestoreEnv() []string                                        { return nil }
func (d *fakeDrill) PhaseEnded(name string, _ time.Time)                         { d.Phase(name) }
func (d *fakeDrill) Queries(context.Context, func(string) string, asset.Querier) {}

// tlog writes a log to the test's.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func (d *fakeDrill) run(t *testing.T) error {
	t.Helper()
	d.t = t
	err := NewKind().Drill(t.Context(), d)
	for _, f := range d.cleanup {
		f()
	}
	return err
}

func (e *env) testDrillCatchesDamage(t *testing.T) {
	t.Parallel()
	src := e.newBucket(t, "drill")
	for _, o := range sample() {
		o.key = "prod/" + o.key
		e.put(t, src, o)
	}
	a, _ := e.newAsset(src, "prod/")
	r := repotest.New(t)
	mustBackup(t, a, r)

	d := &fakeDrill{a: a, r: r, work: t.TempDir()}
	if err := d.run(t); err != nil {
		t.Fatal(err)
	}
	if len(d.checks) != 2 || !d.checks[0].Passed || !d.checks[1].Passed {
		t.Fatalf("checks %+v", d.checks)
	}
	if d.rep.Bytes == 0 || !slices.Equal(d.phases, []string{"fetch", "write", "checks"}) {
		t.Errorf("bytes %d, phases %q", d.rep.Bytes, d.phases)
	}
	t.Logf("checks: %+v", d.checks)
	// The temporary prefix is gone, and the source untouched.
	if got := e.state(t, src, ""); len(got) != len(sample()) {
		t.Errorf("after the drill the bucket holds %d objects, want %d", len(got), len(sample()))
	}

	// One flipped byte in the largest pack.
	root := strings.TrimPrefix(r.Location(), "file://")
	var victim string
	var size int64
	filepath.WalkDir(filepath.Join(root, "data"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if fi, _ := de.Info(); fi.Size() > size {
				victim, size = p, fi.Size()
			}
		}
		return nil
	})
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0x10
	os.Chmod(victim, 0o600)
	if err := os.WriteFile(victim, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d = &fakeDrill{a: a, r: r, work: t.TempDir()}
	err = d.run(t)
	if err == nil || !errors.Is(err, repo.ErrCorrupt) {
		t.Fatalf("drill of a damaged repository: %v", err)
	}
	if len(d.checks) != 1 || d.checks[0].Passed || d.checks[0].Detail == "" {
		t.Errorf("checks %+v", d.checks)
	}
	t.Logf("drill of a damaged repository: %v", err)
	if got := e.state(t, src, ""); len(got) != len(sample()) {
		t.Errorf("after the failed drill the bucket holds %d objects, want %d", len(got), len(sample()))
	}
}

func (e *env) testBucketVanishes(t *testing.T) {
	t.Parallel()
	src := e.newBucket(t, "vanish")
	for i := range 30 {
		e.put(t, src, obj{key: fmt.Sprintf("k%02d", i), body: random(uint64(i), 10_000)})
	}
	a, cnt := e.newAsset(src, "")
	r := repotest.New(t)
	var once sync.Once
	cnt.before = func(string) {
		once.Do(func() {
			// What an operator's mistake looks like: the bucket emptied
			// and deleted while the backup reads it.
			for i := range 30 {
				e.c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(src), Key: aws.String(fmt.Sprintf("k%02d", i))})
			}
			if _, err := e.c.DeleteBucket(context.Background(), &s3.DeleteBucketInput{Bucket: aws.String(src)}); err != nil {
				t.Errorf("delete bucket: %v", err)
			}
		})
	}
	res := runBackup(t, a, r)
	if res.err == nil || !strings.Contains(res.err.Error(), "does not exist") {
		t.Fatalf("backup of a bucket deleted under it: %v", res.err)
	}
	t.Logf("backup of a bucket deleted under it: %v", res.err)
	if snaps, err := r.Snapshots(t.Context(), a.Name); err != nil || len(snaps) != 0 {
		t.Fatalf("%d snapshots recorded, %v", len(snaps), err)
	}
	if res := runBackup(t, a, r); res.err == nil {
		t.Fatal("backup of a missing bucket succeeded")
	}
}

func (e *env) testObjectVanishes(t *testing.T) {
	t.Parallel()
	src := e.newBucket(t, "gone")
	for i := range 10 {
		e.put(t, src, obj{key: fmt.Sprintf("k%02d", i), body: random(uint64(i), 1000)})
	}
	e.put(t, src, obj{key: "k99-large", body: random(5, prefetchMax+1)})
	a, cnt := e.newAsset(src, "")
	cnt.before = func(key string) {
		if key == "k04" || key == "k99-large" {
			e.delete(t, src, key)
		}
	}
	r := repotest.New(t)
	res := mustBackup(t, a, r)
	if res.info.Vanished != 2 || res.info.Objects != 9 || len(res.warns) != 1 || !strings.Contains(res.warns[0], "2 objects were deleted") {
		t.Errorf("info %+v, warnings %q", res.info, res.warns)
	}
}

func (e *env) testVersioning(t *testing.T) {
	t.Parallel()
	src := e.newBucket(t, "versioned")
	if _, err := e.c.PutBucketVersioning(t.Context(), &s3.PutBucketVersioningInput{Bucket: aws.String(src),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	e.put(t, src, obj{key: "doc", body: []byte("v1")})
	e.put(t, src, obj{key: "doc", body: []byte("v2")})
	a, _ := e.newAsset(src, "")
	r := repotest.New(t)
	res := mustBackup(t, a, r)
	if len(res.warns) != 1 || !strings.Contains(res.warns[0], "versioning enabled") || res.info.Versioning != "Enabled" ||
		!strings.Contains(res.info.Note, "only the current version") || res.info.Objects != 1 {
		t.Errorf("warnings %q, info %+v", res.warns, res.info)
	}
	// A drill in a versioned bucket leaves no version behind.
	d := &fakeDrill{a: a, r: r, work: t.TempDir()}
	if err := d.run(t); err != nil {
		t.Fatal(err)
	}
	out, err := e.c.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: aws.String(src)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Versions) != 2 || len(out.DeleteMarkers) != 0 {
		t.Errorf("after the drill: %d versions, %d delete markers", len(out.Versions), len(out.DeleteMarkers))
	}
	_ = time.Now
}
