package health

import (
	"fmt"
	"strings"
)

// CheckRole is the check that a repository's credential has no more rights than its role.
const CheckRole = "role"

// RoleFacts are what the canary found of the credential of a repository that names its role.
type RoleFacts struct {
	Role string
	// More are the rights found beyond the role ("can delete"), Less those the role needs that
	// the credential lacks ("cannot create objects").
	More, Less []string
	// Probed says what was tried and how it went, for the passing message.
	Probed []string
	// Error is why the probes could not be made; "" when they were.
	Error string
}

// role: the credential may do what its role may, and nothing more that a harmless canary can
// show. A credential with more rights than the backup role (one that may delete) defeats the
// write-once set-up of docs/storage.md as surely as no set-up at all.
func role(repository string, f *RoleFacts) Result {
	r := Result{Check: CheckRole, Subject: repository}
	switch {
	case f.Error != "":
		r.Message = fmt.Sprintf("the credential of repository %s could not be probed for the %s role: %s", repository, f.Role, f.Error)
	case len(f.More) > 0:
		r.Message = fmt.Sprintf("credential of repository %s %s: it has more rights than the %s role (docs/storage.md, Roles)",
			repository, strings.Join(f.More, " and "), f.Role)
	case len(f.Less) > 0:
		r.Message = fmt.Sprintf("credential of repository %s %s: the %s role needs it (docs/storage.md, Roles)",
			repository, strings.Join(f.Less, " and "), f.Role)
	default:
		r.OK = true
		r.Message = fmt.Sprintf("no more rights than the %s role: %s", f.Role, strings.Join(f.Probed, ", "))
	}
	return r
}
