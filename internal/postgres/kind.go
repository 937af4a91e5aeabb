package postgres

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgdrill"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// NewKind is the postgres kind: physical backups of a cluster and its
// archived WAL, restored to any point in time (see docs/postgres.md).
func NewKind() asset.Kind { return kind{} }

type kind struct{}

var _ asset.PITR = kind{}

func (kind) Name() lifeboat.AssetKind { return lifeboat.KindPostgres }

func (kind) Backup(ctx context.Context, b *asset.Backup) (*repo.Snapshot, error) {
	a := b.Asset
	cfg, err := ConfigOf(a)
	if err != nil {
		return nil, err
	}
	snap, err := Backup(ctx, b.Repo, BackupOptions{
		Asset: a.Name, PGData: cfg.PGData, DSN: cfg.DSN, Full: b.Full, Workers: b.Workers,
		BlockSize: cfg.BlockSize, LockWait: b.LockWait, PolicyPath: b.PolicyPath, Log: b.Log,
		ArchiveTimeout: b.ArchiveTimeout, CheckBlocks: b.CheckBlocks,
		Progress: func(pr BackupProgress) {
			if pr.WaitingForWAL != "" {
				b.Progress(asset.Progress{Line: fmt.Sprintf("backup %s: files copied; waiting for WAL segment %s to be archived (%s of at most %s)",
					a.Name, pr.WaitingForWAL, pr.Waited.Round(time.Second), archiveTimeout(b.ArchiveTimeout))})
				return
			}
			b.Progress(asset.Progress{Line: fmt.Sprintf("backup %s: %d/%d files, %s of %s read, %s new", a.Name, pr.FilesDone, pr.Files,
				asset.HumanBytes(pr.BytesRead), asset.HumanBytes(pr.BytesTotal), asset.HumanBytes(pr.BytesNew)),
				Done: pr.BytesRead, Total: pr.BytesTotal})
		},
	})
	if err != nil {
		return nil, err
	}
	info, _ := Info(snap)
	b.What = snap.Type
	b.Summary = fmt.Sprintf("LSN %s..%s", info.StartLSN, info.StopLSN)
	if info.ChecksumFailures > 0 {
		b.Warn(fmt.Sprintf("%d pages failed their checksum (copied as they are): %v", info.ChecksumFailures, info.ChecksumErrors))
	}
	return snap, nil
}

func (kind) RestoreFlags() []asset.Flag {
	return []asset.Flag{
		{Name: "time", Usage: "recover to this time (with a zone)"},
		{Name: "lsn", Usage: "recover to this WAL position (e.g. 0/3000060)"},
		{Name: "xid", Usage: "recover to the commit of this transaction"},
		{Name: "name", Usage: "recover to this named restore point"},
		{Name: "delta", Type: asset.FlagBool, Usage: "restore into an existing data directory, rewriting only what differs"},
		{Name: "tablespace", Type: asset.FlagStrings, Usage: "restore a tablespace elsewhere: NAME_OR_OID=DIR (repeatable)"},
		{Name: "archive-off", Type: asset.FlagBool, Usage: "turn WAL archiving off in the restored cluster (for copies that must not archive into this asset)"},
		{Name: "table", Type: asset.FlagStrings, Usage: "restore only this table (schema.table, repeatable) through a throwaway server, dumped to --out"},
		{Name: "schema", Type: asset.FlagStrings, Usage: "restore only this schema (repeatable) through a throwaway server, dumped to --out"},
		{Name: "out", Usage: "with --table/--schema: the file the selection is written to (pg_dump custom format)"},
		{Name: "database", Usage: "restore only this database of the cluster (the others are left out and marked invalid); with --table/--schema: the database they are in (default: the DSN's)"},
		{Name: "work-dir", Usage: "with --table/--schema/--database: where the throwaway server or its socket is made (default: the system's temporary directory)"},
		{Name: "run-as", Usage: "with --table/--schema, as root: the OS user the throwaway server runs as (default: the owner of pgdata, else postgres)"},
	}
}

