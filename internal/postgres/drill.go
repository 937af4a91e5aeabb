package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
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
	as, err := pgdrill.RunAs(d, a.PGData)
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(a.DSN)
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

	srv, err := pgdrill.NewServer(d, as)
	if err != nil {
		return err
	}
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
	// Recovery would stop silently at a missing segment and call it the
	// end; a drill must fail there whatever its target.
	if err := CheckNoGap(ctx, rp, a.Name, info); err != nil {
		return err
	}

	if srv.Bin, err = pgbin.Find(ctx, info.PGVersion/10000); err != nil {
		return err
	}
	srv.User = cfg.User
	if srv.User == "" && as != nil {
		srv.User = as.Name
	}
	if err := srv.EnsureConf(); err != nil {
		return err
	}
	if err := srv.TrustLocal(); err != nil {
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
	var lo time.Time
	var newest *SnapshotInfo
	for _, s := range snaps {
		info, err := Info(s)
		if err != nil {
			continue
		}
		if lo.IsZero() || info.StopTime.Before(lo) {
			lo = info.StopTime
		}
		if newest == nil || info.StopLSN > newest.StopLSN {
			newest = info
		}
	}
	if newest == nil {
		return time.Time{}, fmt.Errorf("asset %s: no PostgreSQL snapshot to drill", d.Asset().Name)
	}
	bin, err := pgbin.Find(ctx, newest.PGVersion/10000)
	if err != nil {
		return time.Time{}, err
	}
	hi, err := lastCommit(ctx, d, bin, newest)
	if err != nil {
		return time.Time{}, err
	}
	if !hi.After(lo) {
		return lo.UTC(), nil
	}
	span := hi.Sub(lo)
	return lo.Add(time.Duration(rand.Int64N(int64(span)))).UTC().Truncate(time.Microsecond), nil
}

// commitPattern finds a commit record's timestamp in pg_waldump's output.
var commitPattern = regexp.MustCompile(`desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC`)

// lastCommit returns the time of the newest commit in the archived WAL
// after the newest snapshot, reading the newest segments with pg_waldump
// until one holds a commit; the snapshot's own moment when none does.
func lastCommit(ctx context.Context, d asset.Drill, bin pgbin.Bin, info *SnapshotInfo) (time.Time, error) {
	name := d.Asset().Name
	var segs []string
	if err := d.Repo().ListNamed(ctx, "wal", name, "", func(rel string, _ int64) error {
		base := rel[strings.LastIndex(rel, "/")+1:]
		if n, err := ParseWALFileName(base, info.WALSegmentSize); err == nil && n.Kind == WALSegment && base >= info.StopWAL {
			segs = append(segs, base)
		}
		return nil
	}); err != nil {
		return time.Time{}, fmt.Errorf("list WAL of %s: %w", name, err)
	}
	sort.Strings(segs)
	dir, err := os.MkdirTemp(d.WorkDir(), "waldump-")
	if err != nil {
		return time.Time{}, err
	}
	defer os.RemoveAll(dir)
	const maxLook = 8
	for i := len(segs) - 1; i >= 0 && i >= len(segs)-maxLook; i-- {
		seg := segs[i]
		dest := filepath.Join(dir, seg)
		if err := FetchWAL(ctx, d.Repo(), name, seg, dest); err != nil {
			return time.Time{}, err
		}
		cmd := (*pgbin.User)(nil).Command(ctx, bin.Path("pg_waldump"), "--rmgr=Transaction", dest)
		cmd.Env = append(cmd.Env, "TZ=UTC")
		// pg_waldump exits non-zero at the end of what it can read (the next
		// segment is not there); the records it printed are still good.
		out, _ := cmd.Output()
		os.Remove(dest)
		var last time.Time
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := commitPattern.FindStringSubmatch(sc.Text()); m != nil {
				if t, err := time.Parse("2006-01-02 15:04:05.999999999", m[1]); err == nil && t.After(last) {
					last = t
				}
			}
		}
		if !last.IsZero() {
			return last.UTC(), nil
		}
	}
	if len(segs) == 0 {
		return time.Time{}, errors.New("no archived WAL after the newest snapshot: is archiving set up?")
	}
	return info.StopTime.UTC(), nil
}
