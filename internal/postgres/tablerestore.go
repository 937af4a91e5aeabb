package postgres

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgdrill"
)

// tableRestore brings some tables or schemas of one database back as
// they were at the target: the cluster is restored into a throwaway
// server in a private work directory (as a drill does), replayed to the
// target and promoted, the names are checked against its catalog, and
// pg_dump writes the selection to --out in its custom format. The server
// is stopped and the work directory removed whatever happens.
//
// A name the snapshot's list lacks, when no commit in the WAL up to the
// target changed the catalogs, is refused before the restore
// (precheckSelection); otherwise only the restored catalog knows, and the
// names are checked after the replay, before anything is written to --out.
func tableRestore(ctx context.Context, r *asset.Restore, sel pgdrill.Selection, target Target) (*asset.Restored, error) {
	a, f := r.Asset, r.Flags
	if r.To != "" {
		return nil, asset.Usagef("--to does not apply with --table or --schema: the selection goes to --out FILE")
	}
	if f.Bool("delta") || len(f.Strings("tablespace")) > 0 || f.Bool("archive-off") {
		return nil, asset.Usagef("--delta, --tablespace and --archive-off do not apply with --table or --schema (the cluster goes to a throwaway directory)")
	}
	out, err := filepath.Abs(f.String("out"))
	if f.String("out") == "" || err != nil {
		return nil, asset.Usagef("give --out FILE: where the dump of the selected tables goes")
	}
	if err := pgdrill.CheckOut(out); err != nil {
		return nil, err
	}
	cfg, err := ConfigOf(a)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("asset %s: dsn: %w", a.Name, err)
	}
	db := f.String("database")
	if db == "" {
		db = conn.Database
	}
	if db == "" {
		db = "postgres"
	}
	start := time.Now()

	// As a drill does, the archive as it stands now is the end: WAL
	// archived while this runs is not chased.
	until, _, err := NewestWAL(ctx, r.Repo, a.Name)
	if err != nil {
		return nil, err
	}
	fetch := []string{"wal-fetch"}
	if r.Repository != "" {
		fetch = append(fetch, "--repository", r.Repository)
	}
	if until != "" {
		fetch = append(fetch, "--until", until)
	}
	restoreCmd, err := r.SelfCommand(append(fetch, a.Name, "%f", "%p")...)
	if err != nil {
		return nil, err
	}
	// The snapshot is chosen (and the target's reachability checked by
	// Restore) before the work directory exists.
	_, info, err := chooseSnapshot(ctx, r.Repo, RestoreOptions{Asset: a.Name, Target: target, Snapshot: r.SnapshotID})
	if err != nil {
		return nil, err
	}
	if err := precheckSelection(ctx, r.Repo, a.Name, info, sel, db, target, r.Log); err != nil {
		return nil, err
	}
	host, err := pgdrill.NewScratch(f.String("work-dir"), f.String("run-as"), r.Log)
	if err != nil {
		return nil, err
	}
	defer host.Close()
	as, err := pgbin.RunAs(host.RunAs(), cfg.PGData)
	if err != nil {
		return nil, fmt.Errorf("%w (--run-as names the OS user)", err)
	}
	// Tablespaces go into the work directory too, never to the
	// locations production uses.
	ts := map[string]string{}
	for _, t := range info.Tablespaces {
		oid := strconv.FormatUint(uint64(t.OID), 10)
		ts[oid] = filepath.Join(host.WorkDir(), "tablespace-"+oid)
	}
	srv, err := pgdrill.NewServer(host, as)
	if err != nil {
		return nil, err
	}
	srv.Env = r.SelfEnv
	uid, gid := as.IDs()
	r.Log.Info("table restore: snapshot chosen", "asset", a.Name, "seconds", time.Since(start).Seconds())
	res, err := Restore(ctx, r.Repo, RestoreOptions{
		Asset: a.Name, Dir: srv.DataDir, Target: target, Snapshot: r.SnapshotID, Workers: r.Workers,
		RestoreCommand: restoreCmd, Tablespaces: ts, ArchiveOff: true, UID: uid, GID: gid, Log: r.Log, OnlyDatabase: f.String("database"),
		Progress: func(w, total int64) {
			r.Progress(asset.Progress{Line: fmt.Sprintf("restore %s into a throwaway server: %s of %s written", a.Name,
				asset.HumanBytes(w), asset.HumanBytes(total)), Done: w, Total: total})
		},
	})
	if err != nil {
		return nil, err
	}
	r.Log.Info("table restore: data directory written", "asset", a.Name, "snapshot", res.Snapshot.ID.Short(),
		"bytes", res.Stats.BytesWritten, "seconds", time.Since(start).Seconds())
	r.Progress(asset.Progress{Line: fmt.Sprintf("restore %s: replaying WAL to %s", a.Name, target)})
	if err := startRestored(ctx, host, srv, as, res.Info, conn.User, ts); err != nil {
		return nil, err
	}
	recovered, err := recoveredAt(ctx, srv, res.Info)
	if err != nil {
		return nil, err
	}
	if err := pgdrill.AsSuperuser(ctx, srv); err != nil {
		return nil, err
	}
	r.Log.Info("table restore: recovered and promoted", "asset", a.Name, "recovered", recovered, "seconds", time.Since(start).Seconds())
	where := "at " + target.String() + " (recovered to " + lifeboat.FormatPreciseTime(recovered) + ")"
	if err := sel.Check(ctx, srv, db, where); err != nil {
		return nil, err
	}
	r.Progress(asset.Progress{Line: fmt.Sprintf("restore %s: pg_dump of the selection from %s", a.Name, db)})
	n, err := sel.Dump(ctx, srv, db, out)
	if err != nil {
		return nil, err
	}
	r.Log.Info("table restore: selection dumped", "asset", a.Name, "out", out, "bytes", n, "seconds", time.Since(start).Seconds())
	return &asset.Restored{Snapshot: res.Snapshot, Lines: []string{
		fmt.Sprintf("restored %s of database %s of %s to %s: %s (pg_dump custom format) in %s",
			sel, db, a.Name, out, asset.HumanBytes(n), time.Since(start).Round(time.Millisecond)),
		fmt.Sprintf("from snapshot %s, recovered to %s (target: %s)", res.Snapshot.ID.Short(),
			recovered.Format(lifeboat.TimeLayout), target),
		fmt.Sprintf("load it with: pg_restore --dbname DB --no-owner %s (into a scratch database or schema first; see docs/postgres.md)", out),
	}}, nil
}

