package app_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// TestPolicyOfEveryKind reads a policy with every registered kind: each
// kind's problems with its own keys are reported with the policy's, in
// line order, as one list.
func TestPolicyOfEveryKind(t *testing.T) {
	t.Parallel()
	src := `repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
assets:
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
  - name: uploads
    kind: bucket
    url: s3://uploads/
    dsn: host=/tmp
    repositories: [primary]
`
	want := []string{
		`lifeboat.yaml:6: assets[0].dsn: dsn is required for a pg_dump asset, e.g. "host=/var/run/postgresql user=postgres dbname=app"`,
		`lifeboat.yaml:8: assets[0].pgdata: pgdata is a key of postgres assets, not of pg_dump assets`,
		`lifeboat.yaml:9: assets[0].schedule: schedule "CRON_TZ=Asia/Singapore 30 25 * * *": end of range (25) above maximum (23): 25 (write five fields, minute hour day-of-month month day-of-week, e.g. "CRON_TZ=Asia/Singapore 30 3 * * *")`,
		`lifeboat.yaml:11: assets[0].retention.pitr_window: pitr_window applies to postgres assets only (a pg_dump asset has no WAL to replay)`,
		`lifeboat.yaml:14: assets[1].path: path "relative.db" must be an absolute path`,
		`lifeboat.yaml:16: assets[2].paths: a files asset needs paths: the absolute directories and files to back up`,
		`lifeboat.yaml:18: assets[2].exclude[0]: invalid pattern "[unclosed": use shell globs such as *.tmp or cache/*`,
		`lifeboat.yaml:20: assets[3].remotes: a git asset needs remotes (URLs or absolute paths) or a remotes_file`,
		`lifeboat.yaml:22: assets[3].hooks.timeout: timeout must not be negative`,
		`lifeboat.yaml:27: assets[4].dsn: dsn is a key of postgres and pg_dump assets, not of bucket assets`,
	}
	_, err := policy.Parse([]byte(src), "lifeboat.yaml", app.Kinds().Decoders())
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}

	_, err = policy.Parse([]byte(`repositories: [{name: primary, url: "file:///r", key_file: /k}]
assets:
  - {name: db, kind: mysql, repositories: [primary]}
`), "lifeboat.yaml", app.Kinds().Decoders())
	if want := `lifeboat.yaml:3: assets[0].kind: unknown asset kind "mysql" (known kinds: postgres, pg_dump, sqlite, files, git, bucket)`; err == nil || err.Error() != want {
		t.Errorf("unknown kind: %v, want %s", err, want)
	}
}

// TestDocsExample keeps docs/policy.md honest: its complete example must
// read with the registered kinds.
func TestDocsExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	const start, end = "<!-- example:begin -->\n```yaml\n", "```\n<!-- example:end -->"
	_, rest, ok := strings.Cut(string(doc), start)
	example, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("docs/policy.md has no example between %q and %q", start, end)
	}
	// The values its ${NAME}s would have (the test does not set
	// variables, so that it runs in parallel).
	example = strings.NewReplacer("${S3_ACCESS_KEY}", "lifeboat", "${S3_SECRET_KEY}", "secret", "${LIFEBOAT_PASSPHRASE}", "p",
		"${SLACK_WEBHOOK}", "https://hooks.slack.example/x", "${PD_ROUTING_KEY}", "key").Replace(example)
	p, err := policy.Parse([]byte(example), "/etc/lifeboat/lifeboat.yaml", app.Kinds().Decoders())
	if err != nil {
		t.Fatalf("docs example does not parse:\n%v", err)
	}
	if len(p.Assets) == 0 || len(p.Repositories) == 0 || p.Assets[0].Config == nil {
		t.Errorf("docs example parsed to %+v", p)
	}
}

// FuzzPolicy reads arbitrary policies with every registered kind, whose
// decoders read what the policy package hands them: no panic, and either
// a policy or problems that each name the file.
func FuzzPolicy(f *testing.F) {
	const repo = "repositories: [{name: a, url: 'file:///a', key_file: /k}]\n"
	for _, seed := range []string{
		repo + "assets: [{name: b, kind: postgres, pgdata: /p, dsn: d, block_size: 16KiB, repositories: [a]}]\n",
		repo + "assets: [{name: b, kind: pg_dump, dsn: d, databases: [x, ' '], globals: no, repositories: [a]}]\n",
		repo + "assets: [{name: b, kind: sqlite, path: &p rel, repositories: [a]}, {name: c, kind: files, paths: [*p, /x], repositories: [a]}]\n",
		repo + "assets: [{name: b, kind: git, remotes: {x: y}, remotes_file: ~, repositories: [a]}]\n",
		repo + "assets: [{name: b, kind: bucket, url: 's3://b/p', access_key: k, repositories: [a]}]\n",
		repo + "assets: [{name: b, kind: files, pgdata: /p, pathz: [/x], repositories: [a]}]\n",
	} {
		f.Add(seed)
	}
	kinds := app.Kinds().Decoders()
	f.Fuzz(func(t *testing.T, src string) {
		p, err := policy.Parse([]byte(src), "fuzz.yaml", kinds)
		if err == nil {
			if p == nil {
				t.Fatal("no policy and no error")
			}
			return
		}
		for _, e := range unjoin(err) {
			var fe *policy.FieldError
			if !errors.As(e, &fe) || !strings.HasPrefix(fe.Error(), "fuzz.yaml") {
				t.Fatalf("problem %q (%T) does not name the file", e, e)
			}
		}
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
