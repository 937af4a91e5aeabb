package files

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

func parsePolicy(src string) (*policy.Policy, error) {
	return policy.Parse([]byte(src), "lifeboat.yaml", policy.Kinds{lifeboat.KindFiles: kind{}})
}

const repoOK = `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
`

func TestDecodeConfig(t *testing.T) {
	t.Parallel()
	p, err := parsePolicy(repoOK + `assets:
  - name: app-config
    kind: files
    paths: [/etc/drop, /srv/drop/config/]
    exclude: ["*.tmp"]
    repositories: [primary]
`)
	if err != nil {
		t.Fatal(err)
	}
	c, err := configOf(&p.Assets[0])
	if err != nil || fmt.Sprint(c.Paths) != "[/etc/drop /srv/drop/config]" || fmt.Sprint(c.Exclude) != "[*.tmp]" {
		t.Errorf("files asset: %+v, %v", c, err)
	}
	if _, err := configOf(&policy.Asset{Name: "built"}); err == nil || !strings.Contains(err.Error(), "asset built: no files settings") {
		t.Errorf("an asset without configuration: %v", err)
	}
}

// TestConfigErrors: each problem of a files asset's keys, pinned to its
// line and field.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		src  string
		want []string
	}{
		{repoOK + `assets:
  - name: config
    kind: files
    exclude: ["[unclosed"]
    repositories: [primary]
`, []string{
			`lifeboat.yaml:6: assets[0].paths: a files asset needs paths: the absolute directories and files to back up`,
			`lifeboat.yaml:8: assets[0].exclude[0]: invalid pattern "[unclosed": use shell globs such as *.tmp or cache/*`,
		}},
		{repoOK + `assets:
  - name: config
    kind: files
    paths:
      - /etc
      - etc/drop
      - ""
    exclude: ["", ok]
    repositories: [primary]
`, []string{
			`lifeboat.yaml:10: assets[0].paths[1]: path "etc/drop" must be an absolute path`,
			`lifeboat.yaml:11: assets[0].paths[2]: path is required: a directory or file`,
			`lifeboat.yaml:12: assets[0].exclude[0]: invalid pattern "": use shell globs such as *.tmp or cache/*`,
		}},
		{repoOK + `assets:
  - name: config
    kind: files
    paths: []
    repositories: [primary]
`, []string{
			`lifeboat.yaml:8: assets[0].paths: a files asset needs paths: the absolute directories and files to back up`,
		}},
	} {
		if _, err := parsePolicy(tt.src); err == nil || err.Error() != strings.Join(tt.want, "\n") {
			t.Errorf("policy\n%s\nerrors:\n%v\nwant:\n%s", tt.src, err, strings.Join(tt.want, "\n"))
		}
	}
}
