package s3test

import (
	_ "embed"
	"strings"
)

// The IAM policy documents docs/storage.md gives operators, kept here so that tests run them
// against MinIO's policy engine; a test checks that the docs show the same text. In the files the
// bucket is the placeholder BUCKET.
var (
	//go:embed testdata/backup-role.json
	backupRole string
	//go:embed testdata/backup-role-object-lock.json
	backupRoleObjectLock string
	//go:embed testdata/expire-role.json
	expireRole string
	//go:embed testdata/aws-require-if-none-match.json
	awsRequireIfNoneMatch string
)

// BackupRolePolicy returns the recommended put-only policy for bucket, for a bucket that locks
// every upload by its default retention: list, read and create objects, list and read their
// versions, read retention; delete, any retention change (s3:PutObjectRetention, so that the role
// cannot lock junk for years), legal holds and governance bypass are denied.
func BackupRolePolicy(bucket string) string { return forBucket(backupRole, bucket) }

// BackupRoleObjectLockPolicy returns the put-only policy for the alternative set-up, a repository
// with object_lock whose uploads carry their own lock: BackupRolePolicy with s3:PutObjectRetention
// allowed, as S3 requires for an upload that carries a lock.
func BackupRoleObjectLockPolicy(bucket string) string { return forBucket(backupRoleObjectLock, bucket) }

// ExpireRolePolicy returns the policy of the credential that expires snapshots in bucket: list,
// read and delete objects and versions, read and extend retention, set legal holds; governance
// bypass is denied.
func ExpireRolePolicy(bucket string) string { return forBucket(expireRole, bucket) }

// AWSRequireIfNoneMatchPolicy returns the AWS-only bucket policy statement that refuses a PutObject
// without If-None-Match. MinIO's policy engine does not know the s3:if-none-match key.
func AWSRequireIfNoneMatchPolicy(bucket string) string {
	return forBucket(awsRequireIfNoneMatch, bucket)
}

func forBucket(policy, bucket string) string {
	return strings.ReplaceAll(policy, "arn:aws:s3:::BUCKET", "arn:aws:s3:::"+bucket)
}
