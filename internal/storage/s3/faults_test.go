package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
)

// faulty returns a backend that reaches MinIO through a fault-injecting
// proxy (wrapped in the retry decorator, as the CLI does) and a direct one
// to see what really got stored.
func faulty(t *testing.T) (storage.Backend, storage.Backend, *s3test.FaultProxy) {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "faults", false)
	proxy := s3test.NewFaultProxy(t, srv)
	open := func(endpoint string) storage.Backend {
		be, err := New(context.Background(), Options{Bucket: "faults", Prefix: "repo", Endpoint: endpoint, Region: srv.Region,
			PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		return be
	}
	return retry.New(open(proxy.Endpoint), retry.Options{InitialDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}),
		open(srv.Endpoint), proxy
}

func method(m string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.Method == m }
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func mustGet(t *testing.T, be storage.Backend, name string) []byte {
	t.Helper()
	data, err := storage.ReadAll(context.Background(), be, name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestTransientFaultsAreRetried(t *testing.T) {
	be, direct, proxy := faulty(t)
	ctx := context.Background()
	for _, f := range []s3test.Fault{s3test.Status503, s3test.Status500, s3test.Reset} {
		data := randomBytes(3<<20 + 11)
		name := "data/" + []string{"a", "b", "c"}[f%3]
		proxy.Inject(method(http.MethodPut), f, f)
		if err := be.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("put through two %v faults: %v", f, err)
		}
		if proxy.Seen != 2 {
			t.Fatalf("%v: %d faults injected, want 2", f, proxy.Seen)
		}
		if got := mustGet(t, direct, name); !bytes.Equal(got, data) {
			t.Fatalf("%v: stored object differs", f)
		}
		proxy.Inject(method(http.MethodGet), f, f)
		if got := mustGet(t, be, name); !bytes.Equal(got, data) {
			t.Fatalf("%v: read object differs", f)
		}
	}
	// A slow body still arrives whole.
	proxy.Inject(method(http.MethodGet), s3test.SlowResponse)
	if got := mustGet(t, be, "data/a"); len(got) != 3<<20+11 {
		t.Fatalf("slow read returned %d bytes", len(got))
	}
}

func TestDamageInTransitIsRejected(t *testing.T) {
	be, direct, proxy := faulty(t)
	ctx := context.Background()
	data := randomBytes(1<<20 + 5)
	// A body damaged on the way in is refused by the store, and nothing is
	// stored under the name.
	proxy.Inject(method(http.MethodPut), s3test.FlipRequestBody, s3test.FlipRequestBody, s3test.FlipRequestBody,
		s3test.FlipRequestBody, s3test.FlipRequestBody, s3test.FlipRequestBody, s3test.FlipRequestBody)
	if err := be.Put(ctx, "data/x", bytes.NewReader(data), int64(len(data))); err == nil {
		t.Fatal("a put whose body was damaged in transit succeeded")
	}
	if _, err := direct.Stat(ctx, "data/x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a damaged upload left an object: %v", err)
	}
	proxy.Inject(nil)
	if err := be.Put(ctx, "data/x", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put after the fault cleared: %v", err)
	}
	// A body damaged on the way out is never handed on as good data.
	proxy.Inject(method(http.MethodGet), s3test.FlipResponse)
	rc, err := be.Get(ctx, "data/x")
	if err == nil {
		got, rerr := io.ReadAll(rc)
		rc.Close()
		if rerr == nil && !bytes.Equal(got, data) {
			t.Fatal("a body damaged in transit was returned as good data")
		}
		if rerr == nil {
			t.Fatal("a damaged download read without error")
		}
	}
	if got := mustGet(t, be, "data/x"); !bytes.Equal(got, data) {
		t.Fatal("read after the fault cleared differs")
	}
}
