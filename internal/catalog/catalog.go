// Package catalog is the daemon's local record of what it did: every run
// of every asset (when, why, how it ended, what it stored), in an embedded
// SQLite database under the policy's state_dir. It is pure Go
// (modernc.org/sqlite), so the binary stays free of cgo.
//
// The catalog is a journal and a cache, not a source of truth: the
// repository alone says which snapshots exist, and restore needs nothing
// from here. Losing it loses the run history (and one catch-up decision),
// never data.
//
// The schema is versioned with PRAGMA user_version and brought up to date
// by Open, one migration at a time, each in its own transaction. The
// database runs in WAL mode so `lifeboat runs` reads while the daemon
// writes, with a busy timeout so neither fails on the other's lock.
package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// FileName is the catalog's name inside the state directory.
const FileName = "catalog.db"

// Result is how a run ended.
type Result string

// Results.
const (
	Running Result = "running" // started, not ended (or the daemon died)
	OK      Result = "ok"      // the snapshot is durably stored
	Failed  Result = "failed"  // a hook or the backup failed
	Skipped Result = "skipped" // its slot came while the asset's previous run was going
	Aborted Result = "aborted" // stopped by a shutdown of the daemon
)

// Run is one run of an asset.
type Run struct {
	ID int64
	// Host is the agent that ran it, set only by reads of the fleet
	// catalog (internal/fleet); a host's own catalog leaves it empty.
	Host    string
	Asset   string
	Kind    string
	Trigger string // schedule, catch-up or manual
	// Slot is the schedule slot the run serves (the newest, for a
	// catch-up); zero for a manual run.
	Slot  time.Time
	Start time.Time
	End   time.Time // zero while running
	// Result is how it ended; Error the reason when it is not OK, on one
	// line.
	Result Result
	Error  string
	// Snapshot is the full ID of the snapshot the run recorded, "" when
	// it recorded none.
	Snapshot string
	// Bytes is the size of what the snapshot restores; BytesStored what
	// the run added to the repository, after deduplication and
	// compression.
	Bytes       int64
	BytesStored int64
	// Output is what the backup printed (bounded), HookOutput what the
	// pre and post hooks printed (bounded, each section labelled).
	Output     string
	HookOutput string
}

// Catalog is an open catalog database.
type Catalog struct {
	db   *sql.DB
	path string
	// outbox: every write also queues its record for the fleet catalog
	// (outbox.go), in the same transaction.
	outbox bool
}

// Option changes how Open opens the catalog.
type Option func(*Catalog)

// WithOutbox makes every write also append its record to the outbox, in
// the same transaction, for the shipper to send to the fleet catalog
// (internal/fleet). Without it nothing is queued: a host without a fleet
// catalog keeps no outbox.
func WithOutbox() Option { return func(c *Catalog) { c.outbox = true } }

// busyTimeout is how long a statement waits for another process's lock
// (lifeboat runs reading while the daemon writes) before failing.
const busyTimeout = 10 * time.Second

// migrations[i] brings the schema from version i to i+1. Append only:
// a released migration is never edited.
var migrations = []string{
	`CREATE TABLE runs (
		id           INTEGER PRIMARY KEY,
		asset        TEXT    NOT NULL,
		kind         TEXT    NOT NULL,
		trigger      TEXT    NOT NULL,
		slot         TEXT,
		started      TEXT    NOT NULL,
		ended        TEXT,
		result       TEXT    NOT NULL,
		error        TEXT    NOT NULL DEFAULT '',
		snapshot     TEXT    NOT NULL DEFAULT '',
		bytes        INTEGER NOT NULL DEFAULT 0,
		bytes_stored INTEGER NOT NULL DEFAULT 0,
		output       TEXT    NOT NULL DEFAULT '',
		hook_output  TEXT    NOT NULL DEFAULT ''
	);
	CREATE INDEX runs_asset_started ON runs (asset, started);
	CREATE INDEX runs_started ON runs (started);`,
	`CREATE TABLE drills (
		id          TEXT    PRIMARY KEY,
		asset       TEXT    NOT NULL,
		started     TEXT    NOT NULL,
		passed      INTEGER NOT NULL,
		report      TEXT    NOT NULL
	);
	CREATE INDEX drills_asset_started ON drills (asset, started);
	CREATE TABLE verifies (
		id          INTEGER PRIMARY KEY,
		repository  TEXT    NOT NULL,
		started     TEXT    NOT NULL,
		ended       TEXT    NOT NULL,
		ok          INTEGER NOT NULL,
		error       TEXT    NOT NULL DEFAULT '',
		objects     INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX verifies_repository_started ON verifies (repository, started);`,
	// The audit trail (audit.go): events in chain order, the chain's id,
	// and how far the chain is sealed into each repository.
	`CREATE TABLE audit_events (
		seq  INTEGER PRIMARY KEY,
		time TEXT    NOT NULL,
		body BLOB    NOT NULL,
		hash BLOB    NOT NULL
	);
	CREATE INDEX audit_events_time ON audit_events (time);
	CREATE TABLE audit_meta (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE audit_seals (
		repository TEXT    PRIMARY KEY,
		seq        INTEGER NOT NULL,
		sealed     TEXT    NOT NULL
	);`,
	// The outbox (outbox.go): records still to reach the fleet catalog,
	// in the order they were written. AUTOINCREMENT: a sequence number
	// is never reused, even once every row is shipped and deleted, since
	// the fleet catalog resumes after the last one it holds.
	`CREATE TABLE outbox (
		seq     INTEGER PRIMARY KEY AUTOINCREMENT,
		type    TEXT    NOT NULL,
		key     TEXT    NOT NULL,
		payload TEXT    NOT NULL
	);
	CREATE INDEX outbox_type_key ON outbox (type, key);
	CREATE TABLE outbox_meta (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);`,
	// Platform exercises (platform.go): one report each, naming the
	// member drills recorded in drills.
	`CREATE TABLE platform_drills (
		id      TEXT    PRIMARY KEY,
		grp     TEXT    NOT NULL,
		started TEXT    NOT NULL,
		passed  INTEGER NOT NULL,
		report  TEXT    NOT NULL
	);
	CREATE INDEX platform_drills_started ON platform_drills (started);`,
}

