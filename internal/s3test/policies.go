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
	//go:embed testdata/restore-role.json
	restoreRole string
	//go:embed testdata/audit-role.json
	auditRole string
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

// RestoreRolePolicy returns the policy of the credential that restores from the repository at
// prefix in bucket ("" for one at the bucket's root): list and read objects and their versions,
// read locks, and create objects in the repository's approvals/, audit/ and drills/ areas only (a
// protected restore stores its approval request and marks it used; every action seals the audit
// chain's head; a drill stores its report); every other write, every delete and lock change is
// denied.
func RestoreRolePolicy(bucket, prefix string) string {
	return forRepository(restoreRole, bucket, prefix)
}

// AuditRolePolicy returns the policy of the audit reader of the repository at prefix in bucket:
// it lists the bucket but reads only the objects that open the repository (config, keys/) and its
// evidence (audit/, drills/, approvals/); it writes nothing.
func AuditRolePolicy(bucket, prefix string) string { return forRepository(auditRole, bucket, prefix) }

// forRepository fills in a policy confined to one repository, written with BUCKET/PREFIX/.
func forRepository(policy, bucket, prefix string) string {
	at := bucket + "/"
	if prefix != "" {
		at += prefix + "/"
	}
	return forBucket(strings.ReplaceAll(policy, "arn:aws:s3:::BUCKET/PREFIX/", "arn:aws:s3:::"+at), bucket)
}

// Roles maps the role names of the policy's role key to their policies for bucket, the repository
// being at prefix (the audit reader's is confined to it).
func Roles(bucket, prefix string) map[string]string {
	return map[string]string{"backup": BackupRolePolicy(bucket), "expire": ExpireRolePolicy(bucket),
		"restore": RestoreRolePolicy(bucket, prefix), "audit": AuditRolePolicy(bucket, prefix)}
}

// AWSRequireIfNoneMatchPolicy returns the AWS-only bucket policy statement that refuses a PutObject
// without If-None-Match. MinIO's policy engine does not know the s3:if-none-match key.
func AWSRequireIfNoneMatchPolicy(bucket string) string {
	return forBucket(awsRequireIfNoneMatch, bucket)
}

func forBucket(policy, bucket string) string {
	return strings.ReplaceAll(policy, "arn:aws:s3:::BUCKET", "arn:aws:s3:::"+bucket)
}
