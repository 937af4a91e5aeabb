package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/storagetest"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		url  string
		want Options
		err  string
	}{
		{url: "s3://backups/ledger?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true",
			want: Options{Bucket: "backups", Prefix: "ledger", Endpoint: "http://127.0.0.1:9000", Region: "us-east-1", PathStyle: true}},
		{url: "s3://backups", want: Options{Bucket: "backups"}},
		{url: "s3://backups/a/b/", want: Options{Bucket: "backups", Prefix: "a/b"}},
		{url: "s3:///nobucket", err: "want s3://bucket"},
		{url: "file:///x", err: "want s3://bucket"},
		{url: "s3://b/p?regoin=x", err: `unknown parameter "regoin"`},
		{url: "s3://b/p?path_style=maybe", err: "path_style"},
		{url: "s3://b/../x", err: "prefix"},
		{url: "s3://b/p?ca_file=/etc/ssl/private-ca.pem", want: Options{Bucket: "b", Prefix: "p", CAFile: "/etc/ssl/private-ca.pem"}},
		{url: "s3://b/p?ca_file=ca.pem", err: "absolute"},
	}
	for _, tc := range cases {
		got, err := ParseURL(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) = %v, want error containing %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tc.url, got, err, tc.want)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	f.Add("s3://backups/ledger?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true")
	f.Add("s3://b/%2e%2e/x")
	f.Fuzz(func(t *testing.T, raw string) {
		o, err := ParseURL(raw)
		if err == nil && (o.Bucket == "" || strings.HasPrefix(o.Prefix, "/") || strings.Contains(o.Prefix, "..")) {
			t.Fatalf("ParseURL(%q) accepted %+v", raw, o)
		}
	})
}

// TestConformance runs the storage contract against a real MinIO: every
// subtest gets a fresh bucket, once at the bucket root and once below a
// prefix with the default multipart threshold (so every object goes up
// with one PutObject), and once with a threshold and part size low enough
// that every object of more than 512 KiB is a multipart upload, the
// suite's large ones of four parts, three at a time. After every subtest
// the bucket must hold no unfinished multipart upload: a failed Put
// aborts its own.
func TestConformance(t *testing.T) {
	plain, secure := s3test.Start(t), s3test.StartTLS(t)
	n := 0
	for _, tc := range []struct {
		name string
		srv  *s3test.Server
		opts Options
	}{
		{"prefix=", plain, Options{}},
		{"prefix=repo/ledger", plain, Options{Prefix: "repo/ledger"}},
		{"multipart", plain, Options{Prefix: "repo", MultipartThreshold: 512 << 10, PartSize: MinPartSize, ParallelParts: 3}},
		// Over HTTPS the SDK would send its own checksums as trailers of
		// aws-chunked bodies, which MinIO takes differently.
		{"tls", secure, Options{Prefix: "repo", CAFile: secure.CAFile}},
		{"tls-multipart", secure, Options{Prefix: "repo", CAFile: secure.CAFile, MultipartThreshold: 512 << 10, PartSize: MinPartSize}},
	} {
		srv := tc.srv
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Backend {
				n++
				bucket := "conformance-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
				bucket = sanitizeBucket(bucket, n)
				srv.CreateBucket(t, bucket, false)
				t.Cleanup(func() { noUploadsLeft(t, srv, bucket) })
				o := tc.opts
				o.Bucket, o.Endpoint, o.Region, o.PathStyle = bucket, srv.Endpoint, srv.Region, true
				o.AccessKey, o.SecretKey = srv.AccessKey, srv.SecretKey
				be, err := New(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				return be
			})
		})
	}
}

// noUploadsLeft fails the test if bucket holds an unfinished multipart
// upload: parts nobody can see, but the store keeps and bills.
func noUploadsLeft(t testing.TB, srv *s3test.Server, bucket string) {
	t.Helper()
	out, err := srv.Client(t).ListMultipartUploads(context.Background(), &s3api.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("list multipart uploads of %s: %v", bucket, err)
	}
	for _, u := range out.Uploads {
		t.Errorf("bucket %s holds an unfinished upload %s of %s", bucket, aws.ToString(u.UploadId), aws.ToString(u.Key))
	}
}

// sanitizeBucket makes a valid bucket name (3–63 of [a-z0-9-]).
func sanitizeBucket(s string, n int) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	out := b.String()
	suffix := "-" + strconv.Itoa(n)
	if len(out)+len(suffix) > 63 {
		out = out[:63-len(suffix)]
	}
	return strings.TrimRight(out, "-") + suffix
}

// TestLargePutOverTLS stores one object above MinIO's 16 MiB chunk limit
// with a single PutObject over HTTPS: a checksum left to the SDK travels
// as the trailer of one chunk that size, which MinIO refuses.
func TestLargePutOverTLS(t *testing.T) {
	srv := s3test.StartTLS(t)
	srv.CreateBucket(t, "large", false)
	ctx := t.Context()
	be, err := New(ctx, Options{Bucket: "large", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 20<<20)
	rand.Read(data)
	if err := be.Put(ctx, "data/pack", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := be.Put(ctx, "data/pack", bytes.NewReader(data), int64(len(data))); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second put: %v, want ErrExists", err)
	}
	got, err := storage.ReadAll(ctx, be, "data/pack")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	// Without the CA the server's certificate is refused.
	if _, err := New(ctx, Options{Bucket: "large", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: %v", err)
	}
	if _, err := New(ctx, Options{Bucket: "large", Endpoint: srv.Endpoint, CAFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("missing ca_file: %v", err)
	}
}

func TestErrors(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	if _, err := New(ctx, Options{Bucket: "missing", Endpoint: srv.Endpoint, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}); err == nil || !storage.IsPermanent(err) {
		t.Fatalf("a missing bucket: %v", err)
	}
	srv.CreateBucket(t, "present", false)
	_, err := New(ctx, Options{Bucket: "present", Endpoint: srv.Endpoint, PathStyle: true, AccessKey: srv.AccessKey, SecretKey: "wrong-secret"})
	if err == nil || !storage.IsPermanent(err) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("wrong credentials: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatal("the secret key appears in the error")
	}
}

// TestTakenNameRefusedBeforeTheBody: an upload of more than 2 MiB asks the store to confirm
// before the body is sent (Expect: 100-continue), so a store refusing the name answers 412
// rather than closing the connection under a body it will not read, which the client saw as
// a reset (often, for a 16 MiB pack on loopback, before addHTTP11). Every attempt must end
// ErrExists.
func TestTakenNameRefusedBeforeTheBody(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "taken", false)
	be, err := New(t.Context(), Options{Bucket: "taken", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(16 << 20) // a pack
	if err := be.Put(t.Context(), "data/p", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := be.Put(t.Context(), "data/p", bytes.NewReader(data), int64(len(data))); !errors.Is(err, storage.ErrExists) {
			t.Fatalf("put %d over a taken name: err = %v, want ErrExists", i, err)
		}
	}
}
