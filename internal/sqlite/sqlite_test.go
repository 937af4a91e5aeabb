package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// openDB opens a database the way an application would, read-write with
// a busy timeout, in the given journal mode.
func openDB(t testing.TB, path, journal string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=20000&_pragma=journal_mode("+journal+")")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

const rowsPerTxn = 40

// writer inserts transactions into a ledger until ctx ends: every
// transaction adds rowsPerTxn rows carrying its number and sets the one
// row of state to that number. committed counts the committed ones.
func writer(ctx context.Context, db *sql.DB, committed *atomic.Int64) error {
	pad := strings.Repeat("x", 200)
	for n := committed.Load() + 1; ctx.Err() == nil; n++ {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		for i := 0; i < rowsPerTxn; i++ {
			if _, err := tx.Exec("INSERT INTO ledger(txn, i, pad) VALUES (?, ?, ?)", n, i, pad); err != nil {
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

func createLedger(t testing.TB, db *sql.DB) {
	t.Helper()
	exec(t, db, "CREATE TABLE ledger (id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, i INTEGER NOT NULL, pad TEXT)")
	exec(t, db, "CREATE INDEX ledger_txn ON ledger(txn)")
	exec(t, db, "CREATE TABLE state (last INTEGER NOT NULL)")
	exec(t, db, "INSERT INTO state VALUES (0)")
}

// checkLedger returns the transaction a restored ledger stops at, failing
// unless it holds exactly transactions 1..last, each whole.
func checkLedger(t testing.TB, path string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var last, rows, txns, partial, maxTxn int64
	if err := db.QueryRow("SELECT last FROM state").Scan(&last); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*), count(DISTINCT txn), coalesce(max(txn), 0) FROM ledger").Scan(&rows, &txns, &maxTxn); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*) FROM (SELECT txn FROM ledger GROUP BY txn HAVING count(*) <> ?)", rowsPerTxn).Scan(&partial); err != nil {
		t.Fatal(err)
	}
	if partial != 0 || rows != last*rowsPerTxn || txns != last || maxTxn != last {
		t.Fatalf("restored ledger is no committed state: state.last %d, %d rows in %d transactions (max %d), %d partial", last, rows, txns, maxTxn, partial)
	}
	return last
}

func integrity(t testing.TB, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func backup(t testing.TB, r *repo.Repository, path string) (*repo.Snapshot, error) {
	t.Helper()
	return Backup(t.Context(), r, BackupOptions{Asset: "staging-db", Path: path, TempDir: filepath.Join(t.TempDir(), "tmp"), BusyTimeout: 20 * time.Second})
}

// TestBackupUnderWriter: snapshots taken while a writer commits
// continuously restore to a database that passes integrity_check and holds
// exactly the transactions committed up to some moment during the backup.
func TestBackupUnderWriter(t *testing.T) {
	for _, journal := range []string{"wal", "delete"} {
		t.Run(journal, func(t *testing.T) {
			r := repotest.New(t)
			path := filepath.Join(t.TempDir(), "app.db")
			db := openDB(t, path, journal)
			createLedger(t, db)
			var committed atomic.Int64
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- writer(ctx, db, &committed) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("writer: %v", err)
				}
			}()
			for committed.Load() < 200 {
				time.Sleep(5 * time.Millisecond)
			}
			var lasts []int64
			for i := 0; i < 4; i++ {
				before := committed.Load()
				snap, err := backup(t, r, path)
				after := committed.Load()
				if err != nil {
					t.Fatal(err)
				}
				info, err := InfoOf(snap)
				if err != nil {
					t.Fatal(err)
				}
				if info.JournalMode != journal || info.IntegrityCheck != "ok" || info.PageSize != 4096 ||
					info.PageCount*info.PageSize != snap.Stats.BytesTotal || info.File != "app.db" || info.Source != path {
					t.Fatalf("recorded %+v, stats %+v", info, snap.Stats)
				}
				to := filepath.Join(t.TempDir(), "restored.db")
				res, err := Restore(t.Context(), r, snap, RestoreOptions{To: to, UID: -1, GID: -1})
				if err != nil {
					t.Fatal(err)
				}
				if res.IntegrityCheck != "ok" || integrity(t, to) != "ok" {
					t.Fatalf("restored database: %q", res.IntegrityCheck)
				}
				last := checkLedger(t, to)
				if last < before || last > after {
					t.Fatalf("restored transaction %d, but %d were committed when the backup began and %d when it ended", last, before, after)
				}
				lasts = append(lasts, last)
				src, _ := os.Stat(path)
				if st, err := os.Stat(to); err != nil || st.Mode() != src.Mode() {
					t.Fatalf("restored file: mode %v, source %v (%v)", st.Mode(), src.Mode(), err)
				}
			}
			if lasts[0] == lasts[len(lasts)-1] {
				t.Fatalf("the writer made no progress during the backups: %v", lasts)
			}
			t.Logf("%s: restored states %v", journal, lasts)
		})
	}
}

func snapshotCount(t testing.TB, r *repo.Repository) int {
	t.Helper()
	snaps, err := r.Snapshots(t.Context(), "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	return len(snaps)
}

// TestBadSources: what is not a database, or cannot be read, is refused
// with one line and records nothing.
func TestBadSources(t *testing.T) {
	r := repotest.New(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, bytes.Repeat([]byte("this is not a database\n"), 100), 0o644)
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o644)
	for _, c := range []struct{ path, want string }{
		{text, "is not a SQLite database"},
		{empty, "is empty (0 pages)"},
		{filepath.Join(dir, "missing.db"), "does not exist"},
		{dir, "is not a regular file"},
	} {
		_, err := backup(t, r, c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line with %q", c.path, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("backing up a missing database created it")
	}
	if n := snapshotCount(t, r); n != 0 {
		t.Fatalf("%d snapshots recorded", n)
	}
}

// TestLockedSource: a writer that holds the database longer than the busy
// timeout fails the backup in bounded time.
func TestLockedSource(t *testing.T) {
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "app.db")
	db := openDB(t, path, "delete")
	createLedger(t, db)
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Backup(t.Context(), r, BackupOptions{Asset: "staging-db", Path: path, TempDir: t.TempDir(), BusyTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "stayed locked") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 10*time.Second {
		t.Fatalf("gave up after %s", d)
	}
	conn.ExecContext(t.Context(), "ROLLBACK")
	if n := snapshotCount(t, r); n != 0 {
		t.Fatalf("%d snapshots recorded", n)
	}
	if _, err := backup(t, r, path); err != nil {
		t.Fatalf("after the lock is gone: %v", err)
	}
}

// TestDamagedSourceRecordsNothing: a copy that fails integrity_check is
// not recorded.
func TestDamagedSourceRecordsNothing(t *testing.T) {
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "app.db")
	db := openDB(t, path, "delete")
	exec(t, db, "CREATE TABLE t (v TEXT)")
	exec(t, db, "CREATE INDEX t_v ON t(v)")
	for i := 0; i < 100; i++ {
		exec(t, db, "INSERT INTO t VALUES (?)", fmt.Sprintf("value-%05d", i))
	}
	db.Close()
	// Change a value in the table but not in the index (or the other
	// way round): every page still parses, the two disagree.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("value-00042"))
	if i < 0 {
		t.Fatal("value not found")
	}
	copy(data[i:], "value-99942")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = backup(t, r, path)
	if err == nil || !strings.Contains(err.Error(), "fails PRAGMA integrity_check") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v", err)
	}
	if n := snapshotCount(t, r); n != 0 {
		t.Fatalf("%d snapshots recorded", n)
	}
}

// TestRestoreRefusesExisting: a restore never overwrites a database, nor
// writes one beside a WAL or journal that would be replayed into it.
func TestRestoreRefusesExisting(t *testing.T) {
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "app.db")
	db := openDB(t, path, "wal")
	createLedger(t, db)
	snap, err := backup(t, r, path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	to := filepath.Join(dir, "app.db")
	for _, obstacle := range []string{to, to + "-wal", to + "-journal"} {
		if err := os.WriteFile(obstacle, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Restore(t.Context(), r, snap, RestoreOptions{To: to, UID: -1, GID: -1})
		if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), obstacle+" exists; remove it or choose another path") {
			t.Fatalf("%s: got %v", obstacle, err)
		}
		if got, _ := os.ReadFile(obstacle); string(got) != "precious" {
			t.Fatalf("%s changed", obstacle)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("a refused restore left %d files", len(ents))
		}
		os.Remove(obstacle)
	}
	res, err := Restore(t.Context(), r, snap, RestoreOptions{To: to, UID: -1, GID: -1})
	if err != nil || res.IntegrityCheck != "ok" {
		t.Fatal(res, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("restore left %d files", len(ents))
	}
	// The copy keeps the source's journal mode.
	rdb := openDB(t, to, "wal")
	var mode string
	if err := rdb.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatal(mode, err)
	}
	checkLedger(t, to)
}

