package s3

import (
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

func TestCRC32CCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<16)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, split := range []int{0, 1, 7, 4096, 30000, len(data) - 1, len(data)} {
		a, b := data[:split], data[split:]
		got := crc32cCombine(crc32.Checksum(a, castagnoli), crc32.Checksum(b, castagnoli), int64(len(b)))
		if want := crc32.Checksum(data, castagnoli); got != want {
			t.Errorf("split at %d: combined %08x, want %08x", split, got, want)
		}
	}
	// Many parts, as uploadParts combines them.
	const part = 5000
	whole := crc32.Checksum(data[:part], castagnoli)
	for off := part; off < len(data); off += part {
		p := data[off:min(off+part, len(data))]
		whole = crc32cCombine(whole, crc32.Checksum(p, castagnoli), int64(len(p)))
	}
	if want := crc32.Checksum(data, castagnoli); whole != want {
		t.Errorf("combined over parts %08x, want %08x", whole, want)
	}
}

func FuzzCRC32CCombine(f *testing.F) {
	f.Add([]byte("hello, world"), 5)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		if len(data) == 0 {
			return
		}
		split = (split%len(data) + len(data)) % len(data)
		a, b := data[:split], data[split:]
		got := crc32cCombine(crc32.Checksum(a, castagnoli), crc32.Checksum(b, castagnoli), int64(len(b)))
		if want := crc32.Checksum(data, castagnoli); got != want {
			t.Fatalf("split %d of %d bytes: %08x, want %08x", split, len(data), got, want)
		}
	})
}

func TestCRCBase64(t *testing.T) {
	// The value S3 shows for the CRC32C of "hello" (crc 0x9a71bb4c).
	if got := crcBase64(crc32.Checksum([]byte("hello"), castagnoli)); got != "mnG7TA==" {
		t.Errorf("crcBase64 = %s, want mnG7TA==", got)
	}
}

func TestMultipartOptions(t *testing.T) {
	for _, tc := range []struct {
		o                   Options
		threshold, partSize int64
		parallel            int
		err                 string
	}{
		{o: Options{}, threshold: DefaultMultipartThreshold, partSize: DefaultPartSize, parallel: DefaultParallelParts},
		{o: Options{MultipartThreshold: 1, PartSize: MinPartSize, ParallelParts: 1}, threshold: 1, partSize: MinPartSize, parallel: 1},
		{o: Options{PartSize: MinPartSize - 1}, err: "part size"},
		{o: Options{PartSize: 6 << 30}, err: "part size"},
		{o: Options{MultipartThreshold: -1}, err: "threshold"},
		{o: Options{MultipartThreshold: 6 << 30}, err: "threshold"},
		{o: Options{ParallelParts: -2}, err: "parallel"},
	} {
		threshold, partSize, parallel, err := tc.o.multipart()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err = %v, want one containing %q", tc.o, err, tc.err)
			}
			continue
		}
		if err != nil || threshold != tc.threshold || partSize != tc.partSize || parallel != tc.parallel {
			t.Errorf("%+v: %d, %d, %d, %v; want %d, %d, %d", tc.o, threshold, partSize, parallel, err, tc.threshold, tc.partSize, tc.parallel)
		}
	}
}

func TestPartSizeFor(t *testing.T) {
	b := &backend{partSize: MinPartSize}
	for _, tc := range []struct{ size, want int64 }{
		{1, MinPartSize},
		{maxParts * MinPartSize, MinPartSize},
		{maxParts*MinPartSize + 1, 6 << 20},
		{5 << 40, 525 << 20}, // S3's largest object: still within 10,000 parts
	} {
		got := b.partSizeFor(tc.size)
		if got != tc.want {
			t.Errorf("part size for %d bytes = %d, want %d", tc.size, got, tc.want)
		}
		if parts := (tc.size + got - 1) / got; parts > maxParts {
			t.Errorf("%d bytes in parts of %d: %d parts", tc.size, got, parts)
		}
	}
}

// skewed marks an error as the SDK's clock skew detection does: retryable, because the SDK
// has corrected its clock for the next call.
type skewed struct{ error }

func (s skewed) Unwrap() error        { return s.error }
func (s skewed) RetryableError() bool { return true }

// TestWrapClassifies checks which store answers wrap leaves to the retry decorator, now that
// the SDK makes a single attempt: what the SDK's retryer would have retried stays transient.
func TestWrapClassifies(t *testing.T) {
	b := &backend{opts: Options{Bucket: "b"}}
	answer := func(status int, code string) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err: &smithy.GenericAPIError{Code: code, Message: "test"}}
	}
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
		is        error
	}{
		{name: "RequestTimeout with 400", err: answer(400, "RequestTimeout")},
		{name: "Throttling with 400", err: answer(400, "Throttling")},
		{name: "SlowDown", err: answer(503, "SlowDown")},
		{name: "429", err: answer(429, "TooManyRequests")},
		{name: "200 with an error body (the SDK makes it a 500)", err: answer(500, "InternalError")},
		{name: "clock skew the SDK corrected", err: skewed{answer(403, "RequestTimeTooSkewed")}},
		{name: "an upload aborted elsewhere", err: answer(404, "NoSuchUpload")},
		{name: "damaged in transit", err: answer(400, "XAmzContentChecksumMismatch")},
		{name: "connection reset", err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}},
		{name: "a wrong signature", err: answer(403, "SignatureDoesNotMatch"), permanent: true},
		{name: "access denied", err: answer(403, "AccessDenied"), permanent: true, is: storage.ErrPermission},
		{name: "a bad request", err: answer(400, "InvalidArgument"), permanent: true},
		{name: "name taken", err: answer(412, "PreconditionFailed"), permanent: true, is: storage.ErrExists},
		{name: "missing", err: answer(404, "NoSuchKey"), permanent: true, is: storage.ErrNotFound},
	} {
		err := b.wrap("put", "x", tc.err)
		if storage.IsPermanent(err) != tc.permanent {
			t.Errorf("%s: IsPermanent(%v) = %v, want %v", tc.name, err, !tc.permanent, tc.permanent)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v does not match %v", tc.name, err, tc.is)
		}
	}
}
