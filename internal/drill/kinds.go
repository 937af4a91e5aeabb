package drill

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/files"
	"github.com/lifeboat-dr/lifeboat/internal/gitrepo"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgdump"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/sqlite"
)

// pickSnapshot chooses the snapshot a drill of a kind without WAL
// restores: the one named, the newest, or a random one (every snapshot
// kept must restore, not only the newest). Its time is the drill's target
// and what came back: such a snapshot is one moment.
func (d *drill) pickSnapshot(ctx context.Context) (*repo.Snapshot, error) {
	o, r := d.o, d.rep
	if r.Point == PointSnapshot {
		s, err := o.Repo.FindSnapshot(ctx, o.Snapshot)
		if err != nil {
			return nil, err
		}
		if s.Asset != o.Asset.Name {
			return nil, fmt.Errorf("snapshot %s belongs to asset %s, not %s", s.ID.Short(), s.Asset, o.Asset.Name)
		}
		return d.useSnapshot(s), nil
	}
	snaps, err := o.Repo.Snapshots(ctx, o.Asset.Name)
	if err != nil {
		return nil, err
	}
	var fit []*repo.Snapshot
	for _, s := range snaps {
		if r.Point != PointTime || !s.EndTime.After(o.Time) {
			fit = append(fit, s)
		}
	}
	if len(fit) == 0 {
		if r.Point == PointTime {
			return nil, fmt.Errorf("asset %s has no snapshot taken before %s in %s", o.Asset.Name, o.Time.UTC().Format(time.RFC3339), o.Repo.Location())
		}
		return nil, fmt.Errorf("asset %s has no snapshot in %s", o.Asset.Name, o.Repo.Location())
	}
	pick := fit[0]
	if r.Point == policy.DrillRandom {
		pick = fit[rand.IntN(len(fit))]
	} else {
		for _, s := range fit[1:] {
			if s.EndTime.After(pick.EndTime) {
				pick = s
			}
		}
	}
	return d.useSnapshot(pick), nil
}

func (d *drill) useSnapshot(s *repo.Snapshot) *repo.Snapshot {
	r := d.rep
	r.Snapshot, r.SnapshotTime = s.ID.String(), s.EndTime.UTC()
	r.Recovered = s.StartTime.UTC()
	switch r.Point {
	case PointTime:
		r.Target = d.o.Time.UTC()
	case policy.DrillLatest:
		// As for PostgreSQL: the source fails now, and everything since
		// the snapshot was taken is lost.
		r.Target = d.o.Now().UTC()
	default:
		r.Target = s.StartTime.UTC()
	}
	d.recorded = recordedValues(s)
	return s
}

// sqlite drills a SQLite snapshot: restore to a temporary file (which
// sqlite.Restore checks with PRAGMA integrity_check), then query it.
func (d *drill) sqlite(ctx context.Context) error {
	d.begin()
	s, err := d.pickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.end(evidence.PhaseFetch)
	path := filepath.Join(d.work, "restored.db")
	res, err := sqlite.Restore(ctx, d.o.Repo, s, sqlite.RestoreOptions{To: path, UID: -1, GID: -1, Workers: d.o.Workers})
	d.end(evidence.PhaseWrite)
	if err != nil {
		return err
	}
	d.rep.Bytes = res.Bytes
	d.addCheck(evidence.Check{Name: "PRAGMA integrity_check", Type: evidence.CheckIntegrity, Passed: res.IntegrityCheck == "ok",
		Got: res.IntegrityCheck, Detail: detailUnless(res.IntegrityCheck != "ok", res.IntegrityCheck)})
	db, err := sql.Open("sqlite", "file:"+path+"?"+url.Values{"mode": {"ro"}, "_pragma": {"query_only(1)"}}.Encode())
	if err != nil {
		return fmt.Errorf("open the restored database: %w", err)
	}
	defer db.Close()
	d.queries(ctx, func(string) string { return "" }, sqliteQuerier{db})
	d.end(evidence.PhaseChecks)
	return nil
}

type sqliteQuerier struct{ db *sql.DB }

func (q sqliteQuerier) queryValue(ctx context.Context, _ string, query string) (string, bool, error) {
	return checkquery.SQLite(ctx, q.db, query)
}

