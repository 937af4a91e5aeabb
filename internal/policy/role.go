package policy

import "strings"

// Roles of a repository's credential (the role key): what the store lets the credential Lifeboat
// runs with do, as the policies of docs/storage.md ("Roles") give it. lifeboat check holds the
// credential to its role: a canary shows whether it may do more.
const (
	RoleBackup  = "backup"  // create and read objects; never delete nor change a lock
	RoleExpire  = "expire"  // also delete, and lengthen locks
	RoleRestore = "restore" // read; create only approvals, audit seals and drill reports
	RoleAudit   = "audit"   // read the audit trail and the drill reports only
)

// roles lists the roles in the order messages name them.
var roles = []string{RoleBackup, RoleExpire, RoleRestore, RoleAudit}

// role checks a repository's role key: one of the roles, and only where a store's policy can
// bind a credential to it (S3). A directory's rights are its owner's, which no canary tests.
func (c *checker) role(path string, r *Repository) {
	if r.Role == "" {
		return
	}
	known := false
	for _, k := range roles {
		known = known || r.Role == k
	}
	if !known {
		c.add(path+".role", r.Line, "role must be one of %s, not %q", strings.Join(roles, ", "), r.Role)
		return
	}
	if !strings.HasPrefix(r.URL, "s3://") {
		c.add(path+".role", r.Line, "role applies to s3 repositories only (a directory's rights are those of its owner)")
	}
}
