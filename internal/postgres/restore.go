package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Target is a point to recover to; the zero value means the end of the
// archived WAL.
type Target struct {
	Time *time.Time
	LSN  *lifeboat.LSN
	XID  *uint64
	Name string
}

func (t Target) String() string {
	switch {
	case t.Time != nil:
		return "time " + lifeboat.FormatPreciseTime(*t.Time)
	case t.LSN != nil:
		return "LSN " + t.LSN.String()
	case t.XID != nil:
		return "transaction " + strconv.FormatUint(*t.XID, 10)
	case t.Name != "":
		return "restore point " + strconv.Quote(t.Name)
	}
	return "the end of the archived WAL"
}

// RestoreOptions shape a restore.
type RestoreOptions struct {
	Asset    string
	Dir      string
	Target   Target
	Snapshot string // ID or prefix; empty picks the newest fitting base
	Delta    bool
	Workers  int
	// RestoreCommand is what PostgreSQL runs to fetch WAL during recovery.
	RestoreCommand string
	// Tablespaces maps a tablespace OID or name to a new location.
	Tablespaces map[string]string
	// ArchiveOff turns archiving off in the restored cluster, so a copy
	// restored for inspection does not archive into the source's asset.
	ArchiveOff bool
	UID, GID   int // owner of the restored files; -1 keeps the recorded ones
	// OnlyDatabase, when set, restores that database (and the system
	// ones) and leaves the others out: their relation files are written
	// as sparse zeros, never read (see onedb.go).
	OnlyDatabase string
	Progress     func(written, total int64)
	// Writing, when set, is called once the snapshot is chosen and its
	// index loaded, as the data starts to be written: a drill times the two
	// apart.
	Writing func(*repo.Snapshot)
	Log     *slog.Logger
}

// RestoreResult tells what a restore did.
type RestoreResult struct {
	Snapshot *repo.Snapshot
	Info     *SnapshotInfo
	Stats    repo.RestoreStats
	// LeftOut are the OIDs of the databases OnlyDatabase left out, to be
	// marked invalid once recovery is over.
	LeftOut []uint32
	// What recoverOneDatabase found: the last transaction replayed, and
	// the names of the databases it marked invalid.
	recovered time.Time
	leftNames []string
}