// schemaVersion is the schema version this build writes.
func schemaVersion() int { return len(migrations) }

// Path is where the catalog of a state directory lives.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Open opens the catalog at path, creating it (and its directory) when
// needed, and migrates it to the schema this build writes. A catalog written by a newer
// Lifeboat is refused rather than misread.
func Open(ctx context.Context, path string, opts ...Option) (*Catalog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := private(path); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a run recorded is a run on disk, even across a power cut.
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	// One connection: the process's writers queue here instead of
	// meeting SQLITE_BUSY, and the pragmas above hold for all statements.
	db.SetMaxOpenConns(1)
	c := &Catalog{db: db, path: path}
	for _, o := range opts {
		o(c)
	}
	if err := c.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// private makes the database file (creating it empty) and the WAL and
// shared-memory files beside it, if any, readable by their owner only:
// the catalog holds run output, drill reports and audit records. SQLite
// gives the files it creates the database file's mode, so creating it
// 0600 first is enough for a new catalog; one made by an older version
// (0644) is tightened.
func private(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close closes the database.
func (c *Catalog) Close() error { return c.db.Close() }

func (c *Catalog) migrate(ctx context.Context) error {
	var mode string
	if err := c.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("catalog %s: %w", c.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("catalog %s: journal mode is %s, want wal", c.path, mode)
	}
	for {
		tx, err := c.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("catalog %s: %w", c.path, err)
		}
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			tx.Rollback()
			return fmt.Errorf("catalog %s: read schema version: %w", c.path, err)
		}
		if v == schemaVersion() {
			return tx.Rollback()
		}
		if v > schemaVersion() {
			tx.Rollback()
			return fmt.Errorf("catalog %s has schema version %d; this lifeboat knows up to %d: upgrade lifeboat", c.path, v, schemaVersion())
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("catalog %s: migrate to schema version %d: %w", c.path, v+1, err)
		}
		// user_version is in the database header, written by this
		// transaction: a migration and its version commit together.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("catalog %s: %w", c.path, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("catalog %s: migrate to schema version %d: %w", c.path, v+1, err)
		}
	}
}

// timeFormat stores times as UTC text of fixed width, so that they sort as
// text and read well in the sqlite3 shell.
const timeFormat = "2006-01-02T15:04:05.000000000Z"

func encodeTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeFormat)
}

func decodeTime(s sql.NullString) (time.Time, error) {
	if !s.Valid || s.String == "" {
		return time.Time{}, nil
	}
	return time.Parse(timeFormat, s.String)
}

// Insert records a new run and sets r.ID.
func (c *Catalog) Insert(ctx context.Context, r *Run) error {
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO runs
		(asset, kind, trigger, slot, started, ended, result, error, snapshot, bytes, bytes_stored, output, hook_output)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Asset, r.Kind, r.Trigger, encodeTime(r.Slot), encodeTime(r.Start), encodeTime(r.End), string(r.Result),
			r.Error, r.Snapshot, r.Bytes, r.BytesStored, r.Output, r.HookOutput)
		if err != nil {
			return err
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		return c.queueRuns(ctx, tx, r.ID)
	})
	if err != nil {
		r.ID = 0 // rolled back: there is no such run
		return fmt.Errorf("catalog: record run of %s: %w", r.Asset, err)
	}
	return nil
}