// Restore writes the data directory from the newest snapshot consistent
// before the target, with the recovery settings that replay archived WAL
// up to it once the server starts.
func (kind) Restore(ctx context.Context, r *asset.Restore) (*asset.Restored, error) {
	a, f := r.Asset, r.Flags
	target, err := ParseTarget(f.String("time"), f.String("lsn"), f.String("xid"), f.String("name"))
	if err != nil {
		return nil, err
	}
	sel, err := pgdrill.ParseSelection(f.Strings("table"), f.Strings("schema"))
	if err != nil {
		return nil, err
	}
	if !sel.Empty() {
		return tableRestore(ctx, r, sel, target)
	}
	for _, name := range []string{"out", "run-as"} {
		if _, ok := f[name]; ok {
			return nil, asset.Usagef("--%s applies only with --table or --schema", name)
		}
	}
	if _, ok := f["work-dir"]; ok && f.String("database") == "" {
		return nil, asset.Usagef("--work-dir applies only with --table, --schema or --database")
	}
	if r.To == "" {
		return nil, asset.Usagef("restore needs --to DIR")
	}
	ts := map[string]string{}
	for _, m := range f.Strings("tablespace") {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" || !filepath.IsAbs(v) {
			return nil, asset.Usagef("--tablespace %q: want NAME_OR_OID=/absolute/dir", m)
		}
		ts[k] = v
	}
	fetch := []string{"wal-fetch", a.Name, "%f", "%p"}
	if r.Repository != "" {
		fetch = []string{"wal-fetch", "--repository", r.Repository, a.Name, "%f", "%p"}
	}
	restoreCmd, err := r.SelfCommand(fetch...)
	if err != nil {
		return nil, err
	}
	if db := f.String("database"); db != "" {
		return oneDatabaseRestore(ctx, r, target, db, ts, restoreCmd)
	}
	start := time.Now()
	res, err := Restore(ctx, r.Repo, RestoreOptions{
		Asset: a.Name, Dir: r.To, Target: target, Snapshot: r.SnapshotID, Delta: f.Bool("delta"), Workers: r.Workers,
		RestoreCommand: restoreCmd, Tablespaces: ts, ArchiveOff: f.Bool("archive-off"), UID: r.UID, GID: r.GID, Log: r.Log,
		Progress: func(w, total int64) {
			r.Progress(asset.Progress{Line: fmt.Sprintf("restore %s: %s of %s written", a.Name, asset.HumanBytes(w), asset.HumanBytes(total)),
				Done: w, Total: total})
		},
	})
	if err != nil {
		return nil, err
	}
	compared := ""
	if f.Bool("delta") {
		compared = fmt.Sprintf(" (%s of the files there read to compare)", asset.HumanBytes(res.Stats.BytesCompared))
	}
	return &asset.Restored{Snapshot: res.Snapshot, Lines: []string{
		fmt.Sprintf("restored snapshot %s of %s to %s: %d files, %s written%s in %s",
			res.Snapshot.ID.Short(), a.Name, r.To, res.Stats.Files, asset.HumanBytes(res.Stats.BytesWritten), compared, time.Since(start).Round(time.Millisecond)),
		fmt.Sprintf("recovery target: %s (consistent from LSN %s, %s)", target, res.Info.StopLSN, res.Info.StopTime.Format(time.RFC3339)),
		fmt.Sprintf("start it with: pg_ctl -D %s start", r.To),
	}}, nil
}

func (kind) NewestWAL(ctx context.Context, r *repo.Repository, assetName string) (string, time.Time, error) {
	return NewestWAL(ctx, r, assetName)
}

func (kind) WALPrefix(assetName string) string { return WALPrefix(assetName) }

