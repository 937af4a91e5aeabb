package app

import (
	"regexp"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// TestJudgeRole holds what the canary found against each role. What the store answers is tested
// against MinIO (internal/storage/s3 TestRoleMatrix, cmd/lifeboat TestRolesEndToEnd).
func TestJudgeRole(t *testing.T) {
	t.Parallel()
	const (
		A = s3.Allowed
		R = s3.Refused
		N = s3.NotTried
	)
	for _, tc := range []struct {
		name       string
		role, lock string
		write      s3.Probe
		got        s3.Rights
		more, less []string
	}{
		{name: "backup as it should be", role: policy.RoleBackup, write: A, got: s3.Rights{Delete: R, DeleteVersion: N, Retention: R}},
		{name: "backup that can delete", role: policy.RoleBackup, write: A, got: s3.Rights{Delete: A, DeleteVersion: A, Retention: R},
			more: []string{"can delete", "can delete object versions"}},
		{name: "backup that can change locks", role: policy.RoleBackup, write: A, got: s3.Rights{Delete: R, DeleteVersion: R, Retention: A},
			more: []string{"can change retention"}},
		{name: "backup of the object_lock set-up sets locks", role: policy.RoleBackup, lock: "compliance", write: A,
			got: s3.Rights{Delete: R, DeleteVersion: N, Retention: A}},
		{name: "backup that cannot write", role: policy.RoleBackup, write: R, got: s3.Rights{Delete: R},
			less: []string{"cannot create objects"}},
		{name: "expire as it should be", role: policy.RoleExpire, write: A, got: s3.Rights{Delete: A, DeleteVersion: A, Retention: A}},
		{name: "expire that cannot delete", role: policy.RoleExpire, write: A, got: s3.Rights{Delete: R, DeleteVersion: R, Retention: A},
			less: []string{"cannot delete", "cannot delete object versions"}},
		{name: "restore as it should be", role: policy.RoleRestore, write: R, got: s3.Rights{Delete: R, DeleteVersion: N, Retention: N}},
		{name: "restore that can write", role: policy.RoleRestore, write: A, got: s3.Rights{Delete: R, DeleteVersion: R, Retention: R},
			more: []string{"can create objects"}},
		{name: "audit with a root credential", role: policy.RoleAudit, write: A, got: s3.Rights{Delete: A, DeleteVersion: A, Retention: A},
			more: []string{"can create objects", "can delete", "can delete object versions", "can change retention"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &health.RoleFacts{Role: tc.role}
			judgeRole(f, &policy.Repository{Name: "primary", Role: tc.role, ObjectLock: tc.lock}, tc.write, tc.got)
			if strings.Join(f.More, "|") != strings.Join(tc.more, "|") || strings.Join(f.Less, "|") != strings.Join(tc.less, "|") {
				t.Errorf("more %q less %q, want more %q less %q", f.More, f.Less, tc.more, tc.less)
			}
			if len(f.Probed) == 0 {
				t.Error("nothing probed is said")
			}
		})
	}
}

func TestCanaryHost(t *testing.T) {
	t.Parallel()
	h := canaryHost()
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`).MatchString(h) {
		t.Fatalf("canary host %q is not a name segment", h)
	}
}
