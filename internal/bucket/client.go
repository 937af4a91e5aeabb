package bucket

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// client is one bucket (and prefix) of a store, as the bucket kind reads
// and writes it. Unlike the repository backend it reads objects it did
// not write, so keys are taken as they come.
type client struct {
	api       *s3api.Client
	loc       Location
	transport *http.Transport
}

// newClient connects to the bucket of loc and checks that it exists. The
// SDK retries what it judges transient (three attempts): nothing else
// retries the calls of this package.
func newClient(ctx context.Context, loc Location, c *Config) (*client, error) {
	region := loc.Region
	if region == "" {
		region = "us-east-1"
	}
	var tlsConfig *tls.Config
	if loc.CAFile != "" {
		pem, err := os.ReadFile(loc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: ca_file: %w", loc.Bucket, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bucket %s: ca_file %s holds no PEM certificate", loc.Bucket, loc.CAFile)
		}
		tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	cl := &client{loc: loc}
	// Bounded timeouts: a store that stops answering fails the call,
	// never hangs a backup.
	tune := func(t *http.Transport) {
		t.TLSHandshakeTimeout = 10 * time.Second
		t.ResponseHeaderTimeout = 60 * time.Second
		t.IdleConnTimeout = 90 * time.Second
		t.MaxIdleConnsPerHost = 32
		if tlsConfig != nil {
			t.TLSClientConfig = tlsConfig
		}
		cl.transport = t
	}
	// The SDK's buildable client, so that a CA bundle in AWS_CA_BUNDLE
	// can still be added to its transport.
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = 10 * time.Second
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(tune)
	loadOpts := []func(*config.LoadOptions) error{config.WithRegion(region), config.WithHTTPClient(httpClient),
		config.WithLogger(logging.Nop{}), config.WithRetryer(func() aws.Retryer { return awsretry.NewStandard() })}
	if c.AccessKey != "" || c.SecretKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKey.Reveal(), c.SecretKey.Reveal(), "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: load configuration: %w", loc.Bucket, err)
	}
	cl.api = s3api.NewFromConfig(cfg, func(o *s3api.Options) {
		if loc.Endpoint != "" {
			o.BaseEndpoint = aws.String(loc.Endpoint)
		}
		o.UsePathStyle = loc.PathStyle
		o.APIOptions = append(o.APIOptions, s3.AddHTTP11)
		if c.wrap != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tune(tr)
			o.HTTPClient = &http.Client{Transport: c.wrap(tr)}
		}
	})
	if _, err := cl.api.HeadBucket(ctx, &s3api.HeadBucketInput{Bucket: aws.String(loc.Bucket)}); err != nil {
		cl.close()
		return nil, cl.wrap("open", "", err)
	}
	return cl, nil
}

func (c *client) close() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}

// checkBucket fails when the bucket is gone.
func (c *client) checkBucket(ctx context.Context) error {
	if _, err := c.api.HeadBucket(ctx, &s3api.HeadBucketInput{Bucket: aws.String(c.loc.Bucket)}); err != nil {
		return c.wrap("check", "", err)
	}
	return nil
}

// Errors the kind tells apart.
var (
	// errVanished marks an object deleted between its listing and its
	// read: left out of the snapshot, with a warning.
	errVanished = errors.New("deleted since it was listed")
	// errExists marks a key a restore would overwrite.
	errExists = errors.New("already exists")
)

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// wrap adds what was done to err, and a hint for the errors an operator
// can act on.
func (c *client) wrap(op, key string, err error) error {
	where := c.loc.Where()
	if key != "" {
		where = "s3://" + c.loc.Bucket + "/" + quoteKey(key)
	}
	code := errorCode(err)
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	switch {
	case code == "NoSuchBucket" || (key == "" && (errors.As(err, &nf) || httpStatus(err) == 404)):
		return fmt.Errorf("%s %s: bucket %s does not exist (any more)", op, where, c.loc.Bucket)
	case errors.As(err, &nsk) || errors.As(err, &nf) || code == "NoSuchKey" || code == "NotFound":
		return fmt.Errorf("%s %s: %w", op, where, errVanished)
	case code == "PreconditionFailed":
		return fmt.Errorf("%s %s: %w", op, where, errExists)
	case code == "AccessDenied" || httpStatus(err) == 403:
		return fmt.Errorf("%s %s: access denied (check the credentials and the bucket policy): %w", op, where, err)
	case code == "InvalidObjectState":
		return fmt.Errorf("%s %s: the object is archived (Glacier or Deep Archive) and must be restored in the store before it can be read: %w", op, where, err)
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}

// versioning is the bucket's versioning status: "Enabled", "Suspended",
// "" for never enabled, or "unknown" when the credential may not ask.
func (c *client) versioning(ctx context.Context) string {
	out, err := c.api.GetBucketVersioning(ctx, &s3api.GetBucketVersioningInput{Bucket: aws.String(c.loc.Bucket)})
	if err != nil {
		return "unknown"
	}
	return string(out.Status)
}

// listed is one object of a listing, its key relative to the prefix.
type listed struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
	StorageClass string
}