// Update writes the run's end (End, Result, Error, Snapshot, bytes and
// outputs) over its record.
func (c *Catalog) Update(ctx context.Context, r *Run) error {
	errNoRun := errors.New("no such run")
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE runs SET ended = ?, result = ?, error = ?, snapshot = ?,
		bytes = ?, bytes_stored = ?, output = ?, hook_output = ? WHERE id = ?`,
			encodeTime(r.End), string(r.Result), r.Error, r.Snapshot, r.Bytes, r.BytesStored, r.Output, r.HookOutput, r.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errNoRun
		}
		return c.queueRuns(ctx, tx, r.ID)
	})
	if err != nil {
		return fmt.Errorf("catalog: record end of run %d of %s: %w", r.ID, r.Asset, err)
	}
	return nil
}

// Filter selects runs.
type Filter struct {
	// Hosts selects the runs of these agents in the fleet catalog; none
	// selects every host's. A host's own catalog ignores it.
	Hosts []string
	// Assets selects the runs recorded under any of these names; none
	// selects every run.
	Assets []string
	// Since selects the runs started at or after it; zero: all.
	Since time.Time
	Limit int // 0 for no limit
}

// Runs lists runs, newest first.
func (c *Catalog) Runs(ctx context.Context, f Filter) ([]Run, error) {
	query := runColumns + ` FROM runs`
	var args []any
	var conds []string
	if len(f.Assets) > 0 {
		conds = append(conds, "asset IN (?"+strings.Repeat(", ?", len(f.Assets)-1)+")")
		for _, a := range f.Assets {
			args = append(args, a)
		}
	}
	if !f.Since.IsZero() {
		conds = append(conds, "started >= ?")
		args = append(args, encodeTime(f.Since))
	}
	if len(conds) > 0 {
		query += " WHERE " + strings.Join(conds, " AND ")
	}
	query += " ORDER BY started DESC, id DESC"
	if f.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := c.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: list runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("catalog: list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: list runs: %w", err)
	}
	return out, nil
}

// runColumns are what scanRun reads.
const runColumns = `SELECT id, asset, kind, trigger, slot, started, ended, result, error, snapshot, bytes, bytes_stored,
		output, hook_output`

func scanRun(rows interface{ Scan(...any) error }) (Run, error) {
	var r Run
	var slot, start, end sql.NullString
	var result string
	if err := rows.Scan(&r.ID, &r.Asset, &r.Kind, &r.Trigger, &slot, &start, &end, &result, &r.Error,
		&r.Snapshot, &r.Bytes, &r.BytesStored, &r.Output, &r.HookOutput); err != nil {
		return r, err
	}
	r.Result = Result(result)
	var errs [3]error
	r.Slot, errs[0] = decodeTime(slot)
	r.Start, errs[1] = decodeTime(start)
	r.End, errs[2] = decodeTime(end)
	if err := errors.Join(errs[:]...); err != nil {
		return r, fmt.Errorf("run %d: %w", r.ID, err)
	}
	return r, nil
}

// LastScheduled returns, per asset, the newest run the schedule started
// (by slot; skipped slots left out), with its Slot and Result: the point
// from which the daemon, starting, looks for missed slots.
func (c *Catalog) LastScheduled(ctx context.Context) (map[string]Run, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, asset, slot, result FROM (
		SELECT id, asset, slot, result, row_number() OVER (PARTITION BY asset ORDER BY slot DESC, id DESC) AS n
		FROM runs WHERE slot IS NOT NULL AND result <> ?) WHERE n = 1`, string(Skipped))
	if err != nil {
		return nil, fmt.Errorf("catalog: last runs: %w", err)
	}
	defer rows.Close()
	out := map[string]Run{}
	for rows.Next() {
		var r Run
		var slot sql.NullString
		var result string
		if err := rows.Scan(&r.ID, &r.Asset, &slot, &result); err != nil {
			return nil, fmt.Errorf("catalog: last runs: %w", err)
		}
		if r.Slot, err = decodeTime(slot); err != nil {
			return nil, fmt.Errorf("catalog: last run of %s: %w", r.Asset, err)
		}
		r.Result = Result(result)
		out[r.Asset] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: last runs: %w", err)
	}
	return out, nil
}

// AbortRunning closes the records of runs still marked running: a daemon
// that died (killed, host crash) left them so. Only the one daemon that
// owns the state directory may call it. It returns how many it closed.
func (c *Catalog) AbortRunning(ctx context.Context, now time.Time, reason string) (int, error) {
	var n int64
	err := c.write(ctx, func(tx *sql.Tx) error {
		var ids []int64
		if c.outbox {
			rows, err := tx.QueryContext(ctx, `SELECT id FROM runs WHERE result = ?`, string(Running))
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE runs SET result = ?, error = ?, ended = ? WHERE result = ?`,
			string(Aborted), reason, encodeTime(now), string(Running))
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		return c.queueRuns(ctx, tx, ids...)
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: close unfinished runs: %w", err)
	}
	return int(n), nil
}
