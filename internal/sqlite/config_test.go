package sqlite

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

func parsePolicy(src string) (*policy.Policy, error) {
	return policy.Parse([]byte(src), "lifeboat.yaml", policy.Kinds{lifeboat.KindSQLite: kind{}})
}

const repoOK = `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
`

func TestDecodeConfig(t *testing.T) {
	t.Parallel()
	p, err := parsePolicy(repoOK + `assets:
  - name: staging-db
    kind: sqlite
    path: /app/data//drop.db
    repositories: [primary]
`)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := configOf(&p.Assets[0]); err != nil || c.Path != "/app/data/drop.db" {
		t.Errorf("sqlite asset: %+v, %v", c, err)
	}
	if _, err := configOf(&policy.Asset{Name: "built"}); err == nil || !strings.Contains(err.Error(), "asset built: no sqlite settings") {
		t.Errorf("an asset without configuration: %v", err)
	}
}

// TestConfigErrors: each problem of a sqlite asset's key, pinned to its
// line and field.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ src, want string }{
		{repoOK + `assets:
  - name: staging
    kind: sqlite
    path: relative.db
    repositories: [primary]
`, `lifeboat.yaml:8: assets[0].path: path "relative.db" must be an absolute path`},
		{repoOK + `assets:
  - name: staging
    kind: sqlite
    repositories: [primary]
`, `lifeboat.yaml:6: assets[0].path: path is required: the database file of a sqlite asset`},
		{repoOK + `assets:
  - name: staging
    kind: sqlite
    path: ${LB_TEST_SQLITE_UNSET}
    repositories: [primary]
`, `lifeboat.yaml:8: assets[0].path: environment variable LB_TEST_SQLITE_UNSET is not set`},
	} {
		if _, err := parsePolicy(tt.src); err == nil || err.Error() != tt.want {
			t.Errorf("policy\n%s\nerror %v, want %s", tt.src, err, tt.want)
		}
	}
}
