// Package s3 is the storage backend for S3 and S3-compatible object stores
// (MinIO, Ceph, R2, ...). It keeps the storage contract with the store's
// own primitives: create-if-absent through a conditional put
// (If-None-Match: *), and a CRC32C checksum on every upload that the store
// verifies before it stores anything, so a body damaged in transit is
// rejected rather than kept. Large objects go up as multipart uploads
// under the same two rules (see multipart.go); the store shows such an
// object only once it is complete.
//
// Write-once storage: with Options.LockMode set, every object is put under
// an S3 object lock that ends RetainFor later, and the backend implements
// storage.Retainer. Delete removes the object's current version by its
// version id, so that on a versioned bucket it frees the space instead of
// leaving a delete marker over a version that is still stored.
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Options say where a repository lives in S3 and how to reach it.
type Options struct {
	Bucket    string
	Prefix    string // without leading or trailing slash; "" is the bucket root
	Endpoint  string // e.g. http://127.0.0.1:9000; empty for AWS
	Region    string
	PathStyle bool
	// CAFile is a PEM file of certificate authorities trusted for the
	// endpoint besides the system's: a store with a private CA.
	CAFile string
	// AccessKey and SecretKey, when set, are used instead of the
	// environment, shared profile or instance role.
	AccessKey string
	SecretKey string
	// LockMode, when set, puts every object under an object lock of this
	// mode: COMPLIANCE (nobody can delete or shorten it before the date)
	// or GOVERNANCE (only a credential allowed to bypass governance can,
	// which Lifeboat never does). Lower case is accepted. The bucket must
	// have object lock enabled, and the credential needs
	// s3:PutObjectRetention (see docs/storage.md).
	LockMode string
	// RetainFor is how long an object stays locked after its Put. It must
	// be positive when LockMode is set, and zero when it is not.
	RetainFor time.Duration
	// MultipartThreshold: an object larger than this is uploaded in parts
	// (a multipart upload) rather than with one PutObject. Zero means
	// DefaultMultipartThreshold; at most 5 GiB, S3's largest PutObject.
	MultipartThreshold int64
	// PartSize is the size of each part of a multipart upload, the last
	// excepted. Zero means DefaultPartSize; at least MinPartSize. It grows
	// by itself for an object that would need more than 10,000 parts.
	PartSize int64
	// ParallelParts is how many parts of one object are uploaded at once.
	// Zero means DefaultParallelParts. A body that is not an io.ReaderAt
	// is read into buffers, so one Put holds up to ParallelParts x PartSize
	// bytes of memory.
	ParallelParts int
}

// Defaults and limits for the multipart options.
const (
	DefaultMultipartThreshold = 32 << 20
	DefaultPartSize           = 16 << 20
	DefaultParallelParts      = 4
	// MinPartSize is S3's smallest part (the last part may be smaller).
	MinPartSize = 5 << 20
	// maxPutSize is S3's largest single PutObject.
	maxPutSize = 5 << 30
	// maxParts is S3's largest number of parts in one upload.
	maxParts = 10000
)

// Object lock modes for Options.LockMode.
const (
	LockCompliance = "COMPLIANCE"
	LockGovernance = "GOVERNANCE"
)

// legalHoldMode is the mode a RetainedError names for a legal hold.
const legalHoldMode = "LEGAL_HOLD"

// checkLock validates the lock options and returns the mode in the form
// the S3 API takes.
func (o Options) checkLock() (string, error) {
	mode := strings.ToUpper(o.LockMode)
	switch mode {
	case "":
		if o.RetainFor != 0 {
			return "", fmt.Errorf("s3: retention of %v without a lock mode (set the lock mode to %s or %s)", o.RetainFor, LockCompliance, LockGovernance)
		}
	case LockCompliance, LockGovernance:
		if o.RetainFor <= 0 {
			return "", fmt.Errorf("s3: lock mode %s needs a positive retention period, got %v", mode, o.RetainFor)
		}
	default:
		return "", fmt.Errorf("s3: unknown lock mode %q (want %s or %s)", o.LockMode, LockCompliance, LockGovernance)
	}
	return mode, nil
}

