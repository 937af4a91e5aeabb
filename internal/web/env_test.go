package web

import (
	"database/sql"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// env is a policy of four real assets in file:// repositories, brought
// through the service into the states the overview must tell apart:
//
//	notes   files, backed up                          ok
//	docs    files, backed up, its copy not yet copied  warning (the copy lags)
//	ledger  sqlite, backed up, its drill failed        failing
//	spare   files, never backed up                     failing
type env struct {
	svc *app.Service
	srv *Server
	ts  *httptest.Server
	dir string
}

func newEnv(t *testing.T) *env { return makeEnv(t, false, nil) }

// newEnvTLS is newEnv served over TLS.
func newEnvTLS(t *testing.T) *env { return makeEnv(t, true, nil) }

// makeEnv builds the env; extra, given the test directory and the
// address the dashboard will listen on (known before the policy is
// written), returns policy text appended to the env's.
func makeEnv(t *testing.T, tls bool, extra func(dir, addr string) string) *env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	ts := httptest.NewUnstartedServer(nil)
	t.Cleanup(ts.Close)
	for _, d := range []string{"primary", "offsite", "notes", "docs", "spare", "db"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "notes", "a.txt"), "notes\n")
	write(filepath.Join(dir, "docs", "b.txt"), "docs\n")
	write(filepath.Join(dir, "spare", "c.txt"), "spare\n")
	db, err := sql.Open("sqlite", filepath.Join(dir, "db", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE entries (id INTEGER PRIMARY KEY, amount INTEGER); INSERT INTO entries (amount) VALUES (1), (2), (3);`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := filepath.Join(dir, "lifeboat.yaml")
	write(cfg, fmt.Sprintf(`state_dir: %[1]s/state
repositories:
  - {name: primary, url: "file://%[1]s/primary", key_file: %[1]s/key}
  - {name: offsite, url: "file://%[1]s/offsite", key_file: %[1]s/key}
tiers:
  gold: {rpo: 1h, rto: 1h}
  silver: {rpo: 24h, rto: 4h}
assets:
  - {name: notes, kind: files, tier: silver, paths: [%[1]s/notes], repositories: [primary]}
  - {name: docs, kind: files, tier: silver, paths: [%[1]s/docs], repositories: [primary, offsite]}
  - name: ledger
    kind: sqlite
    tier: gold
    path: %[1]s/db/ledger.db
    repositories: [primary]
    drill:
      checks:
        - {name: all entries, sql: "select count(*) from entries", expect: "= 999"}
  - {name: spare, kind: files, tier: gold, paths: [%[1]s/spare], repositories: [primary]}
`, dir)+extraPolicy(extra, dir, ts.Listener.Addr().String()))
	if err := repo.GenerateKeyFile(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	svc, err := app.Load(cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	for i := range svc.Policy.Repositories {
		rp := &svc.Policy.Repositories[i]
		be, err := app.OpenBackend(ctx, rp)
		if err != nil {
			t.Fatal(err)
		}
		sec, err := app.SecretFor(rp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Init(ctx, be, sec, repo.InitOptions{}); err != nil {
			t.Fatal(err)
		}
		be.Close()
	}
	for _, name := range []string{"notes", "docs", "ledger"} {
		res, err := svc.Backup(ctx, app.BackupRequest{Asset: name})
		if rerr := svc.RecordBackup(ctx, res, err); rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			t.Fatalf("backup %s: %v", name, err)
		}
	}
	rep, err := svc.Drill(ctx, app.DrillRequest{Asset: "ledger", WorkDir: t.TempDir()})
	if err == nil || rep == nil || rep.Passed {
		t.Fatalf("the ledger drill should fail its check: report %+v, error %v", rep, err)
	}
	srv := New(svc, Options{SessionTTL: time.Hour, TLS: tls, Listen: ts.Listener.Addr().String()})
	ts.Config.Handler = srv
	if tls {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	return &env{svc: svc, srv: srv, ts: ts, dir: dir}
}

func extraPolicy(extra func(dir, addr string) string, dir, addr string) string {
	if extra == nil {
		return ""
	}
	return extra(dir, addr)
}
