package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// testEnv is the environment the tests parse against.
var testEnv = map[string]string{
	"LIFEBOAT_PASSPHRASE": "correct horse battery staple",
	"WIKI_DB_PASSWORD":    "s3cr3t",
	"S3_ACCESS_KEY":       "lifeboat",
	"S3_SECRET_KEY":       "minio-secret",
	"EMPTY":               "",
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// parseText parses src as if read from /etc/lifeboat/lifeboat.yaml, with
// testEnv as the environment.
func parseText(tb testing.TB, src string) (*Policy, error) {
	tb.Helper()
	return parse([]byte(src), "lifeboat.yaml", "/etc/lifeboat", lookupIn(testEnv), testKinds)
}

// problemsOf unpacks a joined error into its problems, failing the test if
// any part is not a *FieldError.
func problemsOf(tb testing.TB, err error) []*FieldError {
	tb.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]*FieldError, 0, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if !errors.As(e, &fe) {
			tb.Fatalf("error %q (%T) is not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

func TestParseValid(t *testing.T) {
	data, err := os.ReadFile("testdata/lifeboat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := parse(data, "testdata/lifeboat.yaml", "/etc/lifeboat", lookupIn(testEnv), testKinds)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if p.Source != "testdata/lifeboat.yaml" {
		t.Errorf("Source = %q", p.Source)
	}
	wantRepos := []Repository{
		{Name: "primary", URL: "file:///var/lib/lifeboat/repo", KeyFile: "/etc/lifeboat/repo.key", Line: 3},
		{Name: "offsite", URL: "file:///mnt/offsite/lifeboat", Passphrase: "correct horse battery staple", Line: 6},
	}
	if !reflect.DeepEqual(p.Repositories, wantRepos) {
		t.Errorf("Repositories =\n%#v\nwant\n%#v", p.Repositories, wantRepos)
	}
	wantTiers := map[string]Tier{
		"critical": {RPO: Duration(5 * time.Minute), RTO: Duration(time.Hour)},
		"standard": {RPO: Duration(24 * time.Hour), RTO: Duration(36 * time.Hour)},
	}
	if !reflect.DeepEqual(p.Tiers, wantTiers) {
		t.Errorf("Tiers = %v, want %v", p.Tiers, wantTiers)
	}
	// The kind's keys reach it expanded (the wiki's password), and only
	// through Config.
	wantAssets := []Asset{
		{
			Name: "ledger", Kind: lifeboat.KindPostgres, Tier: "critical",
			Repositories: []string{"primary", "offsite"}, Line: 17,
			Config: map[string]any{"pgdata": "/var/lib/postgresql/15/main",
				"dsn": "host=/var/run/postgresql port=5432 user=postgres dbname=postgres", "block_size": "16KiB"},
		},
		{
			Name: "wiki", Kind: lifeboat.KindPostgres, Tier: "standard",
			Repositories: []string{"primary"}, Line: 24,
			Config: map[string]any{"pgdata": "/srv/wiki/pgdata/", "dsn": "postgres://backup:s3cr3t@localhost:5433/wiki"},
		},
	}
	if !reflect.DeepEqual(p.Assets, wantAssets) {
		t.Errorf("Assets =\n%+v\nwant\n%+v", p.Assets, wantAssets)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("Validate on a parsed policy: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	// Unset for certain, whatever the test runner's environment holds.
	t.Setenv("LIFEBOAT_PASSPHRASE", "")
	if err := os.Unsetenv("LIFEBOAT_PASSPHRASE"); err != nil {
		t.Fatal(err)
	}
	p, err := Load("testdata/lifeboat.yaml", testKinds)
	if err == nil || !strings.Contains(err.Error(), "LIFEBOAT_PASSPHRASE") {
		t.Fatalf("Load without the environment: err = %v, want an unset-variable error", err)
	}
	for k, v := range testEnv {
		t.Setenv(k, v)
	}
	p, err = Load("testdata/lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}

	a, err := p.Asset("wiki")
	if err != nil || a.Name != "wiki" || a != &p.Assets[1] {
		t.Fatalf("Asset(wiki) = %+v, %v", a, err)
	}
	if _, err := p.Asset("nope"); err == nil || err.Error() != `unknown asset "nope" (known: ledger, wiki)` {
		t.Errorf("Asset(nope) error = %v", err)
	}
	r, err := p.Repository("offsite")
	if err != nil || r != &p.Repositories[1] {
		t.Fatalf("Repository(offsite) = %+v, %v", r, err)
	}
	if _, err := p.Repository("nope"); err == nil || err.Error() != `unknown repository "nope" (known: primary, offsite)` {
		t.Errorf("Repository(nope) error = %v", err)
	}

	ledger, _ := p.Asset("ledger")
	repos, err := p.AssetRepositories(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if len(repos) != 2 || repos[0] != &p.Repositories[0] || repos[1] != &p.Repositories[1] {
		t.Errorf("AssetRepositories(ledger) = %+v", repos)
	}
	orphan := &Asset{Name: "orphan", Repositories: []string{"primary", "gone"}}
	if _, err := p.AssetRepositories(orphan); err == nil || err.Error() != `asset "orphan": unknown repository "gone" (known: primary, offsite)` {
		t.Errorf("AssetRepositories(orphan) error = %v", err)
	}
	empty := &Policy{}
	if _, err := empty.Asset("x"); err == nil || err.Error() != `unknown asset "x" (known: none)` {
		t.Errorf("Asset on an empty policy: %v", err)
	}
}

func TestLoadResolvesRelativeKeyFile(t *testing.T) {
	dir := t.TempDir()
	src := `state_dir: state
repositories:
  - name: here
    url: file:///r
    key_file: keys/repo.key
  - name: up
    url: file:///r
    key_file: ../elsewhere/repo.key
  - name: abs
    url: file:///r
    key_file: /etc/lifeboat//repo.key
assets:
  - name: a
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [here, up, abs]
`
	path := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(p *Policy) {
		t.Helper()
		want := []string{
			filepath.Join(dir, "keys", "repo.key"),
			filepath.Join(filepath.Dir(dir), "elsewhere", "repo.key"),
			"/etc/lifeboat/repo.key",
		}
		for i, w := range want {
			if got := p.Repositories[i].KeyFile; got != w {
				t.Errorf("repositories[%d].key_file = %q, want %q", i, got, w)
			}
		}
		if want := filepath.Join(dir, "state"); p.StateDir != want {
			t.Errorf("state_dir = %q, want %q", p.StateDir, want)
		}
	}

	p, err := Load(path, testKinds)
	if err != nil {
		t.Fatal(err)
	}
	check(p)

	// A relative policy path must still resolve against the policy's
	// directory, and to an absolute path.
	t.Chdir(filepath.Dir(dir))
	p, err = Load(filepath.Join(filepath.Base(dir), "lifeboat.yaml"), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	check(p)
	p, err = Parse([]byte(src), filepath.Join(filepath.Base(dir), "lifeboat.yaml"), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	check(p)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), testKinds)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read policy: ") {
		t.Errorf("Load(absent) = %v, want a wrapped not-exist error", err)
	}
}

func TestParseUsesProcessEnvironment(t *testing.T) {
	t.Setenv("LB_TEST_REPO_DIR", "/srv/repo")
	t.Setenv("LB_TEST_PASS", "from-env")
	src := `repositories:
  - name: primary
    url: file://${LB_TEST_REPO_DIR}
    passphrase: ${LB_TEST_PASS}
assets:
  - name: a
    kind: postgres
    pgdata: /pg
    dsn: host=/tmp
    repositories: [primary]
`
	p, err := Parse([]byte(src), "lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Repositories[0]; got.URL != "file:///srv/repo" || got.Passphrase.Reveal() != "from-env" {
		t.Errorf("repository = %+v (passphrase %q)", got, got.Passphrase.Reveal())
	}
}

// TestSchedules reads schedules with and without CRON_TZ.
func TestSchedules(t *testing.T) {
	src := `repositories:
  - name: primary
    url: file:///r
    key_file: /k
assets:
  - name: nightly-dump
    kind: pg_dump
    dsn: "host=/var/run/postgresql dbname=dropapp user=postgres"
    schedule: "CRON_TZ=Asia/Singapore 30 3 * * *"
    retention: { keep_within: 90d }
    hooks: { pre: "systemctl is-active postgresql", timeout: 30s }
    repositories: [primary]
  - name: source
    kind: git
    remotes: [https://git.example.com/drop/web.git]
    schedule: "0 2 * * *"
    repositories: [primary]
`
	p, err := Parse([]byte(src), "/etc/lifeboat/lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	dump, git := p.Assets[0], p.Assets[1]
	if dump.Hooks.Pre == "" || dump.Hooks.Timeout.Std() != 30*time.Second || dump.Retention.KeepWithin.Std() != 90*24*time.Hour {
		t.Errorf("pg_dump asset: %+v", dump)
	}
	// The schedule fires at 03:30 in Singapore, 19:30 UTC the day before.
	s, err := ParseSchedule(dump.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	next := s.Next(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 11, 23, 19, 30, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next run %v, want %v", next.UTC(), want)
	}
	if s, _ := ParseSchedule(git.Schedule); !s.Next(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)).Equal(time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)) {
		t.Error("a schedule without CRON_TZ is not read in UTC")
	}
}