// multipart validates the multipart options and fills in the defaults.
func (o Options) multipart() (threshold, partSize int64, parallel int, err error) {
	threshold, partSize, parallel = o.MultipartThreshold, o.PartSize, o.ParallelParts
	if threshold == 0 {
		threshold = DefaultMultipartThreshold
	}
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if parallel == 0 {
		parallel = DefaultParallelParts
	}
	switch {
	case threshold < 0 || threshold > maxPutSize:
		return 0, 0, 0, fmt.Errorf("s3: multipart threshold %d is outside 1..%d bytes", threshold, int64(maxPutSize))
	case partSize < MinPartSize || partSize > maxPutSize:
		return 0, 0, 0, fmt.Errorf("s3: part size %d is outside %d..%d bytes (the store's limits)", partSize, MinPartSize, int64(maxPutSize))
	case parallel < 0:
		return 0, 0, 0, fmt.Errorf("s3: %d parallel parts", parallel)
	}
	return threshold, partSize, parallel, nil
}

// ParseURL reads s3://bucket/prefix?endpoint=...&region=...&path_style=true.
func ParseURL(raw string) (Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Options{}, fmt.Errorf("s3 url: %w", err)
	}
	if u.Scheme != "s3" || u.Host == "" {
		return Options{}, fmt.Errorf("s3 url %q: want s3://bucket/prefix", raw)
	}
	o := Options{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "region", "path_style", "ca_file":
		default:
			return Options{}, fmt.Errorf("s3 url %q: unknown parameter %q (known: endpoint, region, path_style, ca_file)", raw, k)
		}
	}
	o.Endpoint = q.Get("endpoint")
	o.Region = q.Get("region")
	o.CAFile = q.Get("ca_file")
	if o.CAFile != "" && !strings.HasPrefix(o.CAFile, "/") {
		return Options{}, fmt.Errorf("s3 url %q: ca_file must be an absolute path", raw)
	}
	if v := q.Get("path_style"); v != "" {
		if o.PathStyle, err = strconv.ParseBool(v); err != nil {
			return Options{}, fmt.Errorf("s3 url %q: path_style: %w", raw, err)
		}
	}
	if o.Prefix != "" {
		if err := storage.ValidateName(o.Prefix); err != nil {
			return Options{}, fmt.Errorf("s3 url %q: prefix: %w", raw, err)
		}
	}
	return o, nil
}

type backend struct {
	client   *s3api.Client
	opts     Options
	lockMode string           // Options.LockMode in upper case
	now      func() time.Time // the clock retention dates are computed and judged by
	// The multipart options with their defaults filled in.
	threshold, partSize int64
	parallel            int

	conns  *conns // what Close closes
	closed atomic.Bool
}

var (
	_ storage.Backend  = (*backend)(nil)
	_ storage.Retainer = (*backend)(nil)
)

