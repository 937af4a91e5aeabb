package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// repoOK and assetOK are valid sections the cases below combine with the
// section they break, so each case's line numbers can be read off its text.
const repoOK = `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
`

const assetOK = `assets:
  - name: ledger
    kind: postgres
    pgdata: /var/lib/postgresql/15/main
    dsn: host=/var/run/postgresql
    repositories: [primary]
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every problem, in order
	}{
		{
			name: "empty file",
			src:  "",
			want: []string{`lifeboat.yaml: the policy file is empty`},
		},
		{
			name: "only comments",
			src:  "# nothing yet\n\n",
			want: []string{`lifeboat.yaml: the policy file is empty`},
		},
		{
			name: "retention mistakes",
			src: repoOK + assetOK + `    retention: { daily: many, pitr_window: 7x, time_zone: Mars/Olympus }
`,
			want: []string{
				`lifeboat.yaml:11: assets[0].retention.pitr_window: invalid duration "7x": use a number and a unit: ns, us, ms, s, m, h, d (days) or w (weeks), e.g. 90s, 36h, 7d`,
				`lifeboat.yaml:11: assets[0].retention.daily: "many" is not a count: write a whole number from 0 to 10000, e.g. 30`,
				`lifeboat.yaml:11: assets[0].retention.time_zone: unknown time zone "Mars/Olympus" (use an IANA name such as Asia/Singapore or UTC)`,
			},
		},
		{
			name: "asset kinds of the daemon issue",
			src: repoOK + `assets:
  - name: dump
    kind: pg_dump
    pgdata: /var/lib/postgresql/15/main
    schedule: "CRON_TZ=Asia/Singapore 30 25 * * *"
    repositories: [primary]
    retention: { pitr_window: 7d }
  - name: staging
    kind: sqlite
    path: relative.db
    repositories: [primary]
  - name: config
    kind: files
    exclude: ["[unclosed"]
    repositories: [primary]
  - name: source
    kind: git
    hooks: { timeout: -1m }
    repositories: [primary]
`,
			// What the kinds say of their keys is tested with the real
			// kinds, in internal/app's TestPolicyOfEveryKind.
			want: []string{
				`lifeboat.yaml:8: assets[0].pgdata: pgdata is a key of postgres assets, not of pg_dump assets`,
				`lifeboat.yaml:9: assets[0].schedule: schedule "CRON_TZ=Asia/Singapore 30 25 * * *": end of range (25) above maximum (23): 25 (write five fields, minute hour day-of-month month day-of-week, e.g. "CRON_TZ=Asia/Singapore 30 3 * * *")`,
				`lifeboat.yaml:11: assets[0].retention.pitr_window: pitr_window applies to postgres assets only (a pg_dump asset has no WAL to replay)`,
				`lifeboat.yaml:22: assets[3].hooks.timeout: timeout must not be negative`,
			},
		},
		{
			name: "retention without a rule",
			src:  repoOK + assetOK + "    retention: { time_zone: UTC }\n",
			want: []string{`lifeboat.yaml:11: assets[0].retention: retention names no rule: set pitr_window, keep_within, daily, weekly, monthly or yearly (leave retention out to keep everything)`},
		},
		{
			name: "object lock on a local repository, unknown mode",
			src: `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
    object_lock: { mode: forever }
` + assetOK,
			want: []string{
				`lifeboat.yaml:5: repositories[0].object_lock.mode: object_lock mode must be compliance or governance, not "forever"`,
				`lifeboat.yaml:5: repositories[0].object_lock: object_lock applies to s3 repositories only (the bucket must be created with Object Lock enabled)`,
			},
		},
		{
			name: "null document",
			src:  "---\n~\n",
			want: []string{`lifeboat.yaml:1: the policy file is empty`},
		},
		{
			name: "two documents",
			src:  repoOK + assetOK + "---\nassets: []\n",
			want: []string{`lifeboat.yaml:12: the policy file must hold a single YAML document; remove this second one`},
		},
		{
			name: "syntax error",
			src:  "repositories:\n  - name: [primary\n",
			want: []string{`lifeboat.yaml:2: invalid YAML: did not find expected ',' or ']'`},
		},
		{
			name: "syntax error reported by the scanner",
			src:  "repositories:\n  - name: primary\n    url: x: y\n",
			want: []string{`lifeboat.yaml:3: invalid YAML: mapping values are not allowed in this context`},
		},
		{
			name: "bad indentation",
			src:  "repositories:\n  - name: primary\n url: file:///r\n",
			want: []string{`lifeboat.yaml:3: invalid YAML: did not find expected key`},
		},
		{
			name: "syntax error on the first line",
			src:  "]\n",
			want: []string{`lifeboat.yaml:1: invalid YAML: did not find expected node content`},
		},
		{
			name: "top level is a list",
			src:  "- repositories\n",
			want: []string{`lifeboat.yaml:1: the policy must be a mapping with the keys repositories, tiers, assets, state_dir, user, alerts, check, metrics, approvals, groups, platform_drill, audit, web, runbook, report, catalog, host, drill_host; found a list`},
		},
		{
			name: "unknown key in asset",
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
			name: "unknown keys elsewhere",
			src: `repositories:
  - url: file:///r
    keyfile: /k