// Archiving measures how far archiving lags. From the server: every
// complete segment before the one being written must be in the
// repository, and the archiver must not be failing. When the server
// cannot be reached, the age of the newest archived WAL is all there is.
func (kind) Archiving(ctx context.Context, a *policy.Asset, newestWAL string, newestAt, now time.Time) *asset.Archiving {
	age := 0.0
	if !newestAt.IsZero() {
		age = max(0, now.Sub(newestAt).Seconds())
	}
	cfg, err := ConfigOf(a)
	if err != nil {
		return &asset.Archiving{LagSeconds: age, Detail: "age of the newest archived WAL: " + oneLine(err)}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := archiverState(cctx, cfg.DSN)
	switch {
	case err != nil && st == nil:
		return &asset.Archiving{LagSeconds: age, Detail: "server unreachable, age of the newest archived WAL: " + oneLine(err)}
	case err != nil:
		return &asset.Archiving{LagSeconds: age, Detail: "age of the newest archived WAL: " + oneLine(err)}
	case st.inRecovery:
		return &asset.Archiving{LagSeconds: age, Detail: "the server is a standby; age of the newest archived WAL"}
	}
	w := &asset.Archiving{}
	if st.lastFailed != nil && (st.lastArchived == nil || st.lastFailed.After(*st.lastArchived)) {
		name := ""
		if st.failedWAL != nil {
			name = *st.failedWAL + " "
		}
		w.Failing = fmt.Sprintf("the last attempt, %sat %s, failed (see the server log)", name, st.lastFailed.UTC().Format(time.RFC3339))
	}
	cur, err1 := ParseWALFileName(st.current, uint64(st.segSize))
	newest, err2 := ParseWALFileName(newestWAL, uint64(st.segSize))
	switch {
	case err1 != nil:
		w.LagSeconds, w.Detail = age, "age of the newest archived WAL"
	case newestWAL == "" || err2 != nil:
		w.Detail = "nothing archived; the server writes " + st.current
		if w.Failing == "" {
			w.Failing = "no WAL of this asset is archived: is archive_command set to lifeboat wal-push?"
		}
	case cur.TLI == newest.TLI && cur.SegNo <= newest.SegNo+1:
		w.Detail = "every complete segment is archived; the server writes " + st.current
	default:
		w.LagSeconds = age
		w.Detail = fmt.Sprintf("the server writes %s, the newest archived is %s", st.current, newestWAL)
	}
	return w
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func archiveTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return DefaultArchiveTimeout
	}
	return d
}

// ParseTarget turns the target flags into a recovery target; at most one
// may be given. A time needs a zone.
func ParseTarget(tm, lsn, xid, name string) (Target, error) {
	var t Target
	n := 0
	if tm != "" {
		n++
		v, err := asset.ParseTime(tm)
		if err != nil {
			return t, err
		}
		t.Time = &v
	}
	if lsn != "" {
		n++
		l, err := lifeboat.ParseLSN(lsn)
		if err != nil {
			return t, asset.Usagef("--lsn: %v", err)
		}
		t.LSN = &l
	}
	if xid != "" {
		n++
		x, err := strconv.ParseUint(xid, 10, 64)
		if err != nil || x < 3 {
			return t, asset.Usagef("--xid %q: want a transaction id (a number from 3)", xid)
		}
		t.XID = &x
	}
	if name != "" {
		n++
		t.Name = name
	}
	if n > 1 {
		return t, asset.Usagef("give at most one of --time, --lsn, --xid and --name")
	}
	return t, nil
}

func (kind) Describe(s *repo.Snapshot) asset.Description {
	info, err := Info(s)
	if err != nil {
		return asset.Description{}
	}
	return asset.Description{StartLSN: info.StartLSN.String(), StopLSN: info.StopLSN.String(), Timeline: info.Timeline,
		StopTime: info.StopTime}
}

func (kind) VerifyArchive(ctx context.Context, r *repo.Repository, assetName string, readData bool) (int, []string, error) {
	rep, err := VerifyWAL(ctx, r, assetName, readData)
	if err != nil {
		return 0, nil, err
	}
	return rep.Files, rep.Problems, nil
}

func (kind) RestorePoint(ctx context.Context, r *repo.Repository, a *policy.Asset, name string) (*asset.RestorePoint, error) {
	cfg, err := ConfigOf(a)
	if err != nil {
		return nil, err
	}
	rp, err := RecordRestorePoint(ctx, r, a.Name, cfg.DSN, name)
	if err != nil {
		return nil, err
	}
	return &asset.RestorePoint{Name: rp.Name, LSN: rp.LSN.String(), Time: rp.Time}, nil
}
