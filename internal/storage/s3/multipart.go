package s3

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Multipart uploads keep the contract the single PutObject keeps:
//
//   - Atomic: the store shows nothing under the name until
//     CompleteMultipartUpload, which commits every part at once. Any
//     failure, the context's end included, aborts the upload, so that its
//     parts are neither kept nor billed. A process killed before it can
//     abort, a lost answer to CreateMultipartUpload (no upload id to abort)
//     or a store out of reach for the abort leave an upload behind,
//     invisible to readers; the bucket's lifecycle rule (docs/storage.md)
//     removes it.
//   - Create-if-absent: CompleteMultipartUpload carries If-None-Match: *.
//     MinIO (at the version the tests pin) and AWS check it under the
//     object's lock as they commit, so of two uploads racing for one name
//     exactly one wins and the other gets ErrExists. A HEAD before the
//     upload only saves sending gigabytes for a name already taken (a retry
//     whose earlier attempt stored the object but lost the answer); it
//     decides nothing.
//   - Checked end to end: each part carries the CRC32C of its bytes, which
//     the store verifies before it keeps the part, and the upload is
//     created with a full-object CRC32C, which CompleteMultipartUpload
//     states (combined here from the parts' checksums) and the store checks
//     against the parts it holds. The object then carries the CRC32C of its
//     whole content, as a single PutObject's does, and Get verifies a
//     download against it. A composite checksum, the default type, would
//     end in "-N", and the SDK skips checking such a checksum on download.
//
// There is no retry of a single part here: a failed part fails the Put,
// and the retry decorator starts a new upload.

// castagnoli is the CRC32C table; S3 names the checksum CRC32C.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// abortTimeout bounds the abort of a failed upload, which runs even when
// the Put's context has ended.
const abortTimeout = 30 * time.Second

// partJob is one part on its way from the body to the store.
type partJob struct {
	num  int32         // 1-based, as S3 numbers parts
	body io.ReadSeeker // the part's bytes, from offset 0
	size int64
	buf  []byte // the buffer body reads from, when it must be given back
}

// putMultipart stores body as a multipart upload of parallel parts.
func (b *backend) putMultipart(ctx context.Context, name string, body io.ReadSeeker, size int64) (err error) {
	if _, err := b.head(ctx, name); err == nil {
		return fmt.Errorf("put %s: %w", name, storage.ErrExists)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	create := &s3api.CreateMultipartUploadInput{
		Bucket:            aws.String(b.opts.Bucket),
		Key:               aws.String(b.key(name)),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumType:      types.ChecksumTypeFullObject,
	}
	// As for PutObject, the lock is part of the upload: the object is
	// locked from the moment it exists.
	if b.lockMode != "" {
		create.ObjectLockMode = types.ObjectLockMode(b.lockMode)
		create.ObjectLockRetainUntilDate = aws.Time(b.now().Add(b.opts.RetainFor))
	}
	out, err := b.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return b.wrap("put", name, err)
	}
	uploadID := aws.ToString(out.UploadId)
	defer func() {
		if err == nil {
			return
		}
		if aerr := b.abort(ctx, name, uploadID); aerr != nil {
			err = fmt.Errorf("%w (its unfinished upload %s could not be aborted either; the bucket's lifecycle rule will remove it: %v)", err, uploadID, aerr)
		}
	}()
	parts, sum, err := b.uploadParts(ctx, name, uploadID, body, size)
	if err != nil {
		return err
	}
	_, err = b.client.CompleteMultipartUpload(ctx, &s3api.CompleteMultipartUploadInput{
		Bucket:          aws.String(b.opts.Bucket),
		Key:             aws.String(b.key(name)),
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     aws.String("*"),
		ChecksumType:    types.ChecksumTypeFullObject,
		ChecksumCRC32C:  aws.String(sum),
	})
	if err != nil {
		return b.wrap("put", name, err)
	}
	return nil
}

// abort removes a failed upload and its parts. An upload that is already
// gone (NoSuchUpload) needs nothing: its complete went through after all,
// with the answer lost, or something else removed it.
func (b *backend) abort(ctx context.Context, name, uploadID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := b.client.AbortMultipartUpload(ctx, &s3api.AbortMultipartUploadInput{
		Bucket:   aws.String(b.opts.Bucket),
		Key:      aws.String(b.key(name)),
		UploadId: aws.String(uploadID),
	})
	var nsu *types.NoSuchUpload
	var ae smithy.APIError
	if err == nil || errors.As(err, &nsu) || errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload" {
		return nil
	}
	return err
}

// partSizeFor returns the part size for an object of size bytes: the
// configured one, or larger if that would take more parts than S3 allows.
func (b *backend) partSizeFor(size int64) int64 {
	ps := b.partSize
	if need := (size + maxParts - 1) / maxParts; need > ps {
		const mib = 1 << 20
		ps = (need + mib - 1) / mib * mib
	}
	return ps
}

