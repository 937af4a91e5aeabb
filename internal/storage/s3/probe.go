package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Probe is what a probe of one right found.
type Probe int

// Outcomes of a probe.
const (
	NotTried Probe = iota // the probe could not be made; Rights.Notes says why
	Refused               // the store refused the credential
	Allowed               // the store let the credential do it (or refused only for a lock)
)

func (p Probe) String() string {
	switch p {
	case Refused:
		return "refused"
	case Allowed:
		return "allowed"
	}
	return "not tried"
}

// Rights is what ProbeRights found the credential may do.
type Rights struct {
	// Delete: a plain DeleteObject (s3:DeleteObject), which on a versioned bucket stacks a
	// delete marker even over a locked version.
	Delete Probe
	// DeleteVersion: a DeleteObject of the canary's version by its id (s3:DeleteObjectVersion).
	DeleteVersion Probe
	// Retention: a PutObjectRetention lengthening the canary's lock by a second
	// (s3:PutObjectRetention); tried only on a bucket with object lock.
	Retention Probe
	// Notes say why a probe was not tried, or what it could not tell.
	Notes []string
}

// RightsProber is the capability lifeboat check's canary uses.
type RightsProber interface {
	// ProbeRights asks the store, as the raw requests a credential can send without Lifeboat's
	// care, to change the canary object called name: lengthen its lock, delete its version,
	// delete it plainly. Each request is one the backup role must be refused; a credential that
	// is allowed one has more rights than that role. The canary is a harmless object of the
	// caller's (one it wrote, or one that is missing: a plain delete needs no object); nothing
	// else is touched. A delete marker a plain delete stacked is removed again when the
	// credential may. Errors are those that leave a probe unanswered (the store unreachable).
	ProbeRights(ctx context.Context, name string) (Rights, error)
}

var _ RightsProber = (*backend)(nil)

func (b *backend) ProbeRights(ctx context.Context, name string) (Rights, error) {
	var r Rights
	if err := b.checkOpen("probe rights on", name); err != nil {
		return r, err
	}
	key := b.key(name)
	head, err := b.head(ctx, name)
	exists := err == nil
	switch {
	case exists:
	case isStatus(err, http.StatusNotFound):
		r.Notes = append(r.Notes, "no canary object to change a lock or delete a version of")
	case isStatus(err, http.StatusForbidden):
		r.Notes = append(r.Notes, "the canary object cannot be read, so no lock or version of it is changed")
	default:
		return r, b.wrap("probe rights on", name, err)
	}

	if exists {
		if r.Retention, err = b.probeRetention(ctx, key, head, &r.Notes); err != nil {
			return r, err
		}
		if r.DeleteVersion, err = b.probeDeleteVersion(ctx, key, head, &r.Notes); err != nil {
			return r, err
		}
	}

	out, err := b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(b.opts.Bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		r.Delete = Allowed
		if aws.ToBool(out.DeleteMarker) && aws.ToString(out.VersionId) != "" {
			// Take the marker off again: the canary is as it was.
			_, err := b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(b.opts.Bucket), Key: aws.String(key),
				VersionId: out.VersionId})
			if err != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("the delete marker the probe stacked on %s stays: %v", name, err))
			}
		}
	case isDenied(err):
		r.Delete = Refused
	default:
		return r, b.wrap("probe delete of", name, err)
	}
	return r, nil
}

// probeRetention lengthens the canary's lock by a second, or gives an unlocked canary on a bucket
// with object lock one of a second: harmless either way.
func (b *backend) probeRetention(ctx context.Context, key string, head *s3api.HeadObjectOutput, notes *[]string) (Probe, error) {
	mode := types.ObjectLockRetentionMode(head.ObjectLockMode)
	from := time.Now()
	if head.ObjectLockRetainUntilDate != nil && head.ObjectLockRetainUntilDate.After(from) {
		from = *head.ObjectLockRetainUntilDate
	}
	if mode == "" {
		cfg, err := b.client.GetObjectLockConfiguration(ctx, &s3api.GetObjectLockConfigurationInput{Bucket: aws.String(b.opts.Bucket)})
		var ae smithy.APIError
		switch {
		case errors.As(err, &ae) && ae.ErrorCode() == "ObjectLockConfigurationNotFoundError",
			err == nil && (cfg.ObjectLockConfiguration == nil || cfg.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled):
			*notes = append(*notes, "the bucket has no object lock: no lock to change")
			return NotTried, nil
		case isDenied(err):
			*notes = append(*notes, "the bucket's object lock configuration cannot be read: no lock change tried")
			return NotTried, nil
		case err != nil:
			return NotTried, b.wrap("probe retention of", key, err)
		}
		mode = types.ObjectLockRetentionModeCompliance
	}
	in := &s3api.PutObjectRetentionInput{Bucket: aws.String(b.opts.Bucket), Key: aws.String(key),
		Retention:         &types.ObjectLockRetention{Mode: mode, RetainUntilDate: aws.Time(from.Add(time.Second).Truncate(time.Millisecond))},
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, VersionId: head.VersionId}
	_, err := b.client.PutObjectRetention(ctx, in)
	switch {
	case err == nil:
		return Allowed, nil
	case isDenied(err):
		return Refused, nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		*notes = append(*notes, "the store did not take the lock change for another reason: "+ae.ErrorCode()+": "+ae.ErrorMessage())
		return NotTried, nil
	}
	return NotTried, b.wrap("probe retention of", key, err)
}

// probeDeleteVersion deletes the canary's version by its id. A locked version that MinIO refuses
// as WORM protected (InvalidRequest) was refused for its lock, not for want of the right. AWS
// answers AccessDenied either way, so a locked canary's refusal is no answer.
func (b *backend) probeDeleteVersion(ctx context.Context, key string, head *s3api.HeadObjectOutput, notes *[]string) (Probe, error) {
	v := aws.ToString(head.VersionId)
	if v == "" {
		*notes = append(*notes, "the bucket keeps no versions: a version delete is the plain delete")
		return NotTried, nil
	}
	_, err := b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(b.opts.Bucket), Key: aws.String(key), VersionId: aws.String(v)})
	var ae smithy.APIError
	switch {
	case err == nil:
		return Allowed, nil
	case isDenied(err) && locked(head):
		*notes = append(*notes, "the canary is locked, and a store may refuse a locked version's delete as access denied whatever the rights (AWS): the version delete tells nothing")
		return NotTried, nil
	case isDenied(err):
		return Refused, nil
	case errors.As(err, &ae) && ae.ErrorCode() == "InvalidRequest":
		return Allowed, nil
	}
	return NotTried, b.wrap("probe version delete of", key, err)
}

// locked reports whether the version HEAD describes is under a lock or a legal hold now.
func locked(head *s3api.HeadObjectOutput) bool {
	return head.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn ||
		head.ObjectLockRetainUntilDate != nil && head.ObjectLockRetainUntilDate.After(time.Now())
}

// isDenied reports a refusal for want of rights.
func isDenied(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied" {
		return true
	}
	return isStatus(err, http.StatusForbidden)
}

// isStatus reports an answer with the HTTP status code (a HEAD's answer has no error code).
func isStatus(err error, code int) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == code
}
