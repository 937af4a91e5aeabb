package s3

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

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
// prefix.
func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	n := 0
	for _, prefix := range []string{"", "repo/ledger"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Backend {
				n++
				bucket := "conformance-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
				bucket = sanitizeBucket(bucket, n)
				srv.CreateBucket(t, bucket, false)
				be, err := New(context.Background(), Options{Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint,
					Region: srv.Region, PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
				if err != nil {
					t.Fatal(err)
				}
				return be
			})
		})
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
