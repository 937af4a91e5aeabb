// Package sqlite backs up live SQLite databases (the asset kind "sqlite")
// and restores them, in pure Go through modernc.org/sqlite.
//
// A backup copies the database with SQLite's online backup API inside one
// read transaction on the source, so the copy is the database as one
// commit left it, whatever writers do meanwhile (in WAL mode they go on
// writing; in rollback-journal mode they wait for the copy). The copy is
// written to a private temporary directory, checked with PRAGMA
// integrity_check, and only then stored through a treestore session as a
// single file; a copy that fails the check is never recorded.
//
// The source is opened read-only: Lifeboat never writes to it, never
// creates it, and never rolls back a crashed writer's journal for it.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	msqlite "modernc.org/sqlite"

	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

// KindName is the asset kind this package backs up, as recorded in snapshots.
const KindName = string(lifeboat.KindSQLite)

// DefaultBusyTimeout is how long a backup waits for a writer's lock on the
// source before it gives up.
const DefaultBusyTimeout = 30 * time.Second

// stepPages is how many pages one backup step copies; between steps the
// backup notices cancellation. The read transaction stays open across
// steps, so stepping never restarts the copy.
const stepPages = 4096

// minBlock is the smallest block a database is stored in.
const minBlock = 4 << 10

// Info is what a snapshot of a SQLite database records about it
// (Snapshot.Extra).
type Info struct {
	Source string `json:"source"` // the database file backed up
	File   string `json:"file"`   // the copy's path in the snapshot's tree
	// PageSize and PageCount are the copy's; PageSize*PageCount is its
	// size in bytes.
	PageSize  int64 `json:"page_size"`
	PageCount int64 `json:"page_count"`
	// JournalMode is the source's (wal, delete, truncate, persist...).
	JournalMode string `json:"journal_mode"`
	// UserVersion is PRAGMA user_version: applications keep their schema
	// version there, which tells which release a restore belongs to.
	UserVersion   int64  `json:"user_version"`
	SQLiteVersion string `json:"sqlite_version"` // of the library that made the copy
	// IntegrityCheck is PRAGMA integrity_check of the copy: always "ok",
	// since a copy that fails it is not recorded.
	IntegrityCheck string `json:"integrity_check"`
	// The values of the drill checks that compare with the backup ("=
	// recorded"), taken on the copy: exactly the state the snapshot holds.
	checkquery.Recorded
}

// InfoOf decodes what a SQLite snapshot records.
func InfoOf(s *repo.Snapshot) (Info, error) {
	var info Info
	if s.Kind != KindName {
		return info, fmt.Errorf("snapshot %s is of kind %s, not %s", s.ID.Short(), s.Kind, KindName)
	}
	if err := json.Unmarshal(s.Extra, &info); err != nil {
		return info, fmt.Errorf("snapshot %s: details: %w", s.ID.Short(), err)
	}
	return info, nil
}

// BackupOptions describe one backup.
type BackupOptions struct {
	Asset string
	Path  string // the database file (absolute)
	// TempDir is where the private directory holding the copy is made;
	// it needs room for the whole database. Empty means os.TempDir().
	TempDir string
	// BusyTimeout bounds the wait for a writer's lock on the source;
	// 0 means DefaultBusyTimeout.
	BusyTimeout time.Duration
	// LockWait is how long to wait for another backup of the asset.
	LockWait time.Duration
	// Record are the checks whose values are taken on the copy and kept
	// with the snapshot. A query that fails is noted, not fatal: the copy
	// is good, and the drill that needs the value says why it is missing.
	Record []checkquery.Query
	Log    *slog.Logger
}