// New connects to the bucket and checks that it is reachable.
func New(ctx context.Context, opts Options) (storage.Backend, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	lockMode, err := opts.checkLock()
	if err != nil {
		return nil, err
	}
	threshold, partSize, parallel, err := opts.multipart()
	if err != nil {
		return nil, err
	}
	region := opts.Region
	if region == "" {
		region = "us-east-1"
	}
	var tlsConfig *tls.Config
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3: ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3: ca_file %s holds no PEM certificate", opts.CAFile)
		}
		tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// Bounded timeouts: a store that stops answering must fail the call
	// (and let the retry decorator try again), never hang a backup.
	// The SDK's buildable client, so that a custom CA bundle
	// (AWS_CA_BUNDLE) can still be added to its transport.
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = 10 * time.Second
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = 10 * time.Second
			t.ResponseHeaderTimeout = 60 * time.Second
			t.IdleConnTimeout = 90 * time.Second
			t.MaxIdleConnsPerHost = 16
			if tlsConfig != nil {
				t.TLSClientConfig = tlsConfig
			}
		})
	// The SDK logs to stderr by default (a debug line for every ranged
	// read, whose answer carries no checksum). Lifeboat's stderr is one
	// line per failure, which PostgreSQL collects from archive_command;
	// what the SDK has to say arrives as errors.
	//
	// The SDK makes one attempt per call: the retry decorator around this
	// backend retries (every error wrap leaves transient), and a retryer
	// inside it as well would multiply the attempts, so that a store that
	// stays down took 3 x 6 attempts to give up on. wrap keeps the SDK's
	// judgement of what is worth another try.
	loadOpts := []func(*config.LoadOptions) error{config.WithRegion(region), config.WithHTTPClient(httpClient),
		config.WithLogger(logging.Nop{}), config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} })}
	if opts.AccessKey != "" || opts.SecretKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKey, opts.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load configuration: %w", err)
	}
	cs := &conns{}
	client := s3api.NewFromConfig(cfg, func(o *s3api.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		o.APIOptions = append(o.APIOptions, AddHTTP11)
	}, trackConns(cs))
	b := &backend{client: client, opts: opts, lockMode: lockMode, now: time.Now,
		threshold: threshold, partSize: partSize, parallel: parallel, conns: cs}
	if _, err := client.HeadBucket(ctx, &s3api.HeadBucketInput{Bucket: aws.String(opts.Bucket)}, sdkRetries); err != nil {
		b.Close()
		return nil, b.wrap("open", "", err)
	}
	if lockMode != "" {
		if err := b.checkBucketLock(ctx); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// checkBucketLock makes a bucket without object lock fail at open, with a
// hint, rather than at the first Put.
func (b *backend) checkBucketLock(ctx context.Context) error {
	out, err := b.client.GetObjectLockConfiguration(ctx, &s3api.GetObjectLockConfigurationInput{Bucket: aws.String(b.opts.Bucket)}, sdkRetries)
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "ObjectLockConfigurationNotFoundError" ||
		err == nil && (out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled) {
		return storage.Permanent(fmt.Errorf("open %s: lock mode %s is set but the bucket has no object lock (it can only be enabled when the bucket is created)", b.Location(), b.lockMode))
	}
	if err != nil {
		return b.wrap("read object lock configuration of", "", err)
	}
	return nil
}

// AddHTTP11 marks the SDK's requests as the HTTP/1.1 requests they are on
// the wire (an API option for any client of an S3 store: the bucket kind
// uses it too). The SDK asks for "Expect: 100-continue" on uploads of more
// than 2 MiB, so that a store refusing one (If-None-Match on a name
// taken, a denied credential) says so before the body is sent; but Go's
// transport waits for the "100 Continue" only on a request that says it
// is HTTP/1.1 or later, and the SDK's say nothing (0.0). Without the wait
// the body is sent at once, the store answers 412 and closes the
// connection under it, and the client sees a reset where the store said
// ErrExists (one upload in five on loopback, more on a slower link).
func AddHTTP11(stack *middleware.Stack) error {
	return stack.Build.Add(middleware.BuildMiddlewareFunc("LifeboatHTTP11",
		func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok && req.ProtoMajor == 0 {
				req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
			}
			return next.HandleBuild(ctx, in)
		}), middleware.After)
}

// sdkRetries gives back the SDK's own retries (3 attempts) to the calls
// New makes, which no retry decorator wraps: one dropped connection must
// not fail the command at its start.
func sdkRetries(o *s3api.Options) { o.Retryer = awsretry.NewStandard() }

func (b *backend) Location() string {
	loc := "s3://" + b.opts.Bucket
	if b.opts.Prefix != "" {
		loc += "/" + b.opts.Prefix
	}
	if b.opts.Endpoint != "" {
		loc += " at " + b.opts.Endpoint
	}
	return loc
}

// Close closes the client's connections; calls after it fail with
// storage.ErrClosed before they reach the store.
func (b *backend) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.conns.closeAll()
	}
	return nil
}

// checkOpen fails a call made after Close.
func (b *backend) checkOpen(op, name string) error {
	if b.closed.Load() {
		return fmt.Errorf("%s %s in %s: %w", op, name, b.Location(), storage.ErrClosed)
	}
	return nil
}

func (b *backend) key(name string) string {
	if b.opts.Prefix == "" {
		return name
	}
	return b.opts.Prefix + "/" + name
}