tiers:
  gold: {rpo: 5m, rto: 1h, retention: 7d}
assets: []
asset: []
`,
			want: []string{
				`lifeboat.yaml:3: unknown key "keyfile" in repository (repositories[0]) (did you mean "key_file"?)`,
				`lifeboat.yaml:5: unknown key "retention" in tier "gold" (known keys: rpo, rto)`,
				`lifeboat.yaml:7: unknown key "asset" at the top level (did you mean "assets"?)`,
			},
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
			name: "duplicate key",
			src: repoOK + `assets:
  - name: ledger
    name: books
`,
			want: []string{`lifeboat.yaml:7: duplicate key "name" in asset "ledger" (first set on line 6)`},
		},
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
				// pgdata and dsn, required: internal/postgres's TestConfigErrors
				`lifeboat.yaml:4: assets[0].repositories: list at least one repository to back the asset up to`,
				`lifeboat.yaml:7: tiers.gold.rpo: rpo is required and must be greater than zero, e.g. 5m, 1h or 7d`,
				`lifeboat.yaml:7: tiers.gold.rto: rto is required and must be greater than zero, e.g. 5m, 1h or 7d`,
			},
		},
		{
			name: "missing kind and name",
			src: repoOK + `assets:
  - pgdata: /pg
    repositories: [primary]
`,
			want: []string{
				`lifeboat.yaml:6: assets[0].name: asset name is required`,
				`lifeboat.yaml:6: assets[0].kind: kind is required (known kinds: postgres, pg_dump, sqlite, files, git)`,
			},
		},
		{
			name: "no repositories or assets",
			src:  "repositories: []\nassets:\n",
			want: []string{
				`lifeboat.yaml:1: repositories: at least one repository is required`,
				`lifeboat.yaml:2: assets: at least one asset is required`,
			},
		},
		{
			name: "no sections at all",
			src:  "tiers: {}\n",
			want: []string{
				`lifeboat.yaml: repositories: at least one repository is required`,
				`lifeboat.yaml: assets: at least one asset is required`,
			},
		},
		{
			name: "bad durations",
			src: repoOK + assetOK + `tiers:
  a: {rpo: 5x, rto: 1.5d}
  b: {rpo: "", rto: -1h}
  c: {rpo: 10, rto: 99999999999w}
`,
			want: []string{
				`lifeboat.yaml:12: tiers.a.rpo: invalid duration "5x": use a number and a unit: ns, us, ms, s, m, h, d (days) or w (weeks), e.g. 90s, 36h, 7d`,
				`lifeboat.yaml:12: tiers.a.rto: invalid duration "1.5d": days and weeks must be whole numbers`,
				`lifeboat.yaml:13: tiers.b.rpo: rpo is required and must be greater than zero, e.g. 5m, 1h or 7d`,
				`lifeboat.yaml:13: tiers.b.rto: rto must be greater than zero, not -1h`,
				`lifeboat.yaml:14: tiers.c.rpo: invalid duration "10": missing unit; use a number and a unit: ns, us, ms, s, m, h, d (days) or w (weeks), e.g. 90s, 36h, 7d`,
				`lifeboat.yaml:14: tiers.c.rto: invalid duration "99999999999w": too long`,
			},
		},
		{
			name: "unset environment variables",
			src: `repositories:
  - name: primary
    url: file:///r
    passphrase: ${LIFEBOAT_NOT_SET}