// Backup copies the database at o.Path consistently and records the copy
// as a snapshot of o.Asset. It records nothing when it fails.
func Backup(ctx context.Context, r *repo.Repository, o BackupOptions) (*repo.Snapshot, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if !filepath.IsAbs(o.Path) {
		return nil, fmt.Errorf("database path %q is not absolute", o.Path)
	}
	// Refuse what cannot be a database before taking the asset's lock.
	src, err := os.Stat(o.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("database %s does not exist", o.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", o.Path, err)
	}
	if !src.Mode().IsRegular() {
		return nil, fmt.Errorf("database %s is not a regular file", o.Path)
	}
	s, err := treestore.Begin(ctx, r, treestore.Options{Asset: o.Asset, Kind: KindName, LockWait: o.LockWait, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer s.Abort()
	tmp, err := privateDir(o.TempDir, o.Asset)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	copyPath := filepath.Join(tmp, "copy.db")
	began := time.Now()
	info, err := snapshotDB(ctx, o.Path, copyPath, o.BusyTimeout)
	if err != nil {
		return nil, err
	}
	copied := time.Now()
	check, err := checkCopy(ctx, copyPath)
	if err != nil {
		return nil, fmt.Errorf("check the copy of %s: %w", o.Path, err)
	}
	if check.result != "ok" {
		return nil, fmt.Errorf("the copy of %s fails PRAGMA integrity_check, nothing recorded (the source may be damaged; run PRAGMA integrity_check on it): %s",
			o.Path, firstLine(check.result))
	}
	info.PageSize, info.PageCount, info.IntegrityCheck = check.pageSize, check.pageCount, check.result
	if len(o.Record) > 0 {
		if err := recordChecks(ctx, copyPath, o.Record, &info.Recorded); err != nil {
			return nil, fmt.Errorf("the copy of %s: %w", o.Path, err)
		}
	}
	info.File = filepath.Base(o.Path)
	f, err := os.Open(copyPath)
	if err != nil {
		return nil, fmt.Errorf("open the copy of %s: %w", o.Path, err)
	}
	defer f.Close()
	size := info.PageSize * info.PageCount
	if st, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("open the copy of %s: %w", o.Path, err)
	} else if st.Size() != size {
		// A journal or WAL left beside the copy would mean its main file
		// is not the whole database.
		return nil, fmt.Errorf("the copy of %s has %d bytes, not %d pages of %d", o.Path, st.Size(), info.PageCount, info.PageSize)
	}
	n := &repo.Node{Path: info.File, Type: repo.NodeFile, Mode: src.Mode().Perm(), MTime: src.ModTime().UnixNano()}
	if st, ok := src.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = st.Uid, st.Gid
	}
	checked := time.Now()
	// Pages change in place and keep their size, so blocks of one page
	// (4 KiB at least: a multiple of every smaller page size) store only
	// the pages that changed, and find again those a VACUUM moved. Cutting
	// at content-defined points instead stored 4 to 9 times more after
	// small changes (see TestChangedPagesOnly).
	if err := s.AddFixed(ctx, n, f, int(max(info.PageSize, minBlock))); err != nil {
		return nil, err
	}
	o.Log.Info("sqlite copy stored", "asset", o.Asset, "bytes", n.Size, "copy", copied.Sub(began),
		"integrity_check", checked.Sub(copied), "store", time.Since(checked))
	if n.Size != size {
		return nil, fmt.Errorf("the copy of %s changed while it was stored (%d bytes, not %d)", o.Path, n.Size, size)
	}
	return s.Commit(ctx, "full", info)
}

// privateDir makes a directory only this user can read for the copy,
// in a directory of the asset's own under base, and removes what crashed
// backups of the asset left there. The caller holds the asset's lock, so
// no other backup of it is using one.
func privateDir(base, asset string) (string, error) {
	if base == "" {
		base = os.TempDir()
	}
	own := filepath.Join(base, "sqlite-"+safeName(asset))
	if err := os.MkdirAll(own, 0o700); err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	if old, err := os.ReadDir(own); err == nil {
		for _, e := range old {
			os.RemoveAll(filepath.Join(own, e.Name()))
		}
	}
	dir, err := os.MkdirTemp(own, "copy-*")
	if err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	// MkdirTemp already uses 0700; say so in case default ACLs widened
	// it: the copy holds the whole database.
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	return dir, nil
}

// safeName keeps an asset name usable as one file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
}

// sourceDSN opens the source read-only: mode=ro neither creates a missing
// file nor writes to an existing one. The busy timeout bounds the wait for
// a writer (in rollback-journal mode a commit locks readers out briefly).
func sourceDSN(path string, busy time.Duration) string {
	u := url.URL{Scheme: "file", Path: path}
	return u.String() + "?mode=ro&_busy_timeout=" + strconv.FormatInt(busy.Milliseconds(), 10)
}

// copyDSN opens a file only this process uses: immutable=1 reads it as it
// is, without locks and without creating -wal or -shm files beside it,
// which is right because the copy's main file holds every page.
func copyDSN(path string) string {
	u := url.URL{Scheme: "file", Path: path}
	return u.String() + "?mode=ro&immutable=1"
}

// backuper is what modernc.org/sqlite's connection offers for SQLite's
// online backup API.
type backuper interface {
	NewBackup(dstURI string) (*msqlite.Backup, error)
}