// TestInterruptedBackupRecordsNothing: a backup whose context ends
// records nothing and leaves no temporary copy.
func TestInterruptedBackupRecordsNothing(t *testing.T) {
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "app.db")
	db := openDB(t, path, "wal")
	createLedger(t, db)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tmp := filepath.Join(t.TempDir(), "tmp")
	if _, err := Backup(ctx, r, BackupOptions{Asset: "staging-db", Path: path, TempDir: tmp}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if n := snapshotCount(t, r); n != 0 {
		t.Fatalf("%d snapshots recorded", n)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("%d temporary entries left", len(left))
	}
}

// TestChangedPagesOnly: the next snapshot of a database in which a few
// rows changed stores about the pages that changed, not the database.
func TestChangedPagesOnly(t *testing.T) {
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "app.db")
	db := openDB(t, path, "wal")
	exec(t, db, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, body TEXT)")
	exec(t, db, "CREATE INDEX items_name ON items(name)")
	const rows = 20000
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < rows; i++ {
		// Names in random order, as an index on them sees them.
		if _, err := tx.Exec("INSERT INTO items(name, body) VALUES (hex(randomblob(6)), hex(randomblob(200)))"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	first, err := backup(t, r, path)
	if err != nil {
		t.Fatal(err)
	}
	// 1% of the rows appended, 1% updated.
	exec(t, db, "INSERT INTO items(name, body) SELECT hex(randomblob(6)), hex(randomblob(200)) FROM items LIMIT ?", rows/100)
	exec(t, db, "UPDATE items SET body = hex(randomblob(200)) WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT ?)", rows/100)
	second, err := backup(t, r, path)
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(second.Stats.BytesNew) / float64(first.Stats.BytesNew)
	t.Logf("first %d bytes new, second %d (%.3f)", first.Stats.BytesNew, second.Stats.BytesNew, ratio)
	if ratio > 0.25 { // 0.14 in page blocks; content-defined chunks stored 0.50
		t.Fatalf("the second snapshot stored %.0f%% of the first", ratio*100)
	}
	to := filepath.Join(t.TempDir(), "restored.db")
	if _, err := Restore(t.Context(), r, second, RestoreOptions{To: to, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	if a, b := digest(t, path), digest(t, to); a != b {
		t.Fatalf("restored rows differ from the source's: %s, %s", b, a)
	}
}

// digest sums up the rows of table items.
func digest(t testing.TB, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT id, name, body FROM items ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	h := sha256.New()
	n := 0
	for rows.Next() {
		var id int64
		var name, body string
		if err := rows.Scan(&id, &name, &body); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%d|%s|%s\n", id, name, body)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d rows %x", n, h.Sum(nil))
}

// TestLeftoversRemoved: the copy a crashed backup left is removed by the
// next backup of the same asset, and only of that asset.
func TestLeftoversRemoved(t *testing.T) {
	r := repotest.New(t)
	path := filepath.Join(t.TempDir(), "app.db")
	createLedger(t, openDB(t, path, "wal"))
	tmp := t.TempDir()
	mine := filepath.Join(tmp, "sqlite-staging-db", "copy-crashed")
	other := filepath.Join(tmp, "sqlite-staging-db-2", "copy-running")
	for _, d := range []string{mine, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "copy.db"), []byte("old copy"), 0o600)
	}
	if _, err := Backup(t.Context(), r, BackupOptions{Asset: "staging-db", Path: path, TempDir: tmp}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mine); err == nil {
		t.Error("the crashed backup's copy is still there")
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another asset's copy was removed: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(tmp, "sqlite-staging-db")); len(left) != 0 {
		t.Errorf("%d entries left", len(left))
	}
}

// TestHotJournal: a database a writer left mid-transaction (a hot
// journal) is refused with what to do: a read-only reader cannot roll it
// back, and copying it as it is would copy half a transaction.
func TestHotJournal(t *testing.T) {
	r := repotest.New(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	db := openDB(t, path, "delete")
	createLedger(t, db)
	exec(t, db, "PRAGMA cache_size = 10")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for i := 0; i < 2000; i++ {
		if _, err := tx.Exec("INSERT INTO ledger(txn, i, pad) VALUES (1, ?, ?)", i, strings.Repeat("x", 300)); err != nil {
			t.Fatal(err)
		}
	}
	// The writer "crashes": its files, mid-transaction, found elsewhere
	// where no process holds a lock on them.
	crashed := filepath.Join(t.TempDir(), "app.db")
	for _, suffix := range []string{"", "-journal"} {
		data, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crashed+suffix, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err = backup(t, r, crashed)
	if err == nil || !strings.Contains(err.Error(), "has a hot journal") {
		t.Fatalf("got %v", err)
	}
	if n := snapshotCount(t, r); n != 0 {
		t.Fatalf("%d snapshots recorded", n)
	}
}
