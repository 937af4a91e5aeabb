package s3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// The versions of objects on a versioned bucket (storage.Versioned). A
// credential that may put may overwrite too, on MinIO and on AWS without
// the bucket policy that requires If-None-Match (docs/storage.md); with
// versioning on, the original stays stored and readers find it here.

var _ storage.Versioned = (*backend)(nil)

// Versioning reports the bucket's versioning (s3:GetBucketVersioning).
func (b *backend) Versioning(ctx context.Context) (storage.Versioning, error) {
	if err := b.checkOpen("read versioning of", b.opts.Bucket); err != nil {
		return "", err
	}
	out, err := b.client.GetBucketVersioning(ctx, &s3api.GetBucketVersioningInput{Bucket: aws.String(b.opts.Bucket)})
	if err != nil {
		return "", b.wrap("read versioning of", "", err)
	}
	switch out.Status {
	case types.BucketVersioningStatusEnabled:
		return storage.VersioningEnabled, nil
	case types.BucketVersioningStatusSuspended:
		return storage.VersioningSuspended, nil
	}
	return storage.VersioningOff, nil
}

// ListVersions lists versions and delete markers (s3:ListBucketVersions).
// The store answers them in two lists per page; they are merged in the
// contract's order (name, then newest first), which holds across pages
// because the store pages through that same order.
func (b *backend) ListVersions(ctx context.Context, prefix string, fn func(storage.Version) error) error {
	if err := b.checkOpen("list versions of", fmt.Sprintf("%q", prefix)); err != nil {
		return err
	}
	strip := ""
	if b.opts.Prefix != "" {
		strip = b.opts.Prefix + "/"
	}
	in := &s3api.ListObjectVersionsInput{Bucket: aws.String(b.opts.Bucket), Prefix: aws.String(b.key(prefix))}
	for {
		page, err := b.client.ListObjectVersions(ctx, in)
		if err != nil {
			return b.wrap("list versions of", prefix, err)
		}
		var vs []storage.Version
		for _, o := range page.Versions {
			vs = append(vs, storage.Version{Name: strings.TrimPrefix(aws.ToString(o.Key), strip), ID: aws.ToString(o.VersionId),
				ModTime: aws.ToTime(o.LastModified), Size: aws.ToInt64(o.Size), Latest: aws.ToBool(o.IsLatest)})
		}
		for _, m := range page.DeleteMarkers {
			vs = append(vs, storage.Version{Name: strings.TrimPrefix(aws.ToString(m.Key), strip), ID: aws.ToString(m.VersionId),
				ModTime: aws.ToTime(m.LastModified), Latest: aws.ToBool(m.IsLatest), DeleteMarker: true})
		}
		// Stable, so that two versions stored within the store's time
		// resolution keep the store's order; the latest goes first.
		slices.SortStableFunc(vs, func(x, y storage.Version) int {
			if c := cmp.Compare(x.Name, y.Name); c != 0 {
				return c
			}
			if x.Latest != y.Latest {
				if x.Latest {
					return -1
				}
				return 1
			}
			return y.ModTime.Compare(x.ModTime)
		})
		for _, v := range vs {
			if storage.ValidateName(v.Name) != nil {
				continue // not a name a repository writes, as in List
			}
			if err := fn(v); err != nil {
				return err
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}

// GetVersion opens one version whole (s3:GetObjectVersion), with the
// store's checksum checked as for Get.
func (b *backend) GetVersion(ctx context.Context, name, id string) (io.ReadCloser, error) {
	if err := b.checkVersionCall("get", name, id); err != nil {
		return nil, err
	}
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{
		Bucket:       aws.String(b.opts.Bucket),
		Key:          aws.String(b.key(name)),
		VersionId:    aws.String(id),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return nil, b.wrapVersion("get", name, id, err)
	}
	return damageReader{out.Body}, nil
}

// GetVersionRange opens part of one version.
func (b *backend) GetVersionRange(ctx context.Context, name, id string, offset, length int64) (io.ReadCloser, error) {
	if err := b.checkVersionCall("get range of", name, id); err != nil {
		return nil, err
	}
	if offset < 0 || length <= 0 {
		return nil, storage.Permanent(fmt.Errorf("get %s version %s: invalid range %d+%d", name, id, offset, length))
	}
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{
		Bucket:    aws.String(b.opts.Bucket),
		Key:       aws.String(b.key(name)),
		VersionId: aws.String(id),
		Range:     aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)),
	})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
			return nil, storage.Permanent(fmt.Errorf("get %s version %s: range %d+%d is past the end", name, id, offset, length))
		}
		return nil, b.wrapVersion("get", name, id, err)
	}
	if out.ContentLength == nil || *out.ContentLength != length {
		out.Body.Close()
		return nil, storage.Permanent(fmt.Errorf("get %s version %s: range %d+%d is past the end", name, id, offset, length))
	}
	return out.Body, nil
}

// RestoreVersion copies the version over its own name (s3:GetObjectVersion
// on the source, s3:PutObject on the name). The copy is a new version,
// locked by the bucket's default retention, or, with a lock mode set, by
// the backend's own lock, as any upload; the object's metadata and
// checksum travel with it. Nothing is deleted.
func (b *backend) RestoreVersion(ctx context.Context, name, id string) error {
	if err := b.checkVersionCall("restore", name, id); err != nil {
		return err
	}
	in := &s3api.CopyObjectInput{
		Bucket:            aws.String(b.opts.Bucket),
		Key:               aws.String(b.key(name)),
		CopySource:        aws.String(b.opts.Bucket + "/" + b.key(name) + "?versionId=" + url.QueryEscape(id)),
		MetadataDirective: types.MetadataDirectiveCopy,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	}
	if b.lockMode != "" {
		in.ObjectLockMode = types.ObjectLockMode(b.lockMode)
		in.ObjectLockRetainUntilDate = aws.Time(b.now().Add(b.opts.RetainFor))
	}
	if _, err := b.client.CopyObject(ctx, in); err != nil {
		return b.wrapVersion("restore", name, id, err)
	}
	return nil
}

func (b *backend) checkVersionCall(op, name, id string) error {
	if err := b.checkOpen(op, name); err != nil {
		return err
	}
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	if id == "" {
		return storage.Permanent(fmt.Errorf("%s %s: no version id", op, name))
	}
	return nil
}

// wrapVersion is wrap for calls on one version: a version that is gone
// (NoSuchVersion) is not found.
func (b *backend) wrapVersion(op, name, id string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchVersion" {
		return fmt.Errorf("%s %s version %s: %w", op, name, id, storage.ErrNotFound)
	}
	return b.wrap(op, name+" version "+id, err)
}
