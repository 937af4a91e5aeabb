package health

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

func TestRoleCheck(t *testing.T) {
	t.Parallel()
	p := &policy.Policy{Repositories: []policy.Repository{{Name: "primary", Role: policy.RoleBackup}, {Name: "dr", Role: policy.RoleBackup},
		{Name: "plain"}, {Name: "broken", Role: policy.RoleRestore}, {Name: "short", Role: policy.RoleExpire}}}
	f := Facts{Now: time.Now(), Roles: map[string]*RoleFacts{
		"primary": {Role: policy.RoleBackup, Probed: []string{"can create objects", "cannot delete"}},
		"dr":      {Role: policy.RoleBackup, More: []string{"can delete", "can delete object versions"}},
		"broken":  {Role: policy.RoleRestore, Error: "open: connection refused"},
		"short":   {Role: policy.RoleExpire, Less: []string{"cannot delete"}},
	}}
	got := map[string]Result{}
	for _, r := range Evaluate(p, f) {
		if r.Check == CheckRole {
			got[r.Subject] = r
		}
	}
	want := map[string]struct {
		ok  bool
		msg string
	}{
		"primary": {true, "no more rights than the backup role: can create objects, cannot delete"},
		"dr":      {false, "credential of repository dr can delete and can delete object versions: it has more rights than the backup role (docs/storage.md, Roles)"},
		"broken":  {false, "the credential of repository broken could not be probed for the restore role: open: connection refused"},
		"short":   {false, "credential of repository short cannot delete: the expire role needs it (docs/storage.md, Roles)"},
	}
	if len(got) != len(want) {
		t.Fatalf("role results for %d repositories, want %d (none for a repository without a role): %+v", len(got), len(want), got)
	}
	for name, w := range want {
		r := got[name]
		if r.OK != w.ok || r.Message != w.msg {
			t.Errorf("%s: ok %v %q, want ok %v %q", name, r.OK, r.Message, w.ok, w.msg)
		}
	}
	if !strings.Contains(got["dr"].Message, "more rights than the backup role") {
		t.Error("the alert does not say the credential has more rights than its role")
	}
}
