package drill

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
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// postgres drills a physical backup: restore into a fresh data directory,
// replay archived WAL to the target, start, check.
func (d *drill) postgres(ctx context.Context) error {
	o, r := d.o, d.rep
	snaps, err := o.Repo.Snapshots(ctx, o.Asset.Name)
	if err != nil {
		return err
	}
	if len(snaps) == 0 {
		return fmt.Errorf("asset %s has no snapshot in %s", o.Asset.Name, o.Repo.Location())
	}
	as, err := runAs(o.RunAs, o.Asset.PGData)
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(o.Asset.DSN)
	if err != nil {
		return fmt.Errorf("asset %s: dsn: %w", o.Asset.Name, err)
	}

	d.begin()
	// The archive as it stands now is what a failure now would leave: WAL
	// archived while the drill runs must not be replayed, or a busy source
	// would make the recovery chase it and the RPO look like none.
	until, _, err := postgres.NewestWAL(ctx, o.Repo, o.Asset.Name)
	if err != nil {
		return err
	}
	fetch, err := o.RestoreCommand(until)
	if err != nil {
		return err
	}
	target := postgres.Target{}
	switch r.Point {
	case policy.DrillLatest:
		// A latest-point drill plays the failure of the source now: what
		// came back is measured against this moment.
		r.Target = o.Now().UTC()
	case PointTime:
		t := o.Time.UTC()
		target.Time, r.Target = &t, t
	case policy.DrillRandom:
		t, err := d.randomPoint(ctx, snaps)
		if err != nil {
			return err
		}
		target.Time, r.Target = &t, t
	case PointSnapshot:
		s, err := o.Repo.FindSnapshot(ctx, o.Snapshot)
		if err != nil {
			return err
		}
		info, err := postgres.Info(s)
		if err != nil {
			return err
		}
		lsn := info.StopLSN
		target.LSN, r.Target = &lsn, info.StopTime.UTC()
	default:
		return fmt.Errorf("unknown drill point %q", r.Point)
	}

	srv, err := d.newServer(as)
	if err != nil {
		return err
	}
	uid, gid := as.IDs()
	var chosen *repo.Snapshot
	res, err := postgres.Restore(ctx, o.Repo, postgres.RestoreOptions{
		Asset: o.Asset.Name, Dir: srv.DataDir, Target: target, Snapshot: o.Snapshot, Workers: o.Workers,
		RestoreCommand: fetch, ArchiveOff: true, UID: uid, GID: gid, Log: o.Log,
		Writing: func(s *repo.Snapshot) {
			chosen = s
			d.end(evidence.PhaseFetch)
		},
	})
	if chosen == nil {
		d.end(evidence.PhaseFetch)
	} else {
		d.end(evidence.PhaseWrite)
	}
	if err != nil {
		return err
	}
	info := res.Info
	r.Snapshot, r.SnapshotTime, r.Bytes = res.Snapshot.ID.String(), info.StopTime.UTC(), res.Stats.BytesWritten
	// Recovery would stop silently at a missing segment and call it the
	// end; a drill must fail there whatever its target.
	if err := postgres.CheckNoGap(ctx, o.Repo, o.Asset.Name, info); err != nil {
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
	startAt := o.Now()
	if err := d.startServer(ctx, srv); err != nil {
		return err
	}
	ready := o.Now()
	replay := ready.Sub(startAt)
	if done, ok := pgbin.LogTime(srv.LogFile, "redo done at"); ok {
		// The log's clock and ours are the same host's; clamp anyway.
		replay = min(max(done.Sub(startAt), 0), ready.Sub(startAt))
	}
	r.Phases = append(r.Phases,
		evidence.Phase{Name: evidence.PhaseReplay, Seconds: round3(replay.Seconds())},
		evidence.Phase{Name: evidence.PhaseStart, Seconds: round3((ready.Sub(startAt) - replay).Seconds())})
	d.mark = ready

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
			r.WALFiles = int(postgres.SegmentForLSN(lsn, info.WALSegmentSize)-postgres.SegmentForLSN(info.StartLSN, info.WALSegmentSize)) + 1
		}
	}
	if last != nil {
		r.Recovered = last.UTC()
	} else {
		// Nothing was replayed: the snapshot's own consistent moment is
		// what came back.
		r.Recovered = info.StopTime.UTC()
	}

	d.integrity(ctx, srv)
	d.queries(ctx, func(db string) string {
		if db != "" {
			return db
		}
		if cfg.Database != "" {
			return cfg.Database
		}
		return "postgres"
	}, pgQuerier{srv})
	d.end(evidence.PhaseChecks)
	return nil
}

// integrity runs pg_amcheck on the target and records the outcome.
func (d *drill) integrity(ctx context.Context, srv *pgbin.Server) {
	start := time.Now()
	jobs := d.o.Workers
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	out, err := amcheck(ctx, srv, jobs)
	c := evidence.Check{Name: "pg_amcheck (heap and B-tree indexes, all databases)", Type: evidence.CheckIntegrity,
		Passed: err == nil, Seconds: round3(time.Since(start).Seconds())}
	if err != nil {
		c.Detail = err.Error()
	} else if out != "" {
		c.Detail = firstLines(out, 3)
	}
	d.addCheck(c)
}

// randomPoint picks a moment uniformly between the oldest snapshot's
// consistent point and the newest commit in the archived WAL: every moment
// in between must be restorable, and one after the newest commit would
// end recovery before its target.
func (d *drill) randomPoint(ctx context.Context, snaps []*repo.Snapshot) (time.Time, error) {
	var lo time.Time
	var newest *postgres.SnapshotInfo
	for _, s := range snaps {
		info, err := postgres.Info(s)
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
		return time.Time{}, fmt.Errorf("asset %s: no PostgreSQL snapshot to drill", d.o.Asset.Name)
	}
	bin, err := pgbin.Find(ctx, newest.PGVersion/10000)
	if err != nil {
		return time.Time{}, err
	}
	hi, err := d.lastCommit(ctx, bin, newest)
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
func (d *drill) lastCommit(ctx context.Context, bin pgbin.Bin, info *postgres.SnapshotInfo) (time.Time, error) {
	asset := d.o.Asset.Name
	var segs []string
	if err := d.o.Repo.ListNamed(ctx, "wal", asset, "", func(rel string, _ int64) error {
		base := rel[strings.LastIndex(rel, "/")+1:]
		if n, err := postgres.ParseWALFileName(base, info.WALSegmentSize); err == nil && n.Kind == postgres.WALSegment && base >= info.StopWAL {
			segs = append(segs, base)
		}
		return nil
	}); err != nil {
		return time.Time{}, fmt.Errorf("list WAL of %s: %w", asset, err)
	}
	sort.Strings(segs)
	dir, err := os.MkdirTemp(d.work, "waldump-")
	if err != nil {
		return time.Time{}, err
	}
	defer os.RemoveAll(dir)
	const maxLook = 8
	for i := len(segs) - 1; i >= 0 && i >= len(segs)-maxLook; i-- {
		name := segs[i]
		dest := filepath.Join(dir, name)
		if err := postgres.FetchWAL(ctx, d.o.Repo, asset, name, dest); err != nil {
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
