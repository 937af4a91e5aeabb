package gitrepo

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

const repoOK = `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
`

func TestDecodeConfig(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse([]byte(repoOK+`assets:
  - name: source
    kind: git
    remotes: [https://git.example.com/drop/web.git, /srv/git/infra.git]
    remotes_file: org-repos.txt
    repositories: [primary]
  - name: more
    kind: git
    remotes_file: /etc/lifeboat/../git/all.txt
    repositories: [primary]
`), "/etc/lifeboat/lifeboat.yaml", policy.Kinds{lifeboat.KindGit: kind{}})
	if err != nil {
		t.Fatal(err)
	}
	// A relative remotes_file is taken from the policy file's directory.
	c, err := configOf(&p.Assets[0])
	if err != nil || len(c.Remotes) != 2 || c.RemotesFile != "/etc/lifeboat/org-repos.txt" {
		t.Errorf("git asset: %+v, %v", c, err)
	}
	if c, err := configOf(&p.Assets[1]); err != nil || c.Remotes != nil || c.RemotesFile != "/etc/git/all.txt" {
		t.Errorf("git asset with a remotes file only: %+v, %v", c, err)
	}
	if _, err := configOf(&policy.Asset{Name: "built"}); err == nil || !strings.Contains(err.Error(), "asset built: no git settings") {
		t.Errorf("an asset without configuration: %v", err)
	}
}

// TestConfigErrors: a git asset without remotes, pinned to its line.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := policy.Parse([]byte(repoOK+`assets:
  - name: source
    kind: git
    hooks: { timeout: -1m }
    repositories: [primary]
  - name: listed
    kind: git
    remotes: https://git.example.com/drop/web.git
    repositories: [primary]
`), "lifeboat.yaml", policy.Kinds{lifeboat.KindGit: kind{}})
	want := []string{
		`lifeboat.yaml:6: assets[0].remotes: a git asset needs remotes (URLs or absolute paths) or a remotes_file`,
		`lifeboat.yaml:8: assets[0].hooks.timeout: timeout must not be negative`,
		`lifeboat.yaml:12: assets[1].remotes: expected a list, found a string`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}