// Restore writes a data directory from a snapshot with the recovery
// settings that make `pg_ctl start` replay archived WAL up to the target.
// It refuses, changing nothing, when the target cannot be reached from the
// snapshots and WAL in the repository.
func Restore(ctx context.Context, r *repo.Repository, opts RestoreOptions) (*RestoreResult, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.RestoreCommand == "" {
		return nil, errors.New("restore: no restore_command")
	}
	snap, info, err := chooseSnapshot(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	if err := CheckWALRange(ctx, r, opts.Asset, info.Timeline, info.StartLSN, info.StopLSN, info.WALSegmentSize); err != nil {
		return nil, fmt.Errorf("snapshot %s cannot be made consistent: %w", snap.ID.Short(), err)
	}
	if opts.Target.Time == nil && opts.Target.LSN == nil && opts.Target.XID == nil && opts.Target.Name == "" {
		if err := checkNoGap(ctx, r, opts.Asset, info); err != nil {
			return nil, err
		}
	} else if err := checkReachable(repo.WithListMemo(ctx), r, opts.Asset, opts.Target, info); err != nil {
		return nil, err
	}
	var zero func(string) bool
	var left []uint32
	var entries *repo.IndexEntries // read once, when --database needs it early
	if opts.OnlyDatabase != "" {
		if opts.Delta {
			return nil, fmt.Errorf("--database does not combine with --delta")
		}
		if entries, err = r.ReadIndexEntries(ctx); err != nil {
			return nil, err
		}
		dbs, err := databaseOIDs(ctx, r, entries, snap, info)
		if err != nil {
			return nil, err
		}
		if left, err = leftOut(dbs, opts.OnlyDatabase, snap); err != nil {
			return nil, err
		}
		zero = zeroed(left)
	}
	dirs, err := prepareDirs(opts, info)
	if err != nil {
		return nil, err
	}
	defer dirs.close()
	// Two selections of one read of the index keep only what this restore
	// reads in memory, however large the repository is: the trees, then
	// the blobs of the blocks still to write once those on disk are known.
	ix := entries
	if ix == nil {
		if ix, err = r.ReadIndexEntries(ctx); err != nil {
			return nil, err
		}
	}
	// The tablespaces are the only links the restore writes through:
	// pg_tblspc/<oid> is restored as a link to its directory, and what
	// lies below it is written into that directory, confined there.
	ro := repo.RestoreOptions{
		Root: dirs.data, Mounts: dirs.ts, UID: opts.UID, GID: opts.GID, Delta: opts.Delta, Workers: opts.Workers, Zero: zero, Record: true,
	}
	if opts.Progress != nil {
		total := snap.Stats.BytesTotal
		ro.Progress = func(w int64) { opts.Progress(w, total) }
	}
	fail := func(err error) error {
		return fmt.Errorf("restore snapshot %s to %s: %w", snap.ID.Short(), opts.Dir, err)
	}
	treeIdx := ix.Select(func(t repo.BlobType, _ repo.ID) bool { return t == repo.TreeBlob })
	tr, err := r.PrepareRestore(ctx, treeIdx, snap.Tree, ro)
	if err != nil {
		return nil, fail(err)
	}
	defer tr.Close()
	if opts.Delta {
		// Files a later state of the cluster left behind (old WAL, new
		// relations, signal files) would mislead recovery.
		keep := tr.Paths()
		keep[repo.RestoreRecordName] = true
		if err := removeExtra(dirs, keep); err != nil {
			return nil, err
		}
	}
	if opts.Writing != nil {
		opts.Writing(snap)
	}
	if err := tr.Layout(ctx); err != nil {
		return nil, fail(err)
	}
	needed := tr.Needed()
	idx := ix.Select(func(_ repo.BlobType, id repo.ID) bool { return needed(id) })
	needed, ix, entries = nil, nil, nil
	st, err := tr.Write(ctx, idx)
	if err != nil {
		return nil, fail(err)
	}
	if err := tr.Close(); err != nil {
		return nil, fail(err)
	}
	if err := finishDataDir(opts, info, dirs); err != nil {
		return nil, err
	}
	if err := dirs.close(); err != nil {
		return nil, err
	}
	return &RestoreResult{Snapshot: snap, Info: info, Stats: st, LeftOut: left}, nil
}

// chooseSnapshot picks the newest snapshot that is consistent before the
// target, or checks the one the caller named.
func chooseSnapshot(ctx context.Context, r *repo.Repository, opts RestoreOptions) (*repo.Snapshot, *SnapshotInfo, error) {
	var rpLSN *lifeboat.LSN
	if opts.Target.Name != "" {
		rp, err := LoadRestorePoint(ctx, r, opts.Asset, opts.Target.Name)
		if err == nil {
			rpLSN = &rp.LSN
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, nil, err
		}
	}
	fits := func(info *SnapshotInfo) bool {
		t := opts.Target
		switch {
		case t.Time != nil:
			return !info.StopTime.After(*t.Time)
		case t.LSN != nil:
			return info.StopLSN <= *t.LSN
		case t.XID != nil:
			// Transactions numbered from NextXIDStop on began after the
			// backup was consistent, so their commits are replayed.
			return info.NextXIDStop <= *t.XID
		case rpLSN != nil:
			return info.StopLSN <= *rpLSN
		}
		return true
	}
	if opts.Snapshot != "" {
		s, err := r.FindSnapshot(ctx, opts.Snapshot)
		if err != nil {
			return nil, nil, err
		}
		if s.Asset != opts.Asset {
			return nil, nil, fmt.Errorf("snapshot %s belongs to asset %s, not %s", s.ID.Short(), s.Asset, opts.Asset)
		}
		info, err := Info(s)
		if err != nil {
			return nil, nil, err
		}
		if !fits(info) {
			return nil, nil, fmt.Errorf("snapshot %s is consistent only from %s (LSN %s): the target %s lies before it",
				s.ID.Short(), lifeboat.FormatPreciseTime(info.StopTime), info.StopLSN, opts.Target)
		}
		return s, info, nil
	}
	snaps, err := r.Snapshots(ctx, opts.Asset)
	if err != nil {
		return nil, nil, err
	}
	var first *SnapshotInfo
	for i := len(snaps) - 1; i >= 0; i-- {
		info, err := Info(snaps[i])
		if err != nil {
			continue
		}
		first = info
		if fits(info) {
			return snaps[i], info, nil
		}
	}
	if first == nil {
		return nil, nil, fmt.Errorf("asset %s has no PostgreSQL snapshot in %s: %w", opts.Asset, r.Location(), storage.ErrNotFound)
	}
	return nil, nil, fmt.Errorf("no snapshot of %s is consistent before %s: the earliest is consistent from %s (LSN %s)",
		opts.Asset, opts.Target, lifeboat.FormatPreciseTime(first.StopTime), first.StopLSN)
}

// CheckNoGap is checkNoGap for a drill, which must find a gap whatever
// its target: a repository that cannot restore its newest point fails.
func CheckNoGap(ctx context.Context, r *repo.Repository, asset string, info *SnapshotInfo) error {
	return checkNoGap(ctx, r, asset, info)
}

// checkNoGap refuses a restore to the end of WAL when a segment is missing
// after the snapshot while later ones exist: PostgreSQL would stop at the
// gap and call that the end.
func checkNoGap(ctx context.Context, r *repo.Repository, asset string, info *SnapshotInfo) error {
	segs, err := archivedSegments(ctx, r, asset, info.WALSegmentSize)
	if err != nil {
		return err
	}
	list := segs[info.Timeline]
	from := SegmentForLSN(info.StopLSN, info.WALSegmentSize)
	prev := from
	for _, s := range list {
		if s <= from {
			continue
		}
		if s != prev+1 {
			missing := SegmentName(info.Timeline, prev+1, info.WALSegmentSize)
			return fmt.Errorf("WAL segment %s is missing while later segments of timeline %d are archived: recovery would stop there and lose what follows; restore to a target before it with --lsn or --time if that loss is accepted: %w",
				missing, info.Timeline, ErrWALGap)
		}
		prev = s
	}
	return nil
}

// archivedSegments lists the archived segment numbers per timeline.
func archivedSegments(ctx context.Context, r *repo.Repository, asset string, segSize uint64) (map[uint32][]uint64, error) {
	segs, _, err := archivedSegmentTimes(ctx, r, asset, segSize)
	return segs, err
}

// restoreDirs are the directories a restore writes, held open from the
// checks to the end: the data directory and the tablespaces by tree path
// (pg_tblspc/<oid>). As root, one another user owns (the postgres user,
// usually) is root's and 0700 while the restore runs, so nothing that
// user does meanwhile can steer a write, and given to the owner of the
// restored global/ at the end.
type restoreDirs struct {
	data *repo.RestoreDir
	ts   map[string]*repo.RestoreDir
	locs map[string]string // tree path -> location as named
}

func (d *restoreDirs) close() error {
	var first error
	for _, rd := range append([]*repo.RestoreDir{d.data}, slices.Collect(maps.Values(d.ts))...) {
		if err := rd.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// prepareDirs checks the data directory and the tablespace locations,
// then creates what is missing and opens them. Nothing is created unless
// every check passes; the checks are made again on the open directories.
func prepareDirs(opts RestoreOptions, info *SnapshotInfo) (*restoreDirs, error) {
	if err := checkDir(opts.Dir, opts.Delta); err != nil {
		return nil, err
	}
	locs := make(map[string]string)
	for _, t := range info.Tablespaces {
		oid := strconv.FormatUint(uint64(t.OID), 10)
		loc := t.Location
		if d, ok := opts.Tablespaces[oid]; ok {
			loc = d
		} else if d, ok := opts.Tablespaces[t.Name]; ok {
			loc = d
		}
		if !filepath.IsAbs(loc) {
			return nil, fmt.Errorf("tablespace %s: location %q is not absolute", t.Name, loc)
		}
		if err := checkDir(loc, opts.Delta); err != nil {
			return nil, fmt.Errorf("tablespace %s: %w (map it elsewhere with --tablespace %s=DIR)", t.Name, err, t.Name)
		}
		locs["pg_tblspc/"+oid] = loc
	}
	dirs := &restoreDirs{ts: map[string]*repo.RestoreDir{}, locs: locs}
	open := func(p string) (*repo.RestoreDir, error) {
		d, err := repo.OpenRestoreDir(p, repo.DirOptions{Create: true, TakeOver: true})
		if err != nil {
			return nil, fmt.Errorf("restore target: %w", err)
		}
		if _, err := d.Lstat("postmaster.pid"); err == nil {
			d.Close()
			return nil, fmt.Errorf("%s holds postmaster.pid: a server may be running there; stop it first", p)
		}
		if !opts.Delta {
			if names, err := d.Names(); err != nil || len(names) > 0 {
				d.Close()
				if err != nil {
					return nil, err
				}
				return nil, fmt.Errorf("%s is not empty: restore into an empty directory, or use --delta to rewrite only what differs", p)
			}
		}
		return d, nil
	}
	var err error
	if dirs.data, err = open(opts.Dir); err != nil {
		return nil, err
	}
	for tp, loc := range locs {
		d, err := open(loc)
		if err != nil {
			dirs.close()
			return nil, err
		}
		dirs.ts[tp] = d
	}
	return dirs, nil
}

// checkDir accepts an absent or empty directory, or with delta any
// directory no server is running in.
func checkDir(dir string, delta bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore target: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		return fmt.Errorf("%s holds postmaster.pid: a server may be running there; stop it first", dir)
	}
	if len(entries) > 0 && !delta {
		return fmt.Errorf("%s is not empty: restore into an empty directory, or use --delta to rewrite only what differs", dir)
	}
	return nil
}

// removeExtra deletes what is below the data directory (and the
// tablespaces) but not in the snapshot, following no link.
func removeExtra(dirs *restoreDirs, keep map[string]bool) error {
	if err := dirs.data.RemoveUnlisted(func(rel string) bool { return keep[rel] }); err != nil {
		return fmt.Errorf("delta: clean %s: %w", dirs.data.Path(), err)
	}
	for tp, d := range dirs.ts {
		if err := d.RemoveUnlisted(func(rel string) bool { return keep[tp+"/"+rel] }); err != nil {
			return fmt.Errorf("delta: clean %s: %w", d.Path(), err)
		}
	}
	return nil
}

// finishDataDir writes backup_label, tablespace_map and the recovery
// settings, and gives the data directory the owner of global/ and the
// mode PostgreSQL demands. The data directory is still held (root's while
// a root restore runs), so the files written by name at its top cannot be
// redirected; what lies deeper is reached through the open directory.
func finishDataDir(opts RestoreOptions, info *SnapshotInfo, dirs *restoreDirs) error {
	dir, data := opts.Dir, dirs.data
	for _, d := range []string{"pg_wal", "pg_wal/archive_status"} {
		if err := data.MkdirAll(d); err != nil {
			return err
		}
	}
	owner, err := data.Lstat("global")
	if err != nil {
		return fmt.Errorf("restored data directory has no global/: %w", err)
	}
	// postgresql.auto.conf is read and rewritten below by name: a link
	// in its place (only a forged snapshot holds one) would be followed.
	if fi, err := data.Lstat("postgresql.auto.conf"); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("the snapshot's postgresql.auto.conf is not a regular file (%s): %w", fi.Mode().Type(), repo.ErrCorrupt)
	}
	st, _ := owner.Sys().(*syscall.Stat_t)
	asRoot := st != nil && os.Geteuid() == 0
	if asRoot {
		for _, p := range []string{"pg_wal", "pg_wal/archive_status"} {
			if err := data.Chown(p, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
		for _, d := range dirs.ts {
			d.GiveTo(int(st.Uid), int(st.Gid), 0)
		}
		data.GiveTo(int(st.Uid), int(st.Gid), 0o700)
	} else {
		data.GiveTo(-1, -1, 0o700)
	}
	if err := writeFileAtomic(filepath.Join(dir, "backup_label"), []byte(info.BackupLabel), 0o600, owner); err != nil {
		return err
	}
	if info.TablespaceMap != "" {
		if err := writeFileAtomic(filepath.Join(dir, "tablespace_map"), []byte(remapTablespaceMap(info.TablespaceMap, dirs.locs)), 0o600, owner); err != nil {
			return err
		}
	}
	t := RecoveryTarget{Time: opts.Target.Time, LSN: opts.Target.LSN, XID: opts.Target.XID, Name: opts.Target.Name,
		Inclusive: true, Timeline: "latest"}
	if t.Time != nil || t.LSN != nil || t.XID != nil || t.Name != "" {
		t.Action = "promote"
	}
	extra := map[string]string{}
	if opts.ArchiveOff {
		extra["archive_mode"] = "off"
	}
	if err := WriteRecoveryConfig(dir, opts.RestoreCommand, t, extra); err != nil {
		return err
	}
	if asRoot {
		for _, f := range []string{"postgresql.auto.conf", "recovery.signal"} {
			if err := data.Chown(f, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// remapTablespaceMap rewrites "<oid> <path>" lines for tablespaces
// restored elsewhere.
func remapTablespaceMap(m string, tsDirs map[string]string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(m, "\n"), "\n") {
		oid, _, ok := strings.Cut(line, " ")
		if loc, found := tsDirs["pg_tblspc/"+oid]; ok && found {
			line = oid + " " + loc
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// RestorePoint is a named point recorded by RecordRestorePoint, so a
// restore to it can pick a base that precedes it.
type RestorePoint struct {
	Name     string       `json:"name"`
	LSN      lifeboat.LSN `json:"lsn"`
	Time     time.Time    `json:"time"`
	Timeline uint32       `json:"timeline"`
}

func restorePointRel(name string) string { return hex.EncodeToString([]byte(name)) }

// RecordRestorePoint makes a named restore point on the server, switches
// to a new WAL segment so it is archived promptly, and records it.
func RecordRestorePoint(ctx context.Context, r *repo.Repository, asset, dsn, name string) (*RestorePoint, error) {
	if name == "" || len(name) > 63 {
		return nil, fmt.Errorf("restore point name %q: want 1 to 63 bytes", name)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to the server of %s: %w", asset, err)
	}
	defer conn.Close(context.Background())
	lsn, err := CreateRestorePoint(ctx, conn, name)
	if err != nil {
		return nil, err
	}
	tli, err := CurrentTimeline(ctx, conn)
	if err != nil {
		return nil, err
	}
	now, err := ServerNow(ctx, conn)
	if err != nil {
		return nil, err
	}
	if _, err := SwitchWAL(ctx, conn); err != nil {
		return nil, err
	}
	rp := &RestorePoint{Name: name, LSN: lsn, Time: now.UTC(), Timeline: tli}
	payload, err := json.Marshal(rp)
	if err != nil {
		return nil, err
	}
	if _, err := r.PutNamed(ctx, "restorepoints", asset, restorePointRel(name), payload, repo.CodecZstd); err != nil {
		if errors.Is(err, repo.ErrConflict) {
			return nil, fmt.Errorf("restore point %q of %s exists already: choose another name", name, asset)
		}
		return nil, err
	}
	return rp, nil
}

// LoadRestorePoint reads a recorded restore point.
func LoadRestorePoint(ctx context.Context, r *repo.Repository, asset, name string) (*RestorePoint, error) {
	data, err := r.GetNamed(ctx, "restorepoints", asset, restorePointRel(name))
	if err != nil {
		return nil, fmt.Errorf("restore point %q: %w", name, err)
	}
	var rp RestorePoint
	if err := json.Unmarshal(data, &rp); err != nil {
		return nil, fmt.Errorf("restore point %q: %v: %w", name, err, repo.ErrCorrupt)
	}
	return &rp, nil
}