// wrap turns SDK errors into the contract's: a missing object or a taken
// name into the sentinels, client errors other than throttling into
// permanent ones.
func (b *backend) wrap(op, name string, err error) error {
	where := b.Location()
	if name != "" {
		where = name
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return fmt.Errorf("%s %s: %w", op, where, storage.ErrNotFound)
	}
	// The SDK makes a single attempt (see New), so what its retryer would
	// have tried again must stay transient for the retry decorator: besides
	// 5xx, throttling and broken connections, which the rules below leave
	// transient anyway, a RequestTimeout or throttling code sent with a 4xx
	// status, and an answer refused for clock skew, which the SDK has
	// corrected for the next call.
	if sdkRetryable(err) {
		return fmt.Errorf("%s %s: %w", op, where, err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%s %s: %w", op, where, storage.ErrNotFound)
		case "PreconditionFailed", "ConditionalRequestConflict":
			return fmt.Errorf("%s %s: %w", op, where, storage.ErrExists)
		case "NoSuchUpload":
			// A multipart upload removed under our feet (a lifecycle
			// rule, another client): not a missing object, and a new
			// upload may well succeed.
			return fmt.Errorf("%s %s: the multipart upload is gone: %w", op, where, err)
		case "BadDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch":
			// The store refused a body that did not match the checksums
			// sent with it: damaged on the way, which sending it again
			// cures. Nothing was stored.
			return fmt.Errorf("%s %s: damaged in transit, refused by the store: %w", op, where, err)
		case "NoSuchBucket":
			return storage.Permanent(fmt.Errorf("%s %s: bucket %q does not exist", op, where, b.opts.Bucket))
		case "AccessDenied":
			return b.denied(op, where, err)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return storage.Permanent(fmt.Errorf("%s %s: %s (check the credentials and the bucket policy): %w", op, where, ae.ErrorCode(), err))
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		if code := re.HTTPStatusCode(); code >= 400 && code < 500 && code != 408 && code != 429 {
			switch code {
			case 404:
				return fmt.Errorf("%s %s: %w", op, where, storage.ErrNotFound)
			case 403:
				// An answer to HEAD has no body, so no error code: 403
				// is all there is to go on.
				return b.denied(op, where, err)
			}
			return storage.Permanent(fmt.Errorf("%s %s: %w", op, where, err))
		}
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}

// sdkRetryable reports whether the SDK's standard retryer would retry err.
func sdkRetryable(err error) bool {
	return awsretry.IsErrorRetryables(awsretry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// denied is wrap's answer to a refusal for lack of rights.
func (b *backend) denied(op, where string, err error) error {
	return storage.Permanent(fmt.Errorf("%s %s: %w (check the credentials and the bucket policy): %w", op, where, storage.ErrPermission, err))
}

func (b *backend) Put(ctx context.Context, name string, body io.ReadSeeker, size int64) error {
	if err := b.checkOpen("put", name); err != nil {
		return err
	}
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	if size > b.threshold {
		return b.putMultipart(ctx, name, body, size)
	}
	// The checksum is computed before the upload and sent as a header.
	// Left to the SDK, it would travel as a trailer of an aws-chunked body
	// over HTTPS, in one chunk as large as the object, which MinIO refuses
	// above 16 MiB ("chunk too big").
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	h := crc32.New(castagnoli)
	if n, err := io.Copy(h, body); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	} else if n != size {
		return fmt.Errorf("put %s: the body holds %d bytes, not the %d given", name, n, size)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	in := &s3api.PutObjectInput{
		Bucket:            aws.String(b.opts.Bucket),
		Key:               aws.String(b.key(name)),
		Body:              body,
		ContentLength:     aws.Int64(size),
		IfNoneMatch:       aws.String("*"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumCRC32C:    aws.String(crcBase64(h.Sum32())),
	}
	// The lock travels with the upload, so there is no moment at which the
	// object exists unprotected. MinIO (like AWS) accepts the CRC32C
	// checksum as the integrity check a locked upload needs; no Content-MD5.
	if b.lockMode != "" {
		in.ObjectLockMode = types.ObjectLockMode(b.lockMode)
		in.ObjectLockRetainUntilDate = aws.Time(b.now().Add(b.opts.RetainFor))
	}
	_, err := b.client.PutObject(ctx, in)
	if err != nil {
		return b.wrap("put", name, err)
	}
	return nil
}

func (b *backend) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := b.checkOpen("get", name); err != nil {
		return nil, err
	}
	if err := storage.ValidateName(name); err != nil {
		return nil, err
	}
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{
		Bucket:       aws.String(b.opts.Bucket),
		Key:          aws.String(b.key(name)),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return nil, b.wrap("get", name, err)
	}
	return damageReader{out.Body}, nil
}

// damageReader marks the SDK's checksum mismatch on a download as
// storage.ErrDamaged, so that readers know a second read may succeed. The
// SDK's error type is unexported: its message is what it promises.
type damageReader struct{ io.ReadCloser }

func (d damageReader) Read(p []byte) (int, error) {
	n, err := d.ReadCloser.Read(p)
	if err != nil && err != io.EOF && strings.Contains(err.Error(), "checksum did not match") {
		err = fmt.Errorf("%w: %v", storage.ErrDamaged, err)
	}
	return n, err
}

func (b *backend) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := b.checkOpen("get range of", name); err != nil {
		return nil, err
	}
	if err := storage.ValidateName(name); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, storage.Permanent(fmt.Errorf("get %s: invalid range %d+%d", name, offset, length))
	}
	if length == 0 {
		if _, err := b.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{
		Bucket: aws.String(b.opts.Bucket),
		Key:    aws.String(b.key(name)),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)),
	})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
			return nil, storage.Permanent(fmt.Errorf("get %s: range %d+%d is past the end", name, offset, length))
		}
		return nil, b.wrap("get", name, err)
	}
	// A range that starts inside the object but ends past it comes back
	// short; the contract says that is an error, not a short read.
	if out.ContentLength == nil || *out.ContentLength != length {
		out.Body.Close()
		got := int64(-1)
		if out.ContentLength != nil {
			got = *out.ContentLength
		}
		// Without a Content-Range the answer is not about the range at
		// all (a proxy's or a failing store's error page sent with 200):
		// asking again may well get the range.
		if out.ContentRange == nil {
			return nil, fmt.Errorf("get %s: range %d+%d answered with %d bytes and no Content-Range", name, offset, length, got)
		}
		return nil, storage.Permanent(fmt.Errorf("get %s: range %d+%d is past the end (%d bytes returned)", name, offset, length, got))
	}
	return out.Body, nil
}

