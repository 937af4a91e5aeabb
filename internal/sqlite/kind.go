package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// NewKind is the sqlite kind: a live SQLite database copied through the
// backup API (see docs/sqlite.md).
func NewKind() asset.Kind { return kind{} }

type kind struct{}

func (kind) Name() lifeboat.AssetKind { return lifeboat.KindSQLite }

// Backup copies the live database into the repository (every snapshot is
// a whole copy, so Full changes nothing). The copy waits in the state
// directory, which is on a disk, unlike /tmp on many hosts.
func (kind) Backup(ctx context.Context, b *asset.Backup) (*repo.Snapshot, error) {
	a := b.Asset
	cfg, err := configOf(a)
	if err != nil {
		return nil, err
	}
	return Backup(ctx, b.Repo, BackupOptions{
		Asset: a.Name, Path: cfg.Path, TempDir: filepath.Join(b.StateDir, "tmp"), LockWait: b.LockWait,
		Record: checkquery.RecordedChecks(a), Log: b.Log,
	})
}

func (kind) RestoreFlags() []asset.Flag { return nil }

// Restore writes the snapshot's database to --to, never over an existing
// file, and reports its integrity check.
func (kind) Restore(ctx context.Context, r *asset.Restore) (*asset.Restored, error) {
	if r.To == "" {
		return nil, asset.Usagef("needs --to PATH (the database file to create)")
	}
	s := r.Snapshot
	start := time.Now()
	res, err := Restore(ctx, r.Repo, s, RestoreOptions{To: r.To, UID: r.UID, GID: r.GID, Workers: r.Workers})
	if errors.Is(err, ErrBadTarget) {
		return nil, &asset.UsageError{Err: err}
	}
	if err != nil {
		return nil, err
	}
	in := res.Info
	return &asset.Restored{Snapshot: s, Lines: []string{
		fmt.Sprintf("restored snapshot %s of %s (%s, taken %s) to %s: %s, %d pages of %d, journal mode %s, user_version %d, %s",
			s.ID.Short(), r.Asset.Name, in.Source, lifeboat.FormatTime(s.EndTime), res.Path, asset.HumanBytes(res.Bytes),
			in.PageCount, in.PageSize, in.JournalMode, in.UserVersion, time.Since(start).Round(time.Millisecond)),
		"integrity_check: " + res.IntegrityCheck,
	}}, nil
}

// Drill restores to a temporary file (which Restore checks with PRAGMA
// integrity_check), then runs the validation queries on it.
func (kind) Drill(ctx context.Context, d asset.Drill) error {
	s, err := d.PickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.Phase(evidence.PhaseFetch)
	path := filepath.Join(d.WorkDir(), "restored.db")
	res, err := Restore(ctx, d.Repo(), s, RestoreOptions{To: path, UID: -1, GID: -1, Workers: d.Workers()})
	d.Phase(evidence.PhaseWrite)
	if err != nil {
		return err
	}
	d.Report().Bytes += res.Bytes
	c := asset.IntegrityCheck{Name: "PRAGMA integrity_check", Passed: res.IntegrityCheck == "ok", Got: res.IntegrityCheck}
	if !c.Passed {
		c.Detail = res.IntegrityCheck
	}
	d.Integrity(c)
	db, err := sql.Open("sqlite", "file:"+path+"?"+url.Values{"mode": {"ro"}, "_pragma": {"query_only(1)"}}.Encode())
	if err != nil {
		return fmt.Errorf("open the restored database: %w", err)
	}
	defer db.Close()
	d.Queries(ctx, func(string) string { return "" }, querier{db})
	d.Phase(evidence.PhaseChecks)
	return nil
}

type querier struct{ db *sql.DB }

func (q querier) QueryValue(ctx context.Context, _ string, query string) (string, bool, error) {
	return checkquery.SQLite(ctx, q.db, query)
}
