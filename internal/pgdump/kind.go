package pgdump

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgdrill"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// NewKind is the pg_dump kind: logical dumps of databases, restored
// through pg_restore (see docs/pgdump.md).
func NewKind() asset.Kind { return kind{} }

type kind struct{}

var _ asset.Exporter = kind{}

func (kind) Name() lifeboat.AssetKind { return lifeboat.KindPGDump }

func (kind) Backup(ctx context.Context, b *asset.Backup) (*repo.Snapshot, error) {
	a := b.Asset
	cfg, err := configOf(a)
	if err != nil {
		return nil, err
	}
	return Backup(ctx, b.Repo, BackupOptions{
		Asset: a.Name, DSN: cfg.DSN, Databases: cfg.Databases, Schemas: cfg.Schemas, ExcludeSchemas: cfg.ExcludeSchemas,
		ExcludeTableData: cfg.ExcludeTableData, Globals: cfg.Globals, Location: dumpLocation(a), LockWait: b.LockWait,
		Record: checkquery.RecordedChecks(a), Log: b.Log,
		Progress: func(db string, n int64) {
			b.Progress(asset.Progress{Line: fmt.Sprintf("dump %s: database %s, %s read", a.Name, db, asset.HumanBytes(n)), Done: n})
		},
	})
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

func (kind) RestoreFlags() []asset.Flag {
	return []asset.Flag{
		{Name: "to-dsn", Usage: "restore into this database (libpq connection string) with pg_restore"},
		{Name: "database", Usage: "the dumped database to restore, when the snapshot holds several"},
		{Name: "globals", Type: asset.FlagBool, Usage: "restore roles and tablespaces (pg_dumpall --globals-only) first"},
		{Name: "no-owner", Type: asset.FlagBool, Usage: "leave objects owned by the restoring role (pg_restore --no-owner)"},
		{Name: "table", Type: asset.FlagStrings, Usage: "restore only this table (schema.table, repeatable), dumped to --out"},
		{Name: "schema", Type: asset.FlagStrings, Usage: "restore only this schema (repeatable), dumped to --out"},
		{Name: "out", Usage: "with --table/--schema: the file the selection is written to (pg_dump custom format)"},
		{Name: "time", Usage: "with --table/--schema: take the newest dump made at or before this time (with a zone)"},
		{Name: "work-dir", Usage: "with --table/--schema: where the throwaway server is made (default: the system's temporary directory)"},
		{Name: "run-as", Usage: "with --table/--schema, as root: the OS user the throwaway server runs as (default: postgres)"},
	}
}

// Restore runs pg_restore into the database --to-dsn names.
func (kind) Restore(ctx context.Context, r *asset.Restore) (*asset.Restored, error) {
	a, f := r.Asset, r.Flags
	sel, err := pgdrill.ParseSelection(f.Strings("table"), f.Strings("schema"))
	if err != nil {
		return nil, err
	}
	if !sel.Empty() {
		return tableRestore(ctx, r, sel)
	}
	for _, name := range []string{"out", "time", "work-dir", "run-as"} {
		if _, ok := f[name]; ok {
			return nil, asset.Usagef("--%s applies only with --table or --schema", name)
		}
	}
	if f.String("to-dsn") == "" {
		return nil, asset.Usagef("asset %s is a logical dump: restore it into a database with --to-dsn \"host=... dbname=...\"", a.Name)
	}
	if r.To != "" {
		return nil, asset.Usagef("asset %s is a logical dump: --to does not apply, give --to-dsn", a.Name)
	}
	s := r.Snapshot
	start := time.Now()
	res, err := Restore(ctx, r.Repo, s, RestoreOptions{DSN: f.String("to-dsn"), Database: f.String("database"), Workers: r.Workers,
		Globals: f.Bool("globals"), NoOwner: f.Bool("no-owner"), Log: r.Log})
	if err != nil {
		return nil, err
	}
	globals := ""
	if res.Globals {
		globals = " with globals"
	}
	how := fmt.Sprintf("pg_restore -j %d", res.Jobs)
	if res.Streamed {
		how = fmt.Sprintf("data streamed into pg_restore, indexes and constraints with -j %d", res.Jobs)
	}
	return &asset.Restored{Snapshot: s, Lines: []string{fmt.Sprintf("restored dump %s (snapshot %s) of database %s%s into %s: %s archive, %s, %s",
		DumpName(s), s.ID.Short(), res.Database, globals, res.Target, asset.HumanBytes(res.Bytes), how,
		time.Since(start).Round(time.Millisecond))}}, nil
}

// Export writes the plain pg_dump archive (or the globals as SQL).
func (kind) Export(ctx context.Context, r *repo.Repository, s *repo.Snapshot, o asset.ExportOptions) (string, error) {
	res, err := Export(ctx, r, s, ExportOptions{Out: o.Out, Database: o.Database, Globals: o.Globals})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("exported %s of dump %s (snapshot %s) to %s: %s", res.What, DumpName(s),
		s.ID.Short(), res.File, asset.HumanBytes(res.Bytes)), nil
}

// Drill loads the dump into a fresh cluster of the dumped server's major
// version with pg_restore, then runs pg_amcheck and the queries.
func (kind) Drill(ctx context.Context, d asset.Drill) error {
	s, err := d.PickSnapshot(ctx)
	if err != nil {
		return err
	}
	info, err := SnapshotInfo(s)
	if err != nil {
		return err
	}
	if len(info.Databases) == 0 {
		return fmt.Errorf("snapshot %s holds no database dump", s.ID.Short())
	}
	as, err := pgdrill.RunAs(d, "")
	if err != nil {
		return err
	}
	bin, err := pgbin.Find(ctx, info.ServerVersionNum/10000)
	if err != nil {
		return err
	}
	d.Phase(evidence.PhaseFetch)

	srv, err := pgdrill.FreshCluster(ctx, d, bin, as)
	if err != nil {
		return err
	}
	d.Phase(evidence.PhaseStart)
	for _, db := range info.Databases {
		if err := srv.CreateDatabase(ctx, db.Name); err != nil {
			return fmt.Errorf("the drill's server: %w", err)
		}
		res, err := Restore(ctx, d.Repo(), s, RestoreOptions{DSN: srv.DSN(db.Name), Database: db.Name, Workers: d.Workers(),
			Globals: info.Globals != "" && db.Name == info.Databases[0].Name, TempDir: d.WorkDir(), Log: d.Log()})
		if err != nil {
			return fmt.Errorf("load the dump of %s: %w", db.Name, err)
		}
		d.Report().Bytes += res.Bytes
	}
	d.Phase(evidence.PhaseWrite)
	pgdrill.Integrity(ctx, d, srv)
	d.Queries(ctx, func(db string) string {
		if db != "" {
			return db
		}
		return info.Databases[0].Name
	}, pgdrill.Querier{Server: srv})
	d.Phase(evidence.PhaseChecks)
	return nil
}

func (kind) Describe(s *repo.Snapshot) asset.Description { return asset.Description{Name: DumpName(s)} }