// recoveredAt is the time of the last transaction replayed on the
// promoted server, or the snapshot's consistent moment when none was.
func recoveredAt(ctx context.Context, srv *pgbin.Server, info *SnapshotInfo) (time.Time, error) {
	conn, err := srv.Connect(ctx, "postgres")
	if err != nil {
		return time.Time{}, fmt.Errorf("the restored server: %w", err)
	}
	defer conn.Close(context.Background())
	var last *time.Time
	if err := conn.QueryRow(ctx, "select pg_last_xact_replay_timestamp()").Scan(&last); err != nil {
		return time.Time{}, fmt.Errorf("the restored server: read the last replayed transaction: %w", err)
	}
	if last == nil {
		return info.StopTime.UTC(), nil
	}
	return last.UTC(), nil
}

// startRestored configures the throwaway server restored into srv's data
// directory, hands it and its tablespace directories to its OS user and
// starts it: it replays to the target and is promoted before it takes
// connections.
func startRestored(ctx context.Context, host pgdrill.Host, srv *pgbin.Server, as *pgbin.User, info *SnapshotInfo, user string, ts map[string]string) error {
	if err := handOverRestored(ctx, host, srv, as, info, user); err != nil {
		return err
	}
	for _, dir := range ts {
		if err := as.Chown(dir); err != nil {
			return err
		}
	}
	return pgdrill.Start(ctx, host, srv)
}

// handOverRestored readies a throwaway server restored into srv's data
// directory: the PostgreSQL programs of the snapshot's major version, the
// OS user it runs as (user, or the run-as user's name), its settings and
// local trust, and then the directory handed to the run-as user.
func handOverRestored(ctx context.Context, host pgdrill.Host, srv *pgbin.Server, as *pgbin.User, info *SnapshotInfo, user string) error {
	var err error
	if srv.Bin, err = pgbin.Find(ctx, info.PGVersion/10000); err != nil {
		return err
	}
	srv.User = user
	if srv.User == "" && as != nil {
		srv.User = as.Name
	}
	if err := srv.EnsureConf(); err != nil {
		return err
	}
	if err := srv.TrustLocal(); err != nil {
		return err
	}
	// Restored and configured as root in a directory only root reaches:
	// only now does the run-as user get it.
	return pgdrill.HandOver(host, srv, as)
}