// snapshotDB copies the source database to dst inside one read
// transaction, so the copy is one committed state of it.
func snapshotDB(ctx context.Context, path, dst string, busy time.Duration) (Info, error) {
	info := Info{Source: path}
	db, err := sql.Open("sqlite", sourceDSN(path, busy))
	if err != nil {
		return info, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return info, explain(path, busy, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return info, explain(path, busy, err)
	}
	// The first read takes the read lock (or, in WAL mode, fixes the
	// snapshot) that the backup steps below share, and is where a file
	// that is not a database is found out.
	var tables int64
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return info, explain(path, busy, err)
	}
	var pages int64
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return info, explain(path, busy, err)
	}
	if pages == 0 {
		// SQLite reads an empty file as an empty database; backing it
		// up would record nothing worth restoring and hide a wrong path.
		return info, fmt.Errorf("database %s is empty (0 pages): nothing to back up; check the asset's path", path)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&info.JournalMode); err != nil {
		return info, explain(path, busy, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&info.UserVersion); err != nil {
		return info, explain(path, busy, err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&info.SQLiteVersion); err != nil {
		return info, explain(path, busy, err)
	}
	err = conn.Raw(func(dc any) error {
		bk, ok := dc.(backuper)
		if !ok {
			return errors.New("the SQLite driver offers no backup API")
		}
		u := url.URL{Scheme: "file", Path: dst}
		b, err := bk.NewBackup(u.String())
		if err != nil {
			return err
		}
		for {
			more, err := b.Step(stepPages)
			if err != nil {
				b.Finish()
				return err
			}
			if !more {
				break
			}
			if err := ctx.Err(); err != nil {
				b.Finish()
				return err
			}
		}
		return b.Finish()
	})
	if err != nil {
		return info, explain(path, busy, fmt.Errorf("copy: %w", err))
	}
	// A read transaction has nothing to keep; ending it lets writers of
	// a rollback-journal database go on.
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		return info, explain(path, busy, err)
	}
	return info, nil
}

type checkResult struct {
	result              string
	pageSize, pageCount int64
}

// checkCopy runs PRAGMA integrity_check on a copy and reads its size.
func checkCopy(ctx context.Context, path string) (checkResult, error) {
	var c checkResult
	db, err := sql.Open("sqlite", copyDSN(path))
	if err != nil {
		return c, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return c, err
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			rows.Close()
			return c, err
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	c.result = strings.Join(lines, "\n")
	if err := db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&c.pageSize); err != nil {
		return c, err
	}
	if err := db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&c.pageCount); err != nil {
		return c, err
	}
	return c, nil
}

// recordChecks runs the checks on the copy, read only.
func recordChecks(ctx context.Context, path string, qs []checkquery.Query, rec *checkquery.Recorded) error {
	db, err := sql.Open("sqlite", copyDSN(path)+"&_pragma=query_only(1)")
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range qs {
		v, null, err := checkquery.SQLite(ctx, db, q.SQL)
		rec.Record(q.Name, v, null, err)
	}
	return ctx.Err()
}

// SQLite's primary result codes that get their own explanation.
const (
	codeBusy     = 5
	codeLocked   = 6
	codeReadOnly = 8
	codeCorrupt  = 11
	codeCantOpen = 14
	codeNotADB   = 26
	// SQLITE_READONLY_ROLLBACK: a hot journal a read-only connection
	// cannot roll back.
	codeReadOnlyRollback = codeReadOnly | 3<<8
)

// explain turns SQLite's errors about the source into what an operator
// can act on.
func explain(path string, busy time.Duration, err error) error {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("database %s: %w", path, err)
	}
	switch code := se.Code(); {
	case code&0xff == codeNotADB:
		return fmt.Errorf("%s is not a SQLite database (or is encrypted): %w", path, err)
	case code&0xff == codeBusy || code&0xff == codeLocked:
		return fmt.Errorf("database %s stayed locked by a writer for more than %s; nothing recorded, try again: %w", path, busy, err)
	case code == codeReadOnlyRollback:
		return fmt.Errorf("database %s has a hot journal (a writer crashed mid-transaction) that only a read-write connection can roll back; open it once with the application or sqlite3, then back up again: %w", path, err)
	case code&0xff == codeCorrupt:
		return fmt.Errorf("database %s is damaged (run PRAGMA integrity_check on it): %w", path, err)
	case code&0xff == codeCantOpen:
		return fmt.Errorf("cannot open database %s (missing, or its directory is not readable): %w", path, err)
	}
	return fmt.Errorf("database %s: %w", path, err)
}

func firstLine(s string) string {
	first, rest, _ := strings.Cut(s, "\n")
	if rest != "" {
		return first + fmt.Sprintf(" (and %d more problems)", strings.Count(rest, "\n")+1)
	}
	return first
}