// pgDump drills a logical dump: a fresh cluster of the dumped server's
// major version, the dump loaded with pg_restore, then pg_amcheck and the
// queries.
func (d *drill) pgDump(ctx context.Context) error {
	o := d.o
	d.begin()
	s, err := d.pickSnapshot(ctx)
	if err != nil {
		return err
	}
	info, err := pgdump.SnapshotInfo(s)
	if err != nil {
		return err
	}
	if len(info.Databases) == 0 {
		return fmt.Errorf("snapshot %s holds no database dump", s.ID.Short())
	}
	as, err := runAs(o.RunAs, "")
	if err != nil {
		return err
	}
	bin, err := pgbin.Find(ctx, info.ServerVersionNum/10000)
	if err != nil {
		return err
	}
	d.end(evidence.PhaseFetch)

	srv, err := d.freshCluster(ctx, bin, as)
	if err != nil {
		return err
	}
	d.end(evidence.PhaseStart)
	for _, db := range info.Databases {
		if err := srv.CreateDatabase(ctx, db.Name); err != nil {
			return fmt.Errorf("the drill's server: %w", err)
		}
		res, err := pgdump.Restore(ctx, o.Repo, s, pgdump.RestoreOptions{DSN: srv.DSN(db.Name), Database: db.Name, Workers: o.Workers,
			Globals: info.Globals != "" && db.Name == info.Databases[0].Name, TempDir: d.work, Log: o.Log})
		if err != nil {
			return fmt.Errorf("load the dump of %s: %w", db.Name, err)
		}
		d.rep.Bytes += res.Bytes
	}
	d.end(evidence.PhaseWrite)
	d.integrity(ctx, srv)
	d.queries(ctx, func(db string) string {
		if db != "" {
			return db
		}
		return info.Databases[0].Name
	}, pgQuerier{srv})
	d.end(evidence.PhaseChecks)
	return nil
}

// freshCluster initialises and starts an empty cluster in the work
// directory.
func (d *drill) freshCluster(ctx context.Context, bin pgbin.Bin, as *pgbin.User) (*pgbin.Server, error) {
	srv, err := d.newServer(as)
	if err != nil {
		return nil, err
	}
	srv.Bin = bin
	if err := srv.Init(ctx, pgbin.InitOptions{}); err != nil {
		return nil, fmt.Errorf("the drill's cluster: %w", err)
	}
	if err := d.startServer(ctx, srv); err != nil {
		return nil, err
	}
	return srv, nil
}

// files drills a files snapshot: restore the whole tree into a temporary
// directory and check that every file came back at its recorded size.
func (d *drill) files(ctx context.Context) error {
	d.begin()
	s, err := d.pickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.end(evidence.PhaseFetch)
	dir := filepath.Join(d.work, "tree")
	res, err := files.Restore(ctx, d.o.Repo, s, files.RestoreOptions{Dir: dir, UID: os.Getuid(), GID: os.Getgid(), Workers: d.o.Workers})
	d.end(evidence.PhaseWrite)
	if err != nil {
		return err
	}
	d.rep.Bytes = res.Stats.BytesWritten
	c := evidence.Check{Name: "restored bytes equal the snapshot's", Type: evidence.CheckIntegrity,
		Got: strconv.FormatInt(res.Stats.BytesWritten, 10), Expect: strconv.FormatInt(s.Stats.BytesTotal, 10)}
	c.Passed = res.Stats.BytesWritten == s.Stats.BytesTotal
	if !c.Passed {
		c.Detail = fmt.Sprintf("wrote %d bytes, the snapshot holds %d", res.Stats.BytesWritten, s.Stats.BytesTotal)
	}
	d.addCheck(c)
	d.end(evidence.PhaseChecks)
	return nil
}

// git drills a git snapshot: every repository restored as a bare
// repository, which gitrepo.Restore checks with git fsck and ref by ref.
func (d *drill) git(ctx context.Context) error {
	d.begin()
	s, err := d.pickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.end(evidence.PhaseFetch)
	start := time.Now()
	restored, err := gitrepo.Restore(ctx, d.o.Repo, s, gitrepo.RestoreOptions{Dir: filepath.Join(d.work, "git"),
		UID: os.Getuid(), GID: os.Getgid(), Workers: d.o.Workers, Log: d.o.Log})
	d.end(evidence.PhaseWrite)
	c := evidence.Check{Name: "git fsck and every ref as recorded", Type: evidence.CheckIntegrity, Passed: err == nil,
		Seconds: round3(time.Since(start).Seconds())}
	if err != nil {
		c.Detail = oneLine(err.Error())
		d.addCheck(c)
		return err
	}
	refs := 0
	for _, r := range restored {
		refs += r.Refs
	}
	c.Got = fmt.Sprintf("%d repositories, %d refs", len(restored), refs)
	d.addCheck(c)
	d.rep.Bytes = s.Stats.BytesTotal
	return nil
}

func detailUnless(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}

// recordedValues are the check values a backup recorded in its
// snapshot's details, for "= recorded" expectations.
func recordedValues(s *repo.Snapshot) checkquery.Recorded {
	var rec checkquery.Recorded
	if len(s.Extra) > 0 {
		json.Unmarshal(s.Extra, &rec)
	}
	return rec
}
