package s3

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// Outcomes of one raw request in the role matrix.
const (
	ok     = "ok"
	denied = "denied" // AccessDenied: the role's policy refused it
	failed = "failed" // refused for another reason (a lock), after the policy let it through
)

// roleFixture is the objects a role's buckets hold before the role acts, put by root under the
// repository prefix "repo": a pack, the objects that open a repository, and the evidence areas.
var roleFixture = []string{"repo/data/ab/pack", "repo/config", "repo/keys/k1", "repo/drills/db/r1", "repo/audit/db/h1",
	"repo/approvals/r1/request", "repo/canary/h"}

// TestRoleMatrix holds each documented role to its word against MinIO's policy engine: every
// operation its role allows works and every other is refused. Each role gets a versioned bucket
// (puts, reads, lists, deletes of objects and versions) and one with object lock whose default
// retention is one day in compliance mode (lock changes, governance bypass); and
// ProbeRights, which lifeboat check's canary runs, finds in each what the role allows.
func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	root := srv.Client(t)
	type row struct {
		put, putAudit, putApproval, putDrill, getData, getEvidence, list, del, delVersion string
		longer, shorter, bypassDelete, bypassShorten                                      string
		// What ProbeRights finds: on the versioned bucket, then on the locked one.
		probePlain, probeLocked Rights
	}
	// A compliance lock shortened is refused by MinIO as WORM protected (InvalidRequest) before
	// it looks at the policy, whatever the role: "failed" for every role, never "ok".
	matrix := map[string]row{
		"backup": {put: ok, putAudit: ok, putApproval: ok, putDrill: ok, getData: ok, getEvidence: ok, list: ok, del: denied, delVersion: denied,
			longer: denied, shorter: failed, bypassDelete: denied, bypassShorten: denied,
			probePlain:  Rights{Delete: Refused, DeleteVersion: Refused, Retention: NotTried},
			probeLocked: Rights{Delete: Refused, DeleteVersion: NotTried, Retention: Refused}},
		"expire": {put: ok, putAudit: ok, putApproval: ok, putDrill: ok, getData: ok, getEvidence: ok, list: ok, del: ok, delVersion: ok,
			// A compliance lock cannot be shortened by anyone; governance bypass is denied
			// for deletes, but MinIO honours it on PutObjectRetention without asking for
			// s3:BypassGovernanceRetention (docs/storage.md, MinIO caveats).
			longer: ok, shorter: failed, bypassDelete: denied, bypassShorten: ok,
			probePlain:  Rights{Delete: Allowed, DeleteVersion: Allowed, Retention: NotTried},
			probeLocked: Rights{Delete: Allowed, DeleteVersion: Allowed, Retention: Allowed}},
		"restore": {put: denied, putAudit: ok, putApproval: ok, putDrill: ok, getData: ok, getEvidence: ok, list: ok, del: denied, delVersion: denied,
			longer: denied, shorter: failed, bypassDelete: denied, bypassShorten: denied,
			probePlain:  Rights{Delete: Refused, DeleteVersion: Refused, Retention: NotTried},
			probeLocked: Rights{Delete: Refused, DeleteVersion: NotTried, Retention: Refused}},
		"audit": {put: denied, putAudit: denied, putApproval: denied, putDrill: denied, getData: denied, getEvidence: ok, list: ok, del: denied, delVersion: denied,
			longer: denied, shorter: failed, bypassDelete: denied, bypassShorten: denied,
			probePlain:  Rights{Delete: Refused, DeleteVersion: NotTried, Retention: NotTried},
			probeLocked: Rights{Delete: Refused, DeleteVersion: NotTried, Retention: NotTried}},
	}
	for role, want := range matrix {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			plain, locked := role+"-plain", role+"-locked"
			srv.CreateBucket(t, plain, false)
			enableVersioning(t, root, plain)
			srv.CreateBucket(t, locked, true)
			_, err := root.PutObjectLockConfiguration(ctx, &s3api.PutObjectLockConfigurationInput{Bucket: aws.String(locked),
				ObjectLockConfiguration: &types.ObjectLockConfiguration{ObjectLockEnabled: types.ObjectLockEnabledEnabled,
					Rule: &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeCompliance, Days: aws.Int32(1)}}}})
			if err != nil {
				t.Fatalf("default retention: %v", err)
			}
			for _, b := range []string{plain, locked} {
				for _, k := range roleFixture {
					if _, err := root.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			gov := time.Now().Add(time.Hour).Truncate(time.Second)
			if _, err := root.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(locked), Key: aws.String("repo/data/gg/governed"),
				Body: strings.NewReader("governed"), ObjectLockMode: types.ObjectLockModeGovernance, ObjectLockRetainUntilDate: aws.Time(gov),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c}); err != nil {
				t.Fatal(err)
			}
			users := map[string]string{plain: role + "-plain-user", locked: role + "-locked-user"}
			for b, u := range users {
				srv.CreateUser(t, u, u+"-secret", u, s3test.Roles(b, "repo")[role])
			}
			pu, lu := srv.ClientAs(t, users[plain], users[plain]+"-secret"), srv.ClientAs(t, users[locked], users[locked]+"-secret")

			check := func(what, want string, err error) {
				t.Helper()
				var ae smithy.APIError
				got := ok
				switch {
				case err == nil:
				case errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied":
					got = denied
				default:
					got = failed
				}
				if got != want {
					t.Errorf("%s as the %s role: %s (%v), want %s", what, role, got, err, want)
				}
			}
			get := func(key string) error {
				out, err := pu.GetObject(ctx, &s3api.GetObjectInput{Bucket: aws.String(plain), Key: aws.String(key)})
				if err == nil {
					_, err = io.Copy(io.Discard, out.Body)
					out.Body.Close()
				}
				return err
			}
			put := func(key string) error {
				_, err := pu.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(plain), Key: aws.String(key),
					Body: strings.NewReader("new"), IfNoneMatch: aws.String("*")})
				return err
			}
			check("put a new pack", want.put, put("repo/data/cd/new"))
			check("put an audit head", want.putAudit, put("repo/audit/db/h2"))
			check("put an approval request", want.putApproval, put("repo/approvals/r2/request"))
			check("put a drill report", want.putDrill, put("repo/drills/db/r2"))
			check("put a WAL file", want.put, put("repo/wal/db/00000001/000000010000000000000001"))
			check("get a pack", want.getData, get("repo/data/ab/pack"))
			for _, k := range []string{"repo/config", "repo/keys/k1", "repo/drills/db/r1", "repo/audit/db/h1", "repo/approvals/r1/request"} {
				check("get "+k, want.getEvidence, get(k))
			}
			_, err = pu.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: aws.String(plain), Prefix: aws.String("repo/")})
			check("list", want.list, err)

			// The probe goes first: it must leave the canary as it found it, or
			// (a role that may delete versions) gone.
			probe := func(bucket, user string) Rights {
				t.Helper()
				be, err := New(ctx, Options{Bucket: bucket, Prefix: "repo", Endpoint: srv.Endpoint, Region: srv.Region,
					PathStyle: true, AccessKey: user, SecretKey: user + "-secret"})
				if err != nil {
					t.Fatalf("open %s as the %s role: %v", bucket, role, err)
				}
				defer be.Close()
				r, err := be.(RightsProber).ProbeRights(ctx, "canary/h")
				if err != nil {
					t.Fatalf("probe rights in %s as the %s role: %v", bucket, role, err)
				}
				t.Logf("%s: %+v", bucket, r)
				return r
			}
			for _, tc := range []struct {
				bucket string
				want   Rights
			}{{plain, want.probePlain}, {locked, want.probeLocked}} {
				got := probe(tc.bucket, users[tc.bucket])
				if got.Delete != tc.want.Delete || got.DeleteVersion != tc.want.DeleteVersion || got.Retention != tc.want.Retention {
					t.Errorf("ProbeRights in %s as the %s role = delete %v, delete version %v, retention %v; want %v, %v, %v (notes %q)",
						tc.bucket, role, got.Delete, got.DeleteVersion, got.Retention, tc.want.Delete, tc.want.DeleteVersion, tc.want.Retention, got.Notes)
				}
				if _, markers := versionsOf(t, root, tc.bucket, "repo/canary/h"); markers != 0 {
					t.Errorf("the probe in %s as the %s role left %d delete markers on the canary", tc.bucket, role, markers)
				}
			}
			if ids, _ := versionsOf(t, root, locked, "repo/canary/h"); len(ids) != 1 {
				t.Errorf("the locked canary has versions %q after the probe, want the one", ids)
			}

			ids, _ := versionsOf(t, root, plain, "repo/data/ab/pack")
			_, err = pu.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(plain), Key: aws.String("repo/drills/db/r1")})
			check("delete", want.del, err)
			_, err = pu.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(plain), Key: aws.String("repo/data/ab/pack"), VersionId: aws.String(ids[0])})
			check("delete a version", want.delVersion, err)
			if left, _ := versionsOf(t, root, plain, "repo/data/ab/pack"); (len(left) == 0) != (want.delVersion == ok) {
				t.Errorf("versions of the pack after the %s role's delete: %q", role, left)
			}

			// Locks, on the locked bucket.
			until, _, err := retentionOf(t, root, locked, "repo/data/ab/pack")
			if err != nil {
				t.Fatal(err)
			}
			setRetention := func(key string, mode types.ObjectLockRetentionMode, until time.Time, bypass bool) error {
				_, err := lu.PutObjectRetention(ctx, &s3api.PutObjectRetentionInput{Bucket: aws.String(locked), Key: aws.String(key),
					Retention:                 &types.ObjectLockRetention{Mode: mode, RetainUntilDate: aws.Time(until)},
					BypassGovernanceRetention: aws.Bool(bypass), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
				return err
			}
			check("lengthen a compliance lock", want.longer, setRetention("repo/data/ab/pack", types.ObjectLockRetentionModeCompliance, until.Add(time.Hour), false))
			check("shorten a compliance lock", want.shorter, setRetention("repo/data/ab/pack", types.ObjectLockRetentionModeCompliance, until.Add(-time.Hour), false))
			_, err = lu.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: aws.String(locked), Key: aws.String("repo/data/gg/governed"),
				VersionId: aws.String(headVersion(t, root, locked, "repo/data/gg/governed")), BypassGovernanceRetention: aws.Bool(true)})
			check("delete bypassing governance", want.bypassDelete, err)
			check("shorten a governance lock bypassing it", want.bypassShorten,
				setRetention("repo/data/gg/governed", types.ObjectLockRetentionModeGovernance, gov.Add(-30*time.Minute), true))
			if after, _, err := retentionOf(t, root, locked, "repo/data/ab/pack"); err != nil || after.Before(until) {
				t.Errorf("compliance lock after the %s role: %v (%v), was %v", role, after, err, until)
			}
		})
	}
}

// retentionOf reads the lock of key's current version.
func retentionOf(t *testing.T, c *s3api.Client, bucket, key string) (time.Time, types.ObjectLockRetentionMode, error) {
	t.Helper()
	out, err := c.GetObjectRetention(t.Context(), &s3api.GetObjectRetentionInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return time.Time{}, "", err
	}
	return aws.ToTime(out.Retention.RetainUntilDate), out.Retention.Mode, nil
}
