package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgdump"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Logical dumps (kind: pg_dump): backup runs pg_dump into the repository,
// restore runs pg_restore into the database --to-dsn names.
func init() {
	kindBackups[lifeboat.KindPGDump] = backupPGDump
	kindRestores[lifeboat.KindPGDump] = restorePGDump
}

func backupPGDump(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, o backupOptions) (*repo.Snapshot, error) {
	bar := newProgressLine(g)
	defer bar.done()
	snap, err := pgdump.Backup(ctx, r, pgdump.BackupOptions{
		Asset: a.Name, DSN: a.DSN, Databases: a.Databases, Schemas: a.Schemas, ExcludeSchemas: a.ExcludeSchemas,
		ExcludeTableData: a.ExcludeTableData, Globals: a.Globals, Location: dumpLocation(a), LockWait: o.lockWait,
		Record: recordedChecks(a), Log: g.log,
		Progress: func(db string, n int64) {
			bar.set(fmt.Sprintf("dump %s: database %s, %s read", a.Name, db, humanBytes(n)))
		},
	})
	bar.done()
	return snap, kindError(err)
}

// dumpLocation is the time zone a dump's name takes its date from: the
// retention's (whose days expire counts), else the schedule's, else UTC.
// Both were validated with the policy.
func dumpLocation(a *policy.Asset) *time.Location {
	name := a.Retention.TimeZone
	if name == "" {
		s := strings.TrimSpace(a.Schedule)
		for _, prefix := range []string{"CRON_TZ=", "TZ="} {
			if rest, ok := strings.CutPrefix(s, prefix); ok {
				name, _, _ = strings.Cut(rest, " ")
			}
		}
	}
	if loc, err := time.LoadLocation(name); err == nil && name != "" {
		return loc
	}
	return time.UTC
}

func restorePGDump(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, s *repo.Snapshot, o restoreOptions) error {
	if o.toDSN == "" {
		return usagef("asset %s is a logical dump: restore it into a database with --to-dsn \"host=... dbname=...\"", a.Name)
	}
	if o.to != "" {
		return usagef("asset %s is a logical dump: --to does not apply, give --to-dsn", a.Name)
	}
	if err := o.refuseFlags(a.Kind, "--to-dsn, --database, --globals, --no-owner, --workers, --snapshot, --repository",
		"--to-dsn", "--database", "--globals", "--no-owner"); err != nil {
		return err
	}
	start := time.Now()
	res, err := pgdump.Restore(ctx, r, s, pgdump.RestoreOptions{DSN: o.toDSN, Database: o.database, Workers: o.workers,
		Globals: o.globals, NoOwner: o.noOwner, Log: g.log})
	if err != nil {
		return kindError(err)
	}
	globals := ""
	if res.Globals {
		globals = " with globals"
	}
	how := fmt.Sprintf("pg_restore -j %d", res.Jobs)
	if res.Streamed {
		how = fmt.Sprintf("data streamed into pg_restore, indexes and constraints with -j %d", res.Jobs)
	}
	fmt.Fprintf(g.stdout, "restored dump %s (snapshot %s) of database %s%s into %s: %s archive, %s, %s\n",
		pgdump.DumpName(s), s.ID.Short(), res.Database, globals, res.Target, humanBytes(res.Bytes), how,
		time.Since(start).Round(time.Millisecond))
	return nil
}

// kindError turns the package's usage errors into this command's.
func kindError(err error) error {
	var ue *pgdump.UsageError
	if errors.As(err, &ue) {
		return &usageError{err}
	}
	return err
}
