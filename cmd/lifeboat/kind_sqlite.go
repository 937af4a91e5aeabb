package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/sqlite"
)

func init() {
	kindBackups[lifeboat.KindSQLite] = backupSQLite
	kindRestores[lifeboat.KindSQLite] = restoreSQLite
}

// backupSQLite copies a live SQLite database into the repository (every
// snapshot is a whole copy, so --full changes nothing). The copy waits in
// the state directory, which is on a disk, unlike /tmp on many hosts, and
// is there for Lifeboat's own use anyway.
func backupSQLite(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, o backupOptions) (*repo.Snapshot, error) {
	p, err := g.policy()
	if err != nil {
		return nil, err
	}
	return sqlite.Backup(ctx, r, sqlite.BackupOptions{
		Asset: a.Name, Path: a.Path, TempDir: filepath.Join(p.StateDir, "tmp"), LockWait: o.lockWait,
		Record: recordedChecks(a), Log: g.log,
	})
}

// restoreSQLite writes a snapshot's database to --to, never over an
// existing file, and prints the result of its integrity check.
func restoreSQLite(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, s *repo.Snapshot, o restoreOptions) error {
	if o.to == "" {
		return usagef("needs --to PATH (the database file to create)")
	}
	if err := o.refuseFlags(lifeboat.KindSQLite, "--to, --snapshot, --owner, --repository"); err != nil {
		return err
	}
	uid, gid := -1, -1
	if o.owner != "" {
		u, err := user.Lookup(o.owner)
		if err != nil {
			return usagef("--owner: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	start := time.Now()
	res, err := sqlite.Restore(ctx, r, s, sqlite.RestoreOptions{To: o.to, UID: uid, GID: gid, Workers: o.workers})
	if errors.Is(err, sqlite.ErrBadTarget) {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	in := res.Info
	fmt.Fprintf(g.stdout, "restored snapshot %s of %s (%s, taken %s) to %s: %s, %d pages of %d, journal mode %s, user_version %d, %s\n",
		s.ID.Short(), a.Name, in.Source, s.EndTime.Local().Format("2006-01-02 15:04:05 MST"), res.Path, humanBytes(res.Bytes),
		in.PageCount, in.PageSize, in.JournalMode, in.UserVersion, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(g.stdout, "integrity_check: %s\n", res.IntegrityCheck)
	return nil
}