// uploadParts uploads body in parts, b.parallel at a time, and returns the
// parts for CompleteMultipartUpload and the full object's CRC32C in the
// form S3 takes (base64 of the big-endian value).
//
// A body that is an io.ReaderAt (a file, a bytes.Reader) is read in place,
// each part through its own section, with no copy. Any other body is read
// in order by one goroutine into at most b.parallel buffers of a part each,
// which the uploads give back when they are done with them.
func (b *backend) uploadParts(ctx context.Context, name, uploadID string, body io.ReadSeeker, size int64) ([]types.CompletedPart, string, error) {
	partSize := b.partSizeFor(size)
	n := int((size + partSize - 1) / partSize)
	workers := min(b.parallel, n)
	parts := make([]types.CompletedPart, n)
	crcs := make([]uint32, n)

	ra, inPlace := body.(io.ReaderAt)
	var free chan []byte
	if !inPlace {
		// Tokens for the buffers, allocated on first use: an object of
		// two parts never costs more than two.
		free = make(chan []byte, workers)
		for range workers {
			free <- nil
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan partJob)
	g.Go(func() error {
		defer close(jobs)
		for i := range n {
			off := int64(i) * partSize
			job := partJob{num: int32(i + 1), size: min(partSize, size-off)}
			if inPlace {
				job.body = io.NewSectionReader(ra, off, job.size)
			} else {
				select {
				case job.buf = <-free:
				case <-gctx.Done():
					return gctx.Err()
				}
				if job.buf == nil {
					job.buf = make([]byte, min(partSize, size))
				}
				if _, err := io.ReadFull(body, job.buf[:job.size]); err != nil {
					return fmt.Errorf("put %s: read part %d: %w", name, job.num, err)
				}
				job.body = bytes.NewReader(job.buf[:job.size])
			}
			select {
			case jobs <- job:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			for job := range jobs {
				part, crc, err := b.uploadPart(gctx, name, uploadID, job)
				if job.buf != nil {
					free <- job.buf // never blocks: there are only as many buffers as room
				}
				if err != nil {
					return err
				}
				parts[job.num-1], crcs[job.num-1] = part, crc
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	whole := crcs[0]
	for i := 1; i < n; i++ {
		whole = crc32cCombine(whole, crcs[i], min(partSize, size-int64(i)*partSize))
	}
	return parts, crcBase64(whole), nil
}

// uploadPart computes the part's CRC32C from the body, then uploads the
// part with it; the store refuses a part whose bytes do not match.
func (b *backend) uploadPart(ctx context.Context, name, uploadID string, job partJob) (types.CompletedPart, uint32, error) {
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, job.body)
	if err != nil {
		return types.CompletedPart{}, 0, fmt.Errorf("put %s: read part %d: %w", name, job.num, err)
	}
	if n != job.size {
		return types.CompletedPart{}, 0, fmt.Errorf("put %s: the body ended %d bytes into part %d of %d bytes, short of the size given", name, n, job.num, job.size)
	}
	if _, err := job.body.Seek(0, io.SeekStart); err != nil {
		return types.CompletedPart{}, 0, fmt.Errorf("put %s: rewind part %d: %w", name, job.num, err)
	}
	crc := h.Sum32()
	sum := crcBase64(crc)
	out, err := b.client.UploadPart(ctx, &s3api.UploadPartInput{
		Bucket:            aws.String(b.opts.Bucket),
		Key:               aws.String(b.key(name)),
		UploadId:          aws.String(uploadID),
		PartNumber:        aws.Int32(job.num),
		Body:              job.body,
		ContentLength:     aws.Int64(job.size),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumCRC32C:    aws.String(sum),
	})
	op := fmt.Sprintf("put part %d of", job.num)
	if err != nil {
		return types.CompletedPart{}, 0, b.wrap(op, name, err)
	}
	// An answer without an ETag is not the store's acknowledgement (a
	// proxy's page, say): the part cannot be named in the complete, so
	// the upload is tried again.
	if aws.ToString(out.ETag) == "" {
		return types.CompletedPart{}, 0, fmt.Errorf("%s %s: the answer carries no ETag", op, name)
	}
	if got := aws.ToString(out.ChecksumCRC32C); got != "" && got != sum {
		return types.CompletedPart{}, 0, fmt.Errorf("%s %s: the store acknowledged CRC32C %s for a part whose CRC32C is %s", op, name, got, sum)
	}
	return types.CompletedPart{PartNumber: aws.Int32(job.num), ETag: out.ETag, ChecksumCRC32C: aws.String(sum)}, crc, nil
}

// crcBase64 renders a CRC32C as S3's checksum headers carry it.
func crcBase64(crc uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc)
	return base64.StdEncoding.EncodeToString(b[:])
}

// crc32cCombine returns the CRC32C of A followed by B, given the CRC32C of
// A, that of B and B's length, without reading either again: parts are
// checksummed in parallel, and the whole object's checksum is made from
// theirs.
//
// CRC arithmetic is in GF(2)[x] modulo the CRC polynomial. Appending n
// bytes to A multiplies A's remainder by x^(8n), and the standard pre- and
// post-inversion of the CRC cancel out between the two terms, so
// crc(A||B) = crc(A)·x^(8·len(B)) + crc(B).
func crc32cCombine(crcA, crcB uint32, lenB int64) uint32 {
	return gf2Mul(crcA, xPow8n(lenB)) ^ crcB
}

// The polynomials below are 32-bit values in the reflected bit order the
// CRC uses: bit 31 holds the coefficient of x^0, bit 0 that of x^31.
const (
	castagnoliReflected = 0x82f63b78 // x^32 is implied
	gf2One              = 1 << 31    // the polynomial 1
	gf2X8               = 1 << 23    // x^8
)

// gf2Mul returns a·b modulo the Castagnoli polynomial.
func gf2Mul(a, b uint32) uint32 {
	var p uint32
	for bit := uint32(gf2One); bit != 0; bit >>= 1 {
		if a&bit != 0 {
			p ^= b
		}
		// b·x: every coefficient moves up a degree; an x^32 that appears
		// is reduced by the polynomial.
		if b&1 != 0 {
			b = b>>1 ^ castagnoliReflected
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n returns x^(8n) modulo the Castagnoli polynomial, by squaring.
func xPow8n(n int64) uint32 {
	result, base := uint32(gf2One), uint32(gf2X8)
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			result = gf2Mul(result, base)
		}
		base = gf2Mul(base, base)
	}
	return result
}