assets:
  - name: ${ASSET_A}-${ASSET_B}
    kind: postgres
    tier: ${TIER}
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary]
`,
			want: []string{
				`lifeboat.yaml:4: repositories[0].passphrase: environment variable LIFEBOAT_NOT_SET is not set`,
				`lifeboat.yaml:6: assets[0].name: environment variables ASSET_A, ASSET_B are not set`,
				`lifeboat.yaml:8: assets[0].tier: environment variable TIER is not set`,
			},
		},
		{
			name: "bad dollar signs",
			src: `repositories:
  - name: primary
    url: file:///r
    passphrase: pa$word
  - name: second
    url: file:///r
    passphrase: ${OOPS
  - name: third
    url: file:///r
    passphrase: ${X:-default}
` + assetOK,
			want: []string{
				`lifeboat.yaml:4: repositories[0].passphrase: "$" at character 3 must be written "$$" for a literal "$", or ${NAME} to insert an environment variable`,
				`lifeboat.yaml:7: repositories[1].passphrase: "${" at character 1 has no closing "}"`,
				`lifeboat.yaml:10: repositories[2].passphrase: "${...}" at character 1 must hold only a variable name (letters, digits and '_', not starting with a digit); ${NAME} is the only expansion supported`,
			},
		},
		{
			name: "empty state_dir",
			src: `state_dir: ${EMPTY}
repositories:
  - name: primary
    url: file:///r
    passphrase: p
` + assetOK,
			want: []string{`lifeboat.yaml:1: state_dir: state_dir is empty after expanding environment variables`},
		},
		{
			name: "passphrase from an empty variable",
			src: `repositories:
  - name: primary
    url: file:///r
    passphrase: ${EMPTY}
  - name: second
    url: file:///r
    key_file: ""
` + assetOK,
			want: []string{
				`lifeboat.yaml:4: repositories[0].passphrase: passphrase is empty after expanding environment variables`,
				`lifeboat.yaml:7: repositories[1].key_file: key_file is empty`,
			},
		},
		{
			name: "bad names",
			src: `repositories:
  - name: Primary
    url: file:///r
    key_file: /k
tiers:
  "gold tier": {rpo: 5m, rto: 1h}
assets:
  - name: -ledger
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [Primary]
  - name: ` + strings.Repeat("x", 64) + `
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [Primary]
`,
			want: []string{
				`lifeboat.yaml:2: repositories[0].name: invalid repository name "Primary": use 1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit`,
				`lifeboat.yaml:6: tiers["gold tier"]: invalid tier name "gold tier": use 1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit`,
				`lifeboat.yaml:8: assets[0].name: invalid asset name "-ledger": use 1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit`,
				`lifeboat.yaml:13: assets[1].name: invalid asset name "` + strings.Repeat("x", 64) + `": use 1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit`,
			},
		},
		{
			name: "unknown references",
			src: repoOK + `tiers:
  gold: {rpo: 5m, rto: 1h}
  silver: {rpo: 1h, rto: 4h}
assets:
  - name: ledger
    kind: postgres
    tier: bronze
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary, offsite, primary]
`,
			want: []string{
				`lifeboat.yaml:11: assets[0].tier: unknown tier "bronze" (known: gold, silver)`,
				`lifeboat.yaml:14: assets[0].repositories[1]: unknown repository "offsite" (known: primary)`,
				`lifeboat.yaml:14: assets[0].repositories[2]: repository "primary" is listed more than once`,
			},
		},
		{
			name: "both key_file and passphrase",
			src: `repositories:
  - name: primary
    url: file:///r
    key_file: /etc/lifeboat/repo.key
    passphrase: hunter2
` + assetOK,
			want: []string{`lifeboat.yaml:2: repositories[0]: set only one of key_file or passphrase`},
		},
		{
			name: "repository URLs",
			src: `repositories:
  - name: s3
    url: s3:///prefix
    key_file: /k
  - name: bare
    url: /var/lib/lifeboat/repo
    key_file: /k
  - name: host
    url: file://var/lib/lifeboat/repo
    key_file: /k
  - name: query
    url: file:///r?x=1
    key_file: /k
  - name: relative
    url: file:repo
    key_file: /k
  - name: nonsense
    url: "%zz"
    key_file: /k
  - name: local
    url: file://localhost/var/lib/lifeboat/repo
    key_file: /k
