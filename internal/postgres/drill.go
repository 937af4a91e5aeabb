package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgdrill"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Drill restores a physical backup into a fresh data directory, replays
// archived WAL to the target, starts the server and checks it.
func (kind) Drill(ctx context.Context, d asset.Drill) error {
	a, rp, r := d.Asset(), d.Repo(), d.Report()
	point, at, snapshot := d.Point()
	snaps, err := rp.Snapshots(ctx, a.Name)
	if err != nil {
		return err
	}
	if len(snaps) == 0 {
		return fmt.Errorf("asset %s has no snapshot in %s", a.Name, rp.Location())
	}
	own, err := ConfigOf(a)
	if err != nil {
		return err
	}
	as, err := pgdrill.RunAs(d, own.PGData)
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(own.DSN)
	if err != nil {
		return fmt.Errorf("asset %s: dsn: %w", a.Name, err)
	}

	// The archive as it stands now is what a failure now would leave: WAL
	// archived while the drill runs must not be replayed, or a busy source
	// would make the recovery chase it and the RPO look like none.
	until, _, err := NewestWAL(ctx, rp, a.Name)
	if err != nil {
		return err
	}
	fetch, err := d.RestoreCommand(until)
	if err != nil {
		return err
	}
	target := Target{}
	switch point {
	case policy.DrillLatest:
		// A latest-point drill plays the failure of the source now: what
		// came back is measured against this moment.
		r.Target = d.Now().UTC()
	case asset.PointTime:
		t := at.UTC()
		target.Time, r.Target = &t, t
	case policy.DrillRandom:
		t, err := randomPoint(ctx, d, snaps)
		if err != nil {
			return err
		}
		target.Time, r.Target = &t, t
	case asset.PointSnapshot:
		s, err := rp.FindSnapshot(ctx, snapshot)
		if err != nil {
			return err
		}
		info, err := Info(s)
		if err != nil {
			return err
		}
		lsn := info.StopLSN
		target.LSN, r.Target = &lsn, info.StopTime.UTC()
	default:
		return fmt.Errorf("unknown drill point %q", point)
	}

	// Recovery would stop silently at a missing segment and call it the
	// end, so a drill fails there whatever its target: the snapshot the
	// restore will pick is chosen here and the WAL after it checked before
	// the server's directories are made or anything is written.
	_, picked, err := chooseSnapshot(ctx, rp, RestoreOptions{Asset: a.Name, Target: target, Snapshot: snapshot})
	if err == nil {
		err = CheckNoGap(ctx, rp, a.Name, picked)
	}
	if err != nil {
		d.Phase(evidence.PhaseFetch)
		return err
	}

	srv, err := pgdrill.NewServer(d, as)
	if err != nil {
		return err
	}
	// The server's restore_command calls lifeboat back: it gets what
	// that needs to load the policy, and none of the drill's other
	// variables.
	srv.Env = d.RestoreEnv()
	uid, gid := as.IDs()
	var chosen *repo.Snapshot
	res, err := Restore(ctx, rp, RestoreOptions{
		Asset: a.Name, Dir: srv.DataDir, Target: target, Snapshot: snapshot, Workers: d.Workers(),
		RestoreCommand: fetch, ArchiveOff: true, UID: uid, GID: gid, Log: d.Log(),
		Writing: func(s *repo.Snapshot) {
			chosen = s
			d.Phase(evidence.PhaseFetch)
		},
	})
	if chosen == nil {
		d.Phase(evidence.PhaseFetch)
	} else {
		d.Phase(evidence.PhaseWrite)
	}
	if err != nil {
		return err
	}
	info := res.Info
	r.Snapshot, r.SnapshotTime, r.Bytes = res.Snapshot.ID.String(), info.StopTime.UTC(), res.Stats.BytesWritten

	if err := handOverRestored(ctx, d, srv, as, info, cfg.User); err != nil {
		return err
	}

	// Without hot standby the server takes connections only once recovery
	// is over and it is promoted: the first connection marks the end.
	startAt := d.Now()
	if err := pgdrill.Start(ctx, d, srv); err != nil {
		return err
	}
	ready := d.Now()
	replay := ready.Sub(startAt)
	if done, ok := pgbin.LogTime(srv.LogFile, "redo done at"); ok {
		// The log's clock and ours are the same host's; clamp anyway.
		replay = min(max(done.Sub(startAt), 0), ready.Sub(startAt))
	}
	d.PhaseEnded(evidence.PhaseReplay, startAt.Add(replay))
	d.PhaseEnded(evidence.PhaseStart, ready)

	conn, err := srv.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("the restored server: %w", err)
	}
	var last *time.Time
	var replayed *string
	err = conn.QueryRow(ctx, "select pg_last_xact_replay_timestamp(), pg_last_wal_replay_lsn()::text").Scan(&last, &replayed)
	conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("restored server: read the last replayed transaction: %w", err)
	}
	if replayed != nil {
		if lsn, err := lifeboat.ParseLSN(*replayed); err == nil && lsn >= info.StartLSN {
			r.WALFiles = int(SegmentForLSN(lsn, info.WALSegmentSize)-SegmentForLSN(info.StartLSN, info.WALSegmentSize)) + 1
		}
	}
	if last != nil {
		r.Recovered = last.UTC()
	} else {
		// Nothing was replayed: the snapshot's own consistent moment is
		// what came back.
		r.Recovered = info.StopTime.UTC()
	}

	pgdrill.Integrity(ctx, d, srv)
	d.Queries(ctx, func(db string) string {
		if db != "" {
			return db
		}
		if cfg.Database != "" {
			return cfg.Database
		}
		return "postgres"
	}, pgdrill.Querier{Server: srv})
	d.Phase(evidence.PhaseChecks)
	return nil
}

// randomPoint picks a moment uniformly between the oldest snapshot's
// consistent point and the newest commit in the archived WAL: every moment
// in between must be restorable, and one after the newest commit would
// end recovery before its target.
func randomPoint(ctx context.Context, d asset.Drill, snaps []*repo.Snapshot) (time.Time, error) {
	windows, err := Windows(ctx, d.Repo(), d.Asset().Name, snaps, d.WorkDir())
	if err != nil {
		return time.Time{}, err
	}
	if len(windows) == 0 {
		return time.Time{}, fmt.Errorf("asset %s: no PostgreSQL snapshot with its WAL to drill", d.Asset().Name)
	}
	// The newest timeline is the history the asset lives on now.
	w := windows[len(windows)-1]
	lo, hi := w.EarliestTime, w.LatestTime
	if !w.LatestExact {
		// No commit was read after the newest snapshot (none was made, or
		// pg_waldump is missing): stay before that snapshot.
		hi = w.NewestTime
	}
	if !hi.After(lo) {
		return lo.UTC(), nil
	}
	// Recovery to a time stops at the first commit after it, so the point
	// lies before the newest commit.
	span := hi.Sub(lo)
	return lo.Add(time.Duration(rand.Int64N(int64(span)))).UTC().Truncate(time.Microsecond), nil
}
