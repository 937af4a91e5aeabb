package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

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

// partsEnv reaches MinIO through a fault-injecting proxy with objects of more than 1 MiB
// uploaded in parts of 5 MiB, two at a time.
type partsEnv struct {
	srv     *s3test.Server
	proxy   *s3test.FaultProxy
	retried storage.Backend // through the proxy, in the retry decorator, as the CLI uses it
	once    storage.Backend // through the proxy, without the decorator: one attempt per call
	direct  storage.Backend // straight to MinIO, to see what was really stored
}

const partsBucket = "parts"

func newPartsEnv(t *testing.T) *partsEnv {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, partsBucket, false)
	proxy := s3test.NewFaultProxy(t, srv)
	open := func(endpoint string) storage.Backend {
		be, err := New(context.Background(), Options{Bucket: partsBucket, Prefix: "repo", Endpoint: endpoint, Region: srv.Region,
			PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			MultipartThreshold: 1 << 20, PartSize: MinPartSize, ParallelParts: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Close() })
		return be
	}
	once := open(proxy.Endpoint)
	return &partsEnv{srv: srv, proxy: proxy, once: once, direct: open(srv.Endpoint),
		retried: retry.New(once, retry.Options{InitialDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})}
}

// absent checks that nothing is stored under name and no upload is left unfinished.
func (e *partsEnv) absent(t *testing.T, name string) {
	t.Helper()
	if _, err := e.direct.Stat(context.Background(), name); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("%s after a failed put: err = %v, want ErrNotFound", name, err)
	}
	noUploadsLeft(t, e.srv, partsBucket)
}

// stored checks that name holds data and no upload is left unfinished.
func (e *partsEnv) stored(t *testing.T, name string, data []byte) {
	t.Helper()
	if got := mustGet(t, e.direct, name); !bytes.Equal(got, data) {
		t.Fatalf("%s: stored object differs", name)
	}
	noUploadsLeft(t, e.srv, partsBucket)
}

// uploadPart matches the upload of part n of any multipart upload.
func uploadPart(n int) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == strconv.Itoa(n)
	}
}

// completeUpload matches CompleteMultipartUpload.
func completeUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}

// threeParts is the size of an object of two 5 MiB parts and a short third.
const threeParts = 2*MinPartSize + 777

func TestMultipartDamagedPartIsRejected(t *testing.T) {
	e := newPartsEnv(t)
	ctx := context.Background()
	data := randomBytes(threeParts)
	// One attempt: the store refuses the damaged part, the Put fails and aborts.
	e.proxy.Inject(uploadPart(2), s3test.FlipRequestBody)
	err := e.once.Put(ctx, "wal/a", bytes.NewReader(data), int64(len(data)))
	if err == nil || !strings.Contains(err.Error(), "damaged in transit") || storage.IsPermanent(err) {
		t.Fatalf("put with a damaged part: err = %v, want a transient damaged-in-transit error", err)
	}
	if e.proxy.Injected() != 1 {
		t.Fatalf("%d faults injected, want 1", e.proxy.Injected())
	}
	e.absent(t, "wal/a")
	// Retried: the next attempt stores the object whole.
	e.proxy.Inject(uploadPart(2), s3test.FlipRequestBody)
	if err := e.retried.Put(ctx, "wal/a", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("retried put with a damaged part: %v", err)
	}
	e.stored(t, "wal/a", data)
}

func TestMultipartResetLeavesNothing(t *testing.T) {
	e := newPartsEnv(t)
	ctx := context.Background()
	data := randomBytes(threeParts)
	for _, part := range []int{1, 3} {
		e.proxy.Inject(uploadPart(part), s3test.Reset)
		if err := e.once.Put(ctx, "wal/b", bytes.NewReader(data), int64(len(data))); err == nil || storage.IsPermanent(err) {
			t.Fatalf("put with part %d reset: err = %v, want a transient error", part, err)
		}
		e.absent(t, "wal/b")
	}
	// A store that fails for good: every part upload answered 503. Six attempts of the
	// decorator, each aborting its upload, and nothing left.
	e.proxy.Inject(method(http.MethodPut), slices.Repeat([]s3test.Fault{s3test.Status503}, 100)...)
	if err := e.retried.Put(ctx, "wal/b", bytes.NewReader(data), int64(len(data))); err == nil {
		t.Fatal("put through a store that always fails succeeded")
	}
	e.absent(t, "wal/b")
	e.proxy.Inject(uploadPart(1), s3test.Reset, s3test.Reset)
	if err := e.retried.Put(ctx, "wal/b", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("retried put with part 1 reset twice: %v", err)
	}
	e.stored(t, "wal/b", data)
}