// list calls fn for every object below prefix (relative to the bucket,
// "" for all) in key order, one page at a time. skip leaves keys out.
func (c *client) list(ctx context.Context, prefix string, skip func(rel string) bool, fn func(listed) error) error {
	p := s3api.NewListObjectsV2Paginator(c.api, &s3api.ListObjectsV2Input{
		Bucket: aws.String(c.loc.Bucket),
		Prefix: aws.String(prefix),
		// Keys are asked for URL-encoded, so that any byte survives the
		// XML of the answer (which cannot hold control characters).
		EncodingType: types.EncodingTypeUrl,
	})
	last, first := "", true
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return c.wrap("list", "", err)
		}
		encoded := page.EncodingType == types.EncodingTypeUrl
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if encoded {
				if key, err = url.QueryUnescape(key); err != nil {
					return fmt.Errorf("list %s: the store sent the key %q badly encoded: %v", c.loc.Where(), aws.ToString(o.Key), err)
				}
			}
			if !first && key <= last {
				return fmt.Errorf("list %s: the store listed %s after %s: Lifeboat needs the keys in order, as S3 lists them", c.loc.Where(), quoteKey(key), quoteKey(last))
			}
			first, last = false, key
			rel, ok := strings.CutPrefix(key, prefix)
			if !ok {
				return fmt.Errorf("list %s: the store listed %s, which is not below the prefix", c.loc.Where(), quoteKey(key))
			}
			if skip != nil && skip(rel) {
				continue
			}
			l := listed{Key: rel, Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag), StorageClass: string(o.StorageClass)}
			if o.LastModified != nil {
				l.LastModified = o.LastModified.UTC()
			}
			if err := fn(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// isEmpty reports whether no object lies below prefix.
func (c *client) isEmpty(ctx context.Context, prefix string) (bool, error) {
	out, err := c.api.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: aws.String(c.loc.Bucket), Prefix: aws.String(prefix),
		MaxKeys: aws.Int32(1)})
	if err != nil {
		return false, c.wrap("list", "", err)
	}
	return len(out.Contents) == 0, nil
}

// fillFromGet copies what a GET or HEAD answered into o.
func fillHeaders(o *Object, size *int64, etag *string, lm *time.Time, ctype, cenc, cdisp, clang, cache, expires, redirect *string,
	meta map[string]string, class types.StorageClass, version *string) {
	o.Size = aws.ToInt64(size)
	o.ETag = aws.ToString(etag)
	if lm != nil {
		o.LastModified = lm.UTC()
	}
	o.ContentType = aws.ToString(ctype)
	o.ContentEncoding = aws.ToString(cenc)
	o.ContentDisposition = aws.ToString(cdisp)
	o.ContentLanguage = aws.ToString(clang)
	o.CacheControl = aws.ToString(cache)
	o.Expires = aws.ToString(expires)
	o.WebsiteRedirectLocation = aws.ToString(redirect)
	o.Metadata = nil
	if len(meta) > 0 {
		o.Metadata = meta
	}
	o.StorageClass = string(class)
	if v := aws.ToString(version); v != "" && v != "null" {
		o.VersionID = v
	}
}

// get opens the object's content; o gets its headers.
func (c *client) get(ctx context.Context, key string, o *Object) (body io.ReadCloser, tagCount int, err error) {
	out, err := c.api.GetObject(ctx, &s3api.GetObjectInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(c.loc.Prefix + key),
		ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return nil, 0, c.wrap("get", c.loc.Prefix+key, err)
	}
	fillHeaders(o, out.ContentLength, out.ETag, out.LastModified, out.ContentType, out.ContentEncoding, out.ContentDisposition,
		out.ContentLanguage, out.CacheControl, out.ExpiresString, out.WebsiteRedirectLocation, out.Metadata, out.StorageClass, out.VersionId)
	tagCount = -1
	if out.TagCount != nil {
		tagCount = int(*out.TagCount)
	}
	return out.Body, tagCount, nil
}

// head reads the object's headers into o.
func (c *client) head(ctx context.Context, key string, o *Object) (tagCount int, err error) {
	out, err := c.api.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(c.loc.Prefix + key)})
	if err != nil {
		return 0, c.wrap("head", c.loc.Prefix+key, err)
	}
	fillHeaders(o, out.ContentLength, out.ETag, out.LastModified, out.ContentType, out.ContentEncoding, out.ContentDisposition,
		out.ContentLanguage, out.CacheControl, out.ExpiresString, out.WebsiteRedirectLocation, out.Metadata, out.StorageClass, out.VersionId)
	tagCount = -1
	if out.TagCount != nil {
		tagCount = int(*out.TagCount)
	}
	return tagCount, nil
}