assets:
  - name: ledger
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [local]
`,
			want: []string{
				`lifeboat.yaml:3: repositories[0].url: s3 URL must name a bucket, e.g. s3://backups/ledger?region=eu-north-1`,
				`lifeboat.yaml:6: repositories[1].url: repository URL has no scheme: write file:///var/lib/lifeboat/repo`,
				`lifeboat.yaml:9: repositories[2].url: file URL must hold an absolute path after three slashes, e.g. file:///var/lib/lifeboat/repo`,
				`lifeboat.yaml:12: repositories[3].url: file URL must not have a user, query or fragment`,
				`lifeboat.yaml:15: repositories[4].url: file URL must hold an absolute path after three slashes, e.g. file:///var/lib/lifeboat/repo`,
				`lifeboat.yaml:18: repositories[5].url: malformed URL: invalid URL escape "%zz"`,
			},
		},
		{
			name: "duplicate names",
			src: `repositories:
  - name: primary
    url: file:///r
    key_file: /k
  - name: primary
    url: file:///s
    key_file: /k
assets:
  - name: ledger
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary]
  - name: ledger
    kind: postgres
    pgdata: /pg2
    dsn: host=/tmp
    repositories: [primary]
`,
			want: []string{
				`lifeboat.yaml:5: repositories[1].name: duplicate repository name "primary" (first declared on line 2)`,
				`lifeboat.yaml:14: assets[1].name: duplicate asset name "ledger" (first declared on line 9)`,
			},
		},
		{
			// The keys of an asset of an unknown kind are not checked:
			// what they mean depends on the kind. (block_size and pgdata:
			// internal/postgres's TestConfigErrors.)
			name: "asset values",
			src: repoOK + `assets:
  - name: ledger
    kind: mysql
    repositories: [primary]
    block_size: 24KiB
`,
			want: []string{
				`lifeboat.yaml:7: assets[0].kind: unknown asset kind "mysql" (known kinds: postgres, pg_dump, sqlite, files, git)`,
			},
		},
		{
			name: "keys of other kinds and of none",
			src: repoOK + `assets:
  - name: app
    kind: sqlite
    path: /srv/app.db
    dsn: host=/tmp
    paths: [/srv]
    repositories: [primary]
  - name: web
    kind: files
    paths: [/srv]
    excludes: ["*.tmp"]
    repositories: [primary]
`,
			// An unknown key stops the reading before the shared keys'
			// values are judged; the kinds' keys are read all the same.
			want: []string{
				`lifeboat.yaml:9: assets[0].dsn: dsn is a key of postgres and pg_dump assets, not of sqlite assets`,
				`lifeboat.yaml:10: assets[0].paths: paths is a key of files assets, not of sqlite assets`,
				`lifeboat.yaml:15: unknown key "excludes" in asset "web" (did you mean "exclude"?)`,
			},
		},
		{
			name: "kind keys of the wrong shape",
			src: repoOK + `assets:
  - name: web
    kind: files
    paths: /srv
    exclude: [[a], ~]
    repositories: [primary]
  - name: app
    kind: sqlite
    path: [/srv/app.db]
    repositories: primary
`,
			want: []string{
				`lifeboat.yaml:8: assets[0].paths: expected a list, found a string`,
				`lifeboat.yaml:9: assets[0].exclude[0]: expected a single value, found a list`,
				`lifeboat.yaml:13: assets[1].path: expected a single value, found a list`,
				`lifeboat.yaml:14: assets[1].repositories: expected a list, found a string`,
			},
		},
		{
			name: "unset variables in kind keys",
			src: repoOK + `assets:
  - name: app
    kind: postgres
    pgdata: ${PGDATA_NOT_SET}
    dsn: [host=/tmp, "${DSN_NOT_SET}"]
    repositories: [primary]
`,
			want: []string{
				`lifeboat.yaml:8: assets[0].pgdata: environment variable PGDATA_NOT_SET is not set`,
				`lifeboat.yaml:9: assets[0].dsn: expected a single value, found a list`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseText(t, tt.src)
			if err == nil {
				t.Fatalf("parse succeeded (%+v), want errors:\n%s", p, strings.Join(tt.want, "\n"))
			}
			if p != nil {
				t.Errorf("parse returned a policy along with an error")
			}
			var got []string
			for _, fe := range problemsOf(t, err) {
				got = append(got, fe.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q, want the problems one per line", err.Error())
			}
		})
	}
}

func TestDollarEscape(t *testing.T) {
	p, err := parseText(t, `repositories:
  - name: primary
    url: file:///r
    passphrase: "$$a$${LIFEBOAT_PASSPHRASE}$$$${EMPTY}b${EMPTY}$$"
`+assetOK)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Repositories[0].Passphrase.Reveal(), "$a${LIFEBOAT_PASSPHRASE}$${EMPTY}b$"; got != want {
		t.Errorf("passphrase = %q, want %q", got, want)
	}
}