// TestMultipartLostCompleteAnswer: the store completed the upload but the answer was lost.
// The Put fails, the retry finds the name taken, and nothing is left unfinished.
func TestMultipartLostCompleteAnswer(t *testing.T) {
	e := newPartsEnv(t)
	data := randomBytes(threeParts)
	e.proxy.Inject(completeUpload, s3test.DropResponse)
	err := e.retried.Put(context.Background(), "wal/c", bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "may have stored it") {
		t.Fatalf("put whose complete was answered into the void: err = %v, want ErrExists from an earlier attempt", err)
	}
	e.stored(t, "wal/c", data)
}

// TestMultipartCompleteDecidesTheRace: a name taken while the parts were uploading is
// refused by the conditional complete, not only by the HEAD before the upload.
func TestMultipartCompleteDecidesTheRace(t *testing.T) {
	e := newPartsEnv(t)
	ctx := context.Background()
	data := randomBytes(threeParts)
	body := &gatedReader{r: bytes.NewReader(data), reading: make(chan struct{}), gate: make(chan struct{})}
	done := make(chan error)
	go func() { done <- e.once.Put(ctx, "wal/d", body, int64(len(data))) }()
	<-body.reading // the HEAD found nothing and the upload is created
	if err := e.direct.Put(ctx, "wal/d", strings.NewReader("first"), 5); err != nil {
		t.Fatal(err)
	}
	close(body.gate)
	if err := <-done; !errors.Is(err, storage.ErrExists) {
		t.Fatalf("multipart put that lost the race: err = %v, want ErrExists", err)
	}
	e.stored(t, "wal/d", []byte("first"))
}

// gatedReader signals its first Read and then waits for the gate to open.
type gatedReader struct {
	r       *bytes.Reader
	once    sync.Once
	reading chan struct{}
	gate    chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.reading) })
	<-g.gate
	return g.r.Read(p)
}

func (g *gatedReader) Seek(offset int64, whence int) (int64, error) { return g.r.Seek(offset, whence) }

// TestMultipartDamagedDownloadIsRejected: a multipart object carries the CRC32C of its whole
// content (not a composite checksum, which the SDK does not check), so a download damaged on
// the way is refused like that of an object put whole.
func TestMultipartDamagedDownloadIsRejected(t *testing.T) {
	e := newPartsEnv(t)
	ctx := context.Background()
	data := randomBytes(threeParts)
	if err := e.direct.Put(ctx, "wal/e", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	head, err := e.srv.Client(t).HeadObject(ctx, &s3api.HeadObjectInput{Bucket: aws.String(partsBucket),
		Key: aws.String("repo/wal/e"), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	want := crcBase64(crc32.Checksum(data, castagnoli))
	if head.ChecksumType != types.ChecksumTypeFullObject || aws.ToString(head.ChecksumCRC32C) != want {
		t.Fatalf("stored checksum %s %s, want FULL_OBJECT %s", head.ChecksumType, aws.ToString(head.ChecksumCRC32C), want)
	}
	e.proxy.Inject(method(http.MethodGet), s3test.FlipResponse)
	rc, err := e.once.Get(ctx, "wal/e")
	if err == nil {
		got, rerr := io.ReadAll(rc)
		rc.Close()
		if rerr == nil {
			t.Fatalf("a damaged download of a multipart object read without error (equal: %v)", bytes.Equal(got, data))
		}
	}
	if got := mustGet(t, e.retried, "wal/e"); !bytes.Equal(got, data) {
		t.Fatal("read after the fault differs")
	}
}

// TestOneAttemptPerCall: the SDK makes one attempt and the retry decorator all the others, so
// a store that stays down is given up on after the decorator's attempts, not three times as
// many.
func TestOneAttemptPerCall(t *testing.T) {
	e := newPartsEnv(t)
	ctx := context.Background()
	e.proxy.Inject(method(http.MethodPut), slices.Repeat([]s3test.Fault{s3test.Status503}, 100)...)
	if err := e.once.Put(ctx, "x", strings.NewReader("x"), 1); err == nil || storage.IsPermanent(err) {
		t.Fatalf("put through a 503: err = %v, want a transient error", err)
	}
	if n := e.proxy.Injected(); n != 1 {
		t.Fatalf("one put without the decorator made %d requests, want 1", n)
	}
	e.proxy.Inject(method(http.MethodPut), slices.Repeat([]s3test.Fault{s3test.Status503}, 100)...)
	start := time.Now()
	if err := e.retried.Put(ctx, "x", strings.NewReader("x"), 1); err == nil {
		t.Fatal("put through a store that always fails succeeded")
	}
	if n := e.proxy.Injected(); n != retry.DefaultMaxAttempts {
		t.Fatalf("one put in the decorator made %d requests, want %d", n, retry.DefaultMaxAttempts)
	}
	t.Logf("gave up after %v", time.Since(start).Round(time.Millisecond))
}
