package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver the test's own writer uses

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// newSQLiteEnv is a policy with one sqlite asset, staging-db, whose
// database is e.dir/app.db, and a file repository for it.
func newSQLiteEnv(t *testing.T) (*env, string) {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	db := filepath.Join(dir, "app.db")
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: staging-db
    kind: sqlite
    path: %s
    repositories: [primary]
`, filepath.Join(dir, "state"), e.repo, filepath.Join(dir, "repo.key"), db)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init")
	return e, db
}

const ledgerRowsPerTxn = 25

// ledgerWriter commits transactions until ctx ends, as an application
// would: each adds ledgerRowsPerTxn rows carrying its number and sets
// state.last to it; committed is the last one committed.
func ledgerWriter(ctx context.Context, db *sql.DB, committed *atomic.Int64) error {
	for n := int64(1); ctx.Err() == nil; n++ {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		for i := 0; i < ledgerRowsPerTxn; i++ {
			if _, err := tx.Exec("INSERT INTO ledger(txn, pad) VALUES (?, ?)", n, strings.Repeat("p", 300)); err != nil {
				tx.Rollback()
				return err
			}
		}
		if _, err := tx.Exec("UPDATE state SET last = ?", n); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		committed.Store(n)
	}
	return nil
}

// ledgerDB creates the ledger ledgerWriter writes to in the database at
// path, in the given journal mode, and returns the application's handle.
func ledgerDB(t *testing.T, path, journal string) *sql.DB {
	t.Helper()
	// A busy timeout as applications set one: in rollback-journal mode a
	// commit waits while the backup reads.
	db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=20000&_pragma=journal_mode("+journal+")")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"CREATE TABLE ledger (id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, pad TEXT)",
		"CREATE INDEX ledger_txn ON ledger(txn)",
		"CREATE TABLE state (last INTEGER NOT NULL)",
		"INSERT INTO state VALUES (0)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// restoredLedger returns the transaction a restored database stops at,
// failing unless it passes integrity_check and holds exactly the whole
// transactions 1..last.
func restoredLedger(t *testing.T, path string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check of %s: %q %v", path, check, err)
	}
	var last, rows, txns, maxTxn, partial int64
	if err := db.QueryRow("SELECT last FROM state").Scan(&last); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*), count(DISTINCT txn), coalesce(max(txn), 0) FROM ledger").Scan(&rows, &txns, &maxTxn); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*) FROM (SELECT txn FROM ledger GROUP BY txn HAVING count(*) <> ?)", ledgerRowsPerTxn).Scan(&partial); err != nil {
		t.Fatal(err)
	}
	if partial != 0 || rows != last*ledgerRowsPerTxn || txns != last || maxTxn != last {
		t.Fatalf("restored ledger is no committed state: state.last %d, %d rows in %d transactions (max %d), %d partial", last, rows, txns, maxTxn, partial)
	}
	return last
}

var snapshotLine = regexp.MustCompile(`^snapshot ([0-9a-f]+) of staging-db \(sqlite\): 1 files`)

// TestSQLiteBackupUnderWriter: lifeboat backup of a database an
// application writes to all along restores, through lifeboat restore, to
// a database that passes integrity_check and holds exactly the
// transactions committed by some moment during that backup; in WAL and in
// rollback-journal mode.
func TestSQLiteBackupUnderWriter(t *testing.T) {
	t.Parallel()
	for _, journal := range []string{"wal", "delete"} {
		t.Run(journal, func(t *testing.T) {
			t.Parallel()
			e, path := newSQLiteEnv(t)
			db := ledgerDB(t, path, journal)
			var committed atomic.Int64
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- ledgerWriter(ctx, db, &committed) }()
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					cancel()
					if err := <-done; err != nil {
						t.Errorf("writer: %v", err)
					}
				}
			}
			defer stop()
			for committed.Load() < 100 {
				time.Sleep(5 * time.Millisecond)
			}
			type taken struct {
				id            string
				before, after int64
			}
			var snaps []taken
			for i := 0; i < 3; i++ {
				before := committed.Load()
				out := e.mustRun("backup", "staging-db")
				m := snapshotLine.FindStringSubmatch(out)
				if m == nil {
					t.Fatalf("backup printed %q", out)
				}
				snaps = append(snaps, taken{m[1], before, committed.Load()})
			}
			stop()
			during := 0
			for _, s := range snaps {
				if s.after > s.before {
					during++
				}
			}
			if during == 0 {
				t.Fatal("the writer committed nothing while a backup ran")
			}
			var lasts []int64
			for _, s := range snaps {
				to := filepath.Join(t.TempDir(), "restored.db")
				out := e.mustRun("restore", "staging-db", "--to", to, "--snapshot", s.id)
				if !strings.Contains(out, "journal mode "+journal) || !strings.HasSuffix(out, "integrity_check: ok\n") {
					t.Fatalf("restore printed %q", out)
				}
				last := restoredLedger(t, to)
				if last < s.before || last > s.after {
					t.Fatalf("snapshot %s restored transaction %d, but %d were committed when the backup began and %d when it ended",
						s.id, last, s.before, s.after)
				}
				lasts = append(lasts, last)
			}
			if lasts[0] == lasts[len(lasts)-1] {
				t.Fatalf("the writer made no progress during the backups: %v", lasts)
			}
			if left, _ := os.ReadDir(filepath.Join(e.dir, "state", "tmp", "sqlite-staging-db")); len(left) != 0 {
				t.Fatalf("backups left %d temporary entries in the state directory", len(left))
			}
			t.Logf("%s: snapshots restore to transactions %v", journal, lasts)
		})
	}
}

// TestSQLiteRefusals: a source that is not a database or is missing fails
// the backup with one line and records nothing; a restore never
// overwrites an existing file.
func TestSQLiteRefusals(t *testing.T) {
	t.Parallel()
	e, path := newSQLiteEnv(t)
	countSnapshots := func() int {
		return strings.Count(e.mustRun("snapshots", "staging-db", "--json"), `"kind": "sqlite"`)
	}
	for _, c := range []struct {
		name, content, want string
	}{
		{"missing", "", "database " + path + " does not exist"},
		{"not a database", "name,amount\nalice,10\n", path + " is not a SQLite database"},
	} {
		if c.content != "" {
			if err := os.WriteFile(path, []byte(strings.Repeat(c.content, 50)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r := e.run("backup", "staging-db")
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "lifeboat: backup staging-db: "+c.want) {
			t.Fatalf("%s: exit %d, stderr %q", c.name, r.code, r.stderr)
		}
		if n := countSnapshots(); n != 0 {
			t.Fatalf("%s: %d snapshots recorded", c.name, n)
		}
	}
	os.Remove(path)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e.mustRun("backup", "staging-db")

	existing := filepath.Join(e.dir, "existing.db")
	if err := os.WriteFile(existing, []byte("do not overwrite"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("restore", "staging-db", "--to", existing)
	if r.code != 2 || !strings.Contains(r.stderr, existing+" exists; remove it or choose another path") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("restore onto an existing file: exit %d, stderr %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(existing); string(got) != "do not overwrite" {
		t.Fatalf("the existing file became %q", got)
	}
	if matches, _ := filepath.Glob(existing + ".tmp-*"); len(matches) != 0 {
		t.Fatalf("a refused restore left %v", matches)
	}
	if r := e.run("restore", "staging-db"); r.code != 2 || !strings.Contains(r.stderr, "needs --to PATH") {
		t.Fatalf("restore without --to: exit %d, stderr %q", r.code, r.stderr)
	}
}