// errNoTagging marks a store without object tagging (R2, GCS).
var errNoTagging = errors.New("the store does not support object tagging")

// tags reads the object's tags.
func (c *client) tags(ctx context.Context, key string) (map[string]string, error) {
	out, err := c.api.GetObjectTagging(ctx, &s3api.GetObjectTaggingInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(c.loc.Prefix + key)})
	if err != nil {
		if code := errorCode(err); code == "NotImplemented" || httpStatus(err) == 501 {
			return nil, errNoTagging
		}
		return nil, c.wrap("read the tags of", c.loc.Prefix+key, err)
	}
	if len(out.TagSet) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(out.TagSet))
	for _, t := range out.TagSet {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m, nil
}

// castagnoli is the CRC32C table; S3 names the checksum CRC32C.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcBase64(sum uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], sum)
	return base64.StdEncoding.EncodeToString(b[:])
}

// tagging writes tags as the Tagging header takes them: a URL query.
func tagging(tags map[string]string) *string {
	if len(tags) == 0 {
		return nil
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(tags[k]))
	}
	return aws.String(b.String())
}

// emptyPrefix deletes everything below a drill's prefix until two
// listings in a row find nothing more: an upload the drill gave up on
// (another one failed) may still be completed by the store after a
// listing, and must not be left behind. It tries a bounded number of
// rounds.
func (c *client) emptyPrefix(ctx context.Context, prefix string) (int, error) {
	total, empty := 0, 0
	for round := 0; round < 10; round++ {
		n, err := c.deletePrefix(ctx, prefix)
		total += n
		if err != nil {
			return total, err
		}
		if n > 0 {
			empty = 0
		} else if empty++; empty == 2 {
			return total, nil
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return total, ctx.Err()
		}
	}
	return total, fmt.Errorf("objects keep appearing below %s", prefix)
}

// deletePrefix removes every object below prefix, and on a versioned
// bucket every version and delete marker of them, so that nothing of a
// drill stays behind (nor stays billed).
func (c *client) deletePrefix(ctx context.Context, prefix string) (int, error) {
	if prefix == "" || !strings.Contains(prefix, ".lifeboat-drill-") {
		return 0, fmt.Errorf("refusing to delete %q: not a drill's prefix", prefix)
	}
	n := 0
	p := s3api.NewListObjectVersionsPaginator(c.api, &s3api.ListObjectVersionsInput{Bucket: aws.String(c.loc.Bucket), Prefix: aws.String(prefix),
		EncodingType: types.EncodingTypeUrl})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, c.wrap("list versions in", "", err)
		}
		var ids []types.ObjectIdentifier
		add := func(key, version *string) error {
			k := aws.ToString(key)
			if page.EncodingType == types.EncodingTypeUrl {
				var err error
				if k, err = url.QueryUnescape(k); err != nil {
					return fmt.Errorf("list versions in %s: the store sent the key %q badly encoded: %v", c.loc.Where(), aws.ToString(key), err)
				}
			}
			if xmlSafe(k) {
				ids = append(ids, types.ObjectIdentifier{Key: aws.String(k), VersionId: version})
				return nil
			}
			// A key XML cannot carry goes in a URL, one at a time.
			if _, err := c.api.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(k), VersionId: version}); err != nil {
				return c.wrap("delete", k, err)
			}
			n++
			return nil
		}
		for _, v := range page.Versions {
			if err := add(v.Key, v.VersionId); err != nil {
				return n, err
			}
		}
		for _, m := range page.DeleteMarkers {
			if err := add(m.Key, m.VersionId); err != nil {
				return n, err
			}
		}
		for len(ids) > 0 {
			batch := ids[:min(len(ids), 1000)]
			ids = ids[len(batch):]
			out, err := c.api.DeleteObjects(ctx, &s3api.DeleteObjectsInput{Bucket: aws.String(c.loc.Bucket),
				Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)}, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
			if err != nil {
				return n, c.wrap("delete objects in", "", err)
			}
			if len(out.Errors) > 0 {
				e := out.Errors[0]
				return n, fmt.Errorf("delete %s: %s: %s", quoteKey(aws.ToString(e.Key)), aws.ToString(e.Code), aws.ToString(e.Message))
			}
			n += len(batch)
		}
	}
	return n, nil
}

// xmlSafe reports whether an XML 1.0 document can hold k.
func xmlSafe(k string) bool {
	for _, r := range k {
		switch {
		case r == utf8.RuneError, r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0xFFFE, r == 0xFFFF:
			return false
		}
	}
	return true
}
