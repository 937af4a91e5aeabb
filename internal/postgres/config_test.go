package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// parsePolicy reads a policy whose assets may be postgres assets, as if
// from /etc/lifeboat/lifeboat.yaml.
func parsePolicy(src string) (*policy.Policy, error) {
	return policy.Parse([]byte(src), "/etc/lifeboat/lifeboat.yaml", policy.Kinds{lifeboat.KindPostgres: kind{}})
}

func TestDecodeConfig(t *testing.T) {
	t.Setenv("LB_TEST_PG_PASSWORD", "s3cr3t")
	p, err := parsePolicy(`repositories:
  - { name: primary, url: "file:///r", key_file: /k }
assets:
  - name: ledger
    kind: postgres
    pgdata: /var/lib/postgresql/15//main/
    dsn: postgres://backup:${LB_TEST_PG_PASSWORD}@localhost:5433/wiki
    block_size: 16KiB
    wal: {stream: true, flush_interval: 250ms, slot_max_retained: 2GiB}
    repositories: [primary]
  - name: wiki
    kind: postgres
    pgdata: /srv/wiki
    dsn: host=/tmp
    repositories: [primary]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{PGData: "/var/lib/postgresql/15/main", DSN: "postgres://backup:s3cr3t@localhost:5433/wiki", BlockSize: 16 << 10,
		WAL: WALConfig{Stream: true, FlushInterval: 250 * time.Millisecond, SlotMaxRetained: 2 << 30}}
	if c, err := ConfigOf(&p.Assets[0]); err != nil || *c != want {
		t.Errorf("config %+v, %v; want %+v", c, err, want)
	}
	if c, err := ConfigOf(&p.Assets[1]); err != nil || c.BlockSize != 0 || c.WAL != (WALConfig{FlushInterval: time.Second, SlotMaxRetained: 1 << 30}) {
		t.Errorf("without block_size: %+v, %v", c, err)
	}
	if _, err := ConfigOf(&policy.Asset{Name: "built"}); err == nil || !strings.Contains(err.Error(), "asset built: no postgres settings") {
		t.Errorf("an asset without configuration: %v", err)
	}
}

// TestConfigErrors: each problem of a postgres asset's keys, pinned to
// its line and field, beside the policy's own.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	const repoOK = `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
`
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "missing required fields",
			src: `repositories:
  - name: primary
assets:
  - name: ledger
    kind: postgres
tiers:
  gold: {}
`,
			want: []string{
				`lifeboat.yaml:2: repositories[0].url: url is required, e.g. file:///var/lib/lifeboat/repo`,
				`lifeboat.yaml:2: repositories[0]: set key_file or passphrase to unlock the repository key`,
				`lifeboat.yaml:4: assets[0].pgdata: pgdata is required for a postgres asset: the absolute path of the data directory`,
				`lifeboat.yaml:4: assets[0].dsn: dsn is required for a postgres asset, e.g. "host=/var/run/postgresql user=postgres dbname=postgres"`,
				`lifeboat.yaml:4: assets[0].repositories: list at least one repository to back the asset up to`,
				`lifeboat.yaml:7: tiers.gold.rpo: rpo is required and must be greater than zero, e.g. 5m, 1h or 7d`,
				`lifeboat.yaml:7: tiers.gold.rto: rto is required and must be greater than zero, e.g. 5m, 1h or 7d`,
			},
		},
		{
			name: "asset values",
			src: repoOK + `assets:
  - {name: ledger, kind: postgres, pgdata: /pg,
     dsn: host=/tmp,
     repositories: [primary],
     block_size: 24KiB}
  - name: books
    kind: postgres
    pgdata: relative/main
    dsn: host=/tmp
    repositories: [primary]
    block_size: 8kb
  - name: small
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary]
    block_size: 4KiB
`,
			want: []string{
				`lifeboat.yaml:9: assets[0].block_size: block_size must be one of 8KiB, 16KiB, 32KiB, 64KiB, 128KiB`,
				`lifeboat.yaml:12: assets[1].pgdata: pgdata "relative/main" must be an absolute path`,
				`lifeboat.yaml:15: assets[1].block_size: invalid block_size "8kb": use one of 8KiB, 16KiB, 32KiB, 64KiB, 128KiB`,
				`lifeboat.yaml:21: assets[2].block_size: block_size must be one of 8KiB, 16KiB, 32KiB, 64KiB, 128KiB`,
			},
		},
		{
			name: "wal mapping",
			src: repoOK + `assets:
  - name: ledger
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary]
    wal:
      stream: yes please
      flush_interval: 1ms
      slot_max_retained: 10GB
      streem: true
  - name: books
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary]
    wal: true
`,
			want: []string{
				`lifeboat.yaml:12: assets[0].wal.stream: "yes please" is not true or false`,
				`lifeboat.yaml:13: assets[0].wal.flush_interval: flush_interval 1ms: want from 10ms to 1h`,
				`lifeboat.yaml:14: assets[0].wal.slot_max_retained: invalid size "10GB": write it like 512MiB or 2GiB`,
				`lifeboat.yaml:15: assets[0].wal.streem: unknown key "streem" (known keys: stream, flush_interval, slot_max_retained)`,
				`lifeboat.yaml:21: assets[1].wal: expected a mapping, found a boolean`,
			},
		},
		{
			name: "unknown key",
			src: repoOK + `assets:
  - name: ledger
    kind: postgres
    pgdat: /var/lib/postgresql/15/main
    dsn: host=/var/run/postgresql
    repositories: [primary]
`,
			want: []string{`lifeboat.yaml:8: unknown key "pgdat" in asset "ledger" (did you mean "pgdata"?)`},
		},
		{
			name: "wrong types",
			src: `repositories: primary
tiers:
  gold: {rpo: [5m], rto: 1h}
assets:
  - name: ledger
    kind: postgres
    pgdata: {path: /pg}
    dsn: host=/tmp
    repositories: primary
`,
			want: []string{
				`lifeboat.yaml:1: repositories: expected a list, found a string`,
				`lifeboat.yaml:3: tiers.gold.rpo: expected a single value, found a list`,
				`lifeboat.yaml:7: assets[0].pgdata: expected a single value, found a mapping`,
				`lifeboat.yaml:9: assets[0].repositories: expected a list, found a string`,
			},
		},
		{
			name: "unset variable",
			src: repoOK + `assets:
  - name: ledger
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp password=${LB_TEST_PG_UNSET}
    repositories: [primary]
`,
			want: []string{`lifeboat.yaml:9: assets[0].dsn: environment variable LB_TEST_PG_UNSET is not set`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Parse([]byte(tt.src), "lifeboat.yaml", policy.Kinds{lifeboat.KindPostgres: kind{}})
			if err == nil || err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}
