package policy

import (
	"strings"
	"testing"
)

func TestRoleKey(t *testing.T) {
	t.Parallel()
	for _, role := range []string{RoleBackup, RoleExpire, RoleRestore, RoleAudit} {
		p, err := parseText(t, `repositories:
  - name: primary
    url: s3://backups/db?endpoint=http://127.0.0.1:9000&path_style=true
    key_file: /etc/lifeboat/repo.key
    role: `+role+`
  - name: other
    url: s3://backups/other
    key_file: /etc/lifeboat/repo.key
`+assetOK)
		if err != nil {
			t.Fatalf("role %s: %v", role, err)
		}
		if got := p.Repositories[0].Role; got != role {
			t.Errorf("role %s read as %q", role, got)
		}
		if got := p.Repositories[1].Role; got != "" {
			t.Errorf("a repository without the key has role %q", got)
		}
	}
}

func TestRoleErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{
			name: "unknown role",
			src: `repositories:
  - name: primary
    url: s3://backups/db
    key_file: /etc/lifeboat/repo.key
    role: admin
` + assetOK,
			want: []string{`lifeboat.yaml:5: repositories[0].role: role must be one of backup, expire, restore, audit, not "admin"`},
		},
		{
			name: "role of a directory",
			src: repoOK + `  - name: second
    url: file:///srv/second
    key_file: /etc/lifeboat/repo.key
    role: backup
` + assetOK,
			want: []string{`lifeboat.yaml:8: repositories[1].role: role applies to s3 repositories only (a directory's rights are those of its owner)`},
		},
		{
			name: "role as a list",
			src: `repositories:
  - name: primary
    url: s3://backups/db
    key_file: /etc/lifeboat/repo.key
    role: [backup, expire]
` + assetOK,
			want: []string{`lifeboat.yaml:5: repositories[0].role: expected a single value, found a list`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseText(t, tc.src)
			if err == nil {
				t.Fatalf("parse succeeded (%+v), want errors:\n%s", p, strings.Join(tc.want, "\n"))
			}
			var got []string
			for _, fe := range problemsOf(t, err) {
				got = append(got, fe.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
