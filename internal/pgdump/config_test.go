package pgdump

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

func parsePolicy(src string) (*policy.Policy, error) {
	return policy.Parse([]byte(src), "lifeboat.yaml", policy.Kinds{lifeboat.KindPGDump: kind{}})
}

const repoOK = `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
`

func TestDecodeConfig(t *testing.T) {
	t.Parallel()
	p, err := parsePolicy(repoOK + `assets:
  - name: nightly-dump
    kind: pg_dump
    dsn: "host=/var/run/postgresql dbname=dropapp user=postgres"
    exclude_table_data: [pgboss.job, staff_sessions]
    repositories: [primary]
  - name: crm
    kind: pg_dump
    dsn: host=/tmp
    databases: [crm, billing]
    schemas: [public]
    exclude_schemas: [audit]
    globals: false
    repositories: [primary]
`)
	if err != nil {
		t.Fatal(err)
	}
	dump, err := configOf(&p.Assets[0])
	if err != nil || !dump.Globals || fmt.Sprint(dump.ExcludeTableData) != "[pgboss.job staff_sessions]" ||
		dump.DSN != "host=/var/run/postgresql dbname=dropapp user=postgres" || dump.Databases != nil {
		t.Errorf("pg_dump asset: %+v, %v", dump, err)
	}
	crm, err := configOf(&p.Assets[1])
	if err != nil || crm.Globals || fmt.Sprint(crm.Databases, crm.Schemas, crm.ExcludeSchemas) != "[crm billing] [public] [audit]" {
		t.Errorf("pg_dump asset with globals false: %+v, %v", crm, err)
	}
	if _, err := configOf(&policy.Asset{Name: "built"}); err == nil || !strings.Contains(err.Error(), "asset built: no pg_dump settings") {
		t.Errorf("an asset without configuration: %v", err)
	}
}

// TestConfigErrors: each problem of a pg_dump asset's keys, pinned to
// its line and field. (A key of another kind in a pg_dump asset:
// internal/app's TestPolicyOfEveryKind.)
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := parsePolicy(repoOK + `assets:
  - name: dump
    kind: pg_dump
    # no dsn
    repositories: [primary]
    globals: yes
    databases: [app, " "]
    exclude_table_data: [""]
`)
	want := []string{
		`lifeboat.yaml:6: assets[0].dsn: dsn is required for a pg_dump asset, e.g. "host=/var/run/postgresql user=postgres dbname=app"`,
		`lifeboat.yaml:10: assets[0].globals: "yes" is not true or false`,
		`lifeboat.yaml:11: assets[0].databases[1]: empty name in databases`,
		`lifeboat.yaml:12: assets[0].exclude_table_data[0]: empty name in exclude_table_data`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}