func (b *backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := b.checkOpen("stat", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := storage.ValidateName(name); err != nil {
		return storage.ObjectInfo{}, err
	}
	out, err := b.head(ctx, name)
	if err != nil {
		return storage.ObjectInfo{}, b.wrap("stat", name, err)
	}
	oi := storage.ObjectInfo{Name: name}
	if out.ContentLength != nil {
		oi.Size = *out.ContentLength
	}
	if out.LastModified != nil {
		oi.ModTime = *out.LastModified
	}
	return oi, nil
}

func (b *backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := b.checkOpen("list", fmt.Sprintf("%q", prefix)); err != nil {
		return err
	}
	p := s3api.NewListObjectsV2Paginator(b.client, &s3api.ListObjectsV2Input{
		Bucket: aws.String(b.opts.Bucket),
		Prefix: aws.String(b.key(prefix)),
	})
	strip := ""
	if b.opts.Prefix != "" {
		strip = b.opts.Prefix + "/"
	}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return b.wrap("list", prefix, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), strip)
			// Objects that are not valid names were not written by a
			// repository (or are another tool's): the contract lists
			// only names a backend could have stored.
			if storage.ValidateName(name) != nil {
				continue
			}
			oi := storage.ObjectInfo{Name: name, Size: aws.ToInt64(o.Size)}
			if o.LastModified != nil {
				oi.ModTime = *o.LastModified
			}
			if err := fn(oi); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the object. S3 answers a delete of a missing key with
// success, so the contract's ErrNotFound comes from asking first; the same
// HEAD gives the version to delete and its lock. On a versioned bucket a
// plain delete only stacks a delete marker on the version, which stays
// stored (and billed), so the current version is deleted by its id; on an
// unversioned bucket there is no id and the plain delete is the right one.
// Older versions of the name, which Lifeboat never makes (it never
// overwrites), are left alone.
func (b *backend) Delete(ctx context.Context, name string) error {
	if err := b.checkOpen("delete", name); err != nil {
		return err
	}
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	head, err := b.head(ctx, name)
	if err != nil {
		return b.wrap("delete", name, err)
	}
	// Asking the store to delete a locked version is refused anyway; the
	// caller wants the date it becomes deletable, which the HEAD gave.
	if r := b.retained(name, head); r != nil {
		return storage.Permanent(r)
	}
	in := &s3api.DeleteObjectInput{Bucket: aws.String(b.opts.Bucket), Key: aws.String(b.key(name))}
	if v := aws.ToString(head.VersionId); v != "" {
		in.VersionId = aws.String(v)
	}
	if _, err := b.client.DeleteObject(ctx, in); err != nil {
		// The lock had expired by our clock but not by the store's: MinIO
		// refuses a locked version with InvalidRequest (AWS with
		// AccessDenied, which stays a permission error: the two cannot be
		// told apart there).
		var ae smithy.APIError
		if head.ObjectLockMode != "" && head.ObjectLockRetainUntilDate != nil &&
			errors.As(err, &ae) && ae.ErrorCode() == "InvalidRequest" {
			return storage.Permanent(&storage.RetainedError{Name: name, Until: *head.ObjectLockRetainUntilDate, Mode: string(head.ObjectLockMode)})
		}
		return b.wrap("delete", name, err)
	}
	return nil
}

func (b *backend) head(ctx context.Context, name string) (*s3api.HeadObjectOutput, error) {
	return b.client.HeadObject(ctx, &s3api.HeadObjectInput{
		Bucket: aws.String(b.opts.Bucket),
		Key:    aws.String(b.key(name)),
	})
}

// retained returns the error Delete reports for a version that a lock
// still protects, or nil. The store only shows the lock to a credential
// allowed s3:GetObjectRetention and s3:GetObjectLegalHold; without them
// the delete is tried and the store's refusal reported.
func (b *backend) retained(name string, head *s3api.HeadObjectOutput) *storage.RetainedError {
	if head.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn {
		return &storage.RetainedError{Name: name, Mode: legalHoldMode}
	}
	if head.ObjectLockMode != "" && head.ObjectLockRetainUntilDate != nil && head.ObjectLockRetainUntilDate.After(b.now()) {
		return &storage.RetainedError{Name: name, Until: *head.ObjectLockRetainUntilDate, Mode: string(head.ObjectLockMode)}
	}
	return nil
}

// Retention reports the retain-until date and mode of the object's current
// version, whether or not the retention has passed.
func (b *backend) Retention(ctx context.Context, name string) (time.Time, string, error) {
	if err := b.checkOpen("retention of", name); err != nil {
		return time.Time{}, "", err
	}
	if err := storage.ValidateName(name); err != nil {
		return time.Time{}, "", err
	}
	head, err := b.head(ctx, name)
	if err != nil {
		return time.Time{}, "", b.wrap("retention of", name, err)
	}
	if head.ObjectLockMode == "" || head.ObjectLockRetainUntilDate == nil {
		return time.Time{}, "", nil
	}
	return *head.ObjectLockRetainUntilDate, string(head.ObjectLockMode), nil
}

// ExtendRetention moves the retain-until date of the object's current
// version to until, keeping its mode (an object without retention gets
// Options.LockMode). It never shortens, and never sends the governance
// bypass: a shorter date is a no-op, not a request the store would refuse.
func (b *backend) ExtendRetention(ctx context.Context, name string, until time.Time) error {
	if err := b.checkOpen("extend retention of", name); err != nil {
		return err
	}
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	head, err := b.head(ctx, name)
	if err != nil {
		return b.wrap("extend retention of", name, err)
	}
	// The store keeps milliseconds; compare at that precision so that
	// asking for the date already set is the no-op it should be.
	until = until.Truncate(time.Millisecond)
	mode := string(head.ObjectLockMode)
	if mode != "" && head.ObjectLockRetainUntilDate != nil {
		if !until.After(*head.ObjectLockRetainUntilDate) {
			return nil
		}
	} else {
		mode = b.lockMode
	}
	if mode == "" {
		return storage.Permanent(fmt.Errorf("extend retention of %s: the object has no retention and no lock mode is set to give it one", name))
	}
	in := &s3api.PutObjectRetentionInput{
		Bucket:    aws.String(b.opts.Bucket),
		Key:       aws.String(b.key(name)),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionMode(mode), RetainUntilDate: aws.Time(until)},
		// MinIO refuses this call without Content-MD5 or a checksum.
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	}
	if v := aws.ToString(head.VersionId); v != "" {
		in.VersionId = aws.String(v)
	}
	if _, err := b.client.PutObjectRetention(ctx, in); err != nil {
		return b.wrap("extend retention of", name, err)
	}
	return nil
}