func TestExpandEnv(t *testing.T) {
	lookup := lookupIn(map[string]string{"A": "1", "B_2": "two", "EMPTY": "", "DOLLAR": "${A}"})
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "1"},
		{in: "x${A}y${B_2}z", want: "x1ytwoz"},
		{in: "${EMPTY}", want: ""},
		{in: "${DOLLAR}", want: "${A}"}, // values are not expanded again
		{in: "$$", want: "$"},
		{in: "$${A}", want: "${A}"},
		{in: "$$$", err: `"$" at character 3 must be written "$$"`},
		{in: "$A", err: `"$" at character 1 must be written "$$"`},
		{in: "a$", err: `"$" at character 2 must be written "$$"`},
		{in: "${", err: `has no closing "}"`},
		{in: "${}", err: "must hold only a variable name"},
		{in: "${1A}", err: "must hold only a variable name"},
		{in: "${A B}", err: "must hold only a variable name"},
		{in: "${NOPE}", err: "environment variable NOPE is not set"},
		{in: "${Z}${Y}${Z}", err: "environment variables Y, Z, Z are not set"},
	}
	for _, tt := range tests {
		got, err := expandEnv(tt.in, lookup)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("expandEnv(%q) error = %v, want one containing %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("expandEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestValidateBuiltPolicy covers a Policy assembled in code rather than
// read from a file: problems still name their fields, without lines.
func TestValidateBuiltPolicy(t *testing.T) {
	p := &Policy{
		Repositories: []Repository{{Name: "primary", URL: "file:///r", KeyFile: "relative.key"}},
		Tiers:        map[string]Tier{"gold": {RPO: Duration(time.Minute)}},
		Assets: []Asset{{
			Name: "ledger", Kind: lifeboat.KindPostgres, Tier: "gold", Repositories: []string{"primary"},
		}},
	}
	// (The block size of 4096 once here is a key of the postgres kind,
	// checked as it reads it: internal/postgres's TestConfigErrors.)
	want := []string{
		`repositories[0].key_file: key_file "relative.key" must be an absolute path`,
		`tiers.gold.rto: rto is required and must be greater than zero, e.g. 5m, 1h or 7d`,
	}
	err := p.Validate()
	if err == nil {
		t.Fatal("Validate accepted the policy")
	}
	var got []string
	for _, fe := range problemsOf(t, err) {
		got = append(got, fe.Error())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	p.Repositories[0].KeyFile = "/etc/lifeboat/repo.key"
	p.Tiers["gold"] = Tier{RPO: Duration(time.Minute), RTO: Duration(time.Hour)}
	if err := p.Validate(); err != nil {
		t.Errorf("Validate on the fixed policy: %v", err)
	}
}

// TestUnsetAlertSecretDoesNotBreakThePolicy: wal-push runs in PostgreSQL's
// environment, which often lacks the alert secrets; the policy still
// loads, the alert carries the problem, and the other keys are checked.
func TestUnsetAlertSecretDoesNotBreakThePolicy(t *testing.T) {
	doc := `repositories:
  - { name: main, url: "file:///srv/repo", passphrase: x }
assets:
  - { name: db, kind: sqlite, path: /srv/db.sqlite, repositories: [main] }
alerts:
  - kind: pagerduty
    routing_key: ${LIFEBOAT_TEST_UNSET_PD_KEY}
  - kind: slack
    webhook_url: https://hooks.slack.example/x
    repeat: soon
`
	_, err := parse([]byte(doc), "lifeboat.yaml", "/", func(string) (string, bool) { return "", false }, testKinds)
	if err == nil || !strings.Contains(err.Error(), "alerts[1].repeat") || strings.Contains(err.Error(), "LIFEBOAT_TEST_UNSET_PD_KEY") {
		t.Fatalf("a bad key beside an unset secret: %v", err)
	}
	doc = strings.Replace(doc, "repeat: soon", "repeat: 1h", 1)
	p, err := parse([]byte(doc), "lifeboat.yaml", "/", func(string) (string, bool) { return "", false }, testKinds)
	if err != nil {
		t.Fatal(err)
	}
	if u := p.Alerts[0].Unresolved; len(u) != 1 || !strings.Contains(u[0], "lifeboat.yaml:7: alerts[0].routing_key: environment variable LIFEBOAT_TEST_UNSET_PD_KEY is not set") {
		t.Fatalf("unresolved: %q", u)
	}
}
