package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgdrill"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Restoring one database of a cluster (--database) follows pgBackRest's
// --db-include: the relation files of the other databases are restored at
// their size but as sparse zeros, without reading them, so that recovery
// finds every file the WAL names; after recovery those databases are
// marked invalid (datconnlimit = -2, which PostgreSQL gives a database
// whose DROP was interrupted), so the server refuses connections to them
// and DROP DATABASE removes them. The system databases (template0,
// template1, postgres) are always restored.

// systemDatabases are restored whatever --database names.
var systemDatabases = []string{"template0", "template1", "postgres"}

// dbFilesKept are the files of a left-out database's directory restored
// as they are: small, and read to open the directory at all.
var dbFilesKept = []string{"PG_VERSION", "pg_filenode.map"}

// databaseOIDs reads the snapshot's pg_database (global/1262) and
// returns each database name's OIDs (several when a name was dropped and
// made again: every version of a row still on its pages is read).
func databaseOIDs(ctx context.Context, r *repo.Repository, ix *repo.IndexEntries, snap *repo.Snapshot, info *SnapshotInfo) (map[string][]uint32, error) {
	if info.PGVersion < 120000 {
		return nil, asset.Usagef("--database needs PostgreSQL 12 or later (this backup is of %d)", info.PGVersion/10000)
	}
	tmp, err := os.MkdirTemp("", "lifeboat-pgdatabase-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	const rel = "global/1262"
	idx := ix.Select(func(t repo.BlobType, _ repo.ID) bool { return t == repo.TreeBlob })
	needed := map[repo.ID]bool{}
	found := false
	if err := r.WalkTree(ctx, idx, snap.Tree, func(n *repo.Node) error {
		if n.Path == rel && n.Type == repo.NodeFile {
			found = true
			for _, b := range n.Blocks {
				needed[b.ID] = true
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", snap.ID.Short(), err)
	}
	if !found {
		return nil, fmt.Errorf("snapshot %s holds no %s (pg_database): %w", snap.ID.Short(), rel, repo.ErrCorrupt)
	}
	idx = ix.Select(func(t repo.BlobType, id repo.ID) bool { return t == repo.TreeBlob || needed[id] })
	if _, err := r.RestoreTree(ctx, idx, snap.Tree, repo.RestoreOptions{Dir: tmp, UID: -1, GID: -1,
		Target: func(p string) string {
			if p == "global" || p == rel {
				return filepath.Join(tmp, filepath.FromSlash(p))
			}
			return ""
		}}); err != nil {
		return nil, fmt.Errorf("read pg_database of snapshot %s: %w", snap.ID.Short(), err)
	}
	data, err := os.ReadFile(filepath.Join(tmp, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	return parsePGDatabase(data, info.BlockSize), nil
}

// parsePGDatabase reads the rows of pg_database's heap pages: from
// PostgreSQL 12 its first two columns are oid (an aligned 4-byte
// integer at the tuple's data offset) and datname (64 bytes, NUL
// padded).
func parsePGDatabase(data []byte, blockSize int) map[string][]uint32 {
	if blockSize <= 0 {
		blockSize = 8192
	}
	out := map[string][]uint32{}
	for p := 0; p+blockSize <= len(data); p += blockSize {
		page := data[p : p+blockSize]
		lower := int(binary.LittleEndian.Uint16(page[12:14]))
		if lower < 24 || lower > blockSize {
			continue // a new (all-zero) page
		}
		for i := 24; i+4 <= lower; i += 4 {
			lp := binary.LittleEndian.Uint32(page[i:])
			off, flags, length := int(lp&0x7fff), (lp>>15)&3, int(lp>>17)
			if flags != 1 || off+length > blockSize || length < 24 {
				continue // unused, redirected or dead line pointers
			}
			tup := page[off : off+length]
			hoff := int(tup[22])
			if hoff+4+64 > len(tup) {
				continue
			}
			oid := binary.LittleEndian.Uint32(tup[hoff:])
			name := tup[hoff+4 : hoff+4+64]
			if n := slices.Index(name, 0); n >= 0 {
				name = name[:n]
			}
			if len(name) == 0 || oid == 0 {
				continue
			}
			if !slices.Contains(out[string(name)], oid) {
				out[string(name)] = append(out[string(name)], oid)
			}
		}
	}
	return out
}

// leftOut are the OIDs of the databases a restore of db leaves out, or a
// usage error naming those the snapshot holds when db is not one of them.
func leftOut(dbs map[string][]uint32, db string, snap *repo.Snapshot) ([]uint32, error) {
	if _, ok := dbs[db]; !ok {
		var names []string
		for n := range dbs {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, asset.Usagef("database %q is not in snapshot %s (it holds %s; one made after the snapshot cannot be restored alone: restore without --database)",
			db, snap.ID.Short(), strings.Join(names, ", "))
	}
	keep := map[uint32]bool{}
	for _, n := range append([]string{db}, systemDatabases...) {
		for _, oid := range dbs[n] {
			keep[oid] = true
		}
	}
	var out []uint32
	for _, oids := range dbs {
		for _, oid := range oids {
			if !keep[oid] && !slices.Contains(out, oid) {
				out = append(out, oid)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// zeroed says which files of the data directory's tree a restore leaving
// out the databases oids writes as sparse zeros: the relation files
// below base/<oid>/ and pg_tblspc/<tablespace>/<version dir>/<oid>/.
func zeroed(oids []uint32) func(treePath string) bool {
	out := map[string]bool{}
	for _, o := range oids {
		out[strconv.FormatUint(uint64(o), 10)] = true
	}
	return func(p string) bool {
		parts := strings.Split(p, "/")
		var db string
		switch {
		case len(parts) == 3 && parts[0] == "base":
			db = parts[1]
		case len(parts) == 5 && parts[0] == "pg_tblspc":
			db = parts[3]
		default:
			return false
		}
		return out[db] && !slices.Contains(dbFilesKept, parts[len(parts)-1])
	}
}

// knowsInvalidDatabases says whether PostgreSQL of this version (as
// "15.13") refuses connections to a database with datconnlimit = -2:
// 16, and the minor releases of August 2023 before it.
func knowsInvalidDatabases(version string) bool {
	digits := func(s string) (int, error) {
		end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			s = s[:end]
		}
		return strconv.Atoi(s)
	}
	maj, min, _ := strings.Cut(version, ".")
	major, err := digits(maj)
	if err != nil {
		return false
	}
	if major >= 16 {
		return true // from 16.0 (and its betas)
	}
	minor, err := digits(min)
	if err != nil {
		return false
	}
	first := map[int]int{11: 21, 12: 16, 13: 12, 14: 9, 15: 4}
	f, ok := first[major]
	return ok && minor >= f
}

// markInvalid marks the databases oids invalid on the recovered server
// and returns their names.
func markInvalid(ctx context.Context, srv *pgbin.Server, oids []uint32) ([]string, error) {
	if len(oids) == 0 {
		return nil, nil
	}
	conn, err := srv.Connect(ctx, "template1")
	if err != nil {
		return nil, fmt.Errorf("the recovered server: %w", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "update pg_catalog.pg_database set datconnlimit = -2 where oid = any($1) returning datname", oids)
	if err != nil {
		return nil, fmt.Errorf("mark the databases left out invalid: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("mark the databases left out invalid: %w", err)
	}
	if _, err := conn.Exec(ctx, "checkpoint"); err != nil {
		return nil, fmt.Errorf("the recovered server: checkpoint: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

// oneDatabaseRestore restores one database of the cluster into r.To and
// recovers it there: the server is started on a private socket (as the
// data directory's owner under root), replays to the target, is
// promoted, marks the other databases invalid and is shut down cleanly.
// Unlike a whole restore, the directory is handed back recovered.
func oneDatabaseRestore(ctx context.Context, r *asset.Restore, target Target, db string, ts map[string]string, restoreCmd string) (*asset.Restored, error) {
	a, f := r.Asset, r.Flags
	if f.Bool("delta") {
		return nil, asset.Usagef("--database does not combine with --delta")
	}
	_, info, err := chooseSnapshot(ctx, r.Repo, RestoreOptions{Asset: a.Name, Target: target, Snapshot: r.SnapshotID})
	if err != nil {
		return nil, err
	}
	// The server that recovers the directory must know invalid databases:
	// checked before anything is written.
	bin, err := pgbin.Find(ctx, info.PGVersion/10000)
	if err != nil {
		return nil, err
	}
	if !knowsInvalidDatabases(bin.Version) {
		return nil, fmt.Errorf("--database: PostgreSQL %s in %s cannot mark the databases left out invalid (needs 16, or 15.4, 14.9, 13.12, 12.16 or later): install a newer minor release", bin.Version, bin.Dir)
	}
	cfg, err := ConfigOf(a)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("asset %s: dsn: %w", a.Name, err)
	}
	start := time.Now()
	res, err := Restore(ctx, r.Repo, RestoreOptions{
		Asset: a.Name, Dir: r.To, Target: target, Snapshot: r.SnapshotID, Workers: r.Workers, OnlyDatabase: db,
		RestoreCommand: restoreCmd, Tablespaces: ts, ArchiveOff: f.Bool("archive-off"), UID: r.UID, GID: r.GID, Log: r.Log,
		Progress: func(w, total int64) {
			r.Progress(asset.Progress{Line: fmt.Sprintf("restore %s (database %s): %s of %s written", a.Name, db,
				asset.HumanBytes(w), asset.HumanBytes(total)), Done: w, Total: total})
		},
	})
	if err != nil {
		return nil, err
	}
	if err := recoverOneDatabase(ctx, r, res, bin, conn.User); err != nil {
		return nil, fmt.Errorf("%s is restored, but its recovery failed and the databases left out are not marked invalid (do not use it; restore again): %w", r.To, err)
	}
	left := "no other database"
	if len(res.leftNames) > 0 {
		left = "left out and marked invalid: " + strings.Join(res.leftNames, ", ") + " (remove them with DROP DATABASE)"
	}
	return &asset.Restored{Snapshot: res.Snapshot, Lines: []string{
		fmt.Sprintf("restored database %s of %s from snapshot %s to %s: %d files, %s written in %s",
			db, a.Name, res.Snapshot.ID.Short(), r.To, res.Stats.Files, asset.HumanBytes(res.Stats.BytesWritten), time.Since(start).Round(time.Millisecond)),
		fmt.Sprintf("recovered to %s (target: %s) and promoted; %s", res.recovered.Format(lifeboat.TimeLayout), target, left),
		fmt.Sprintf("start it with: pg_ctl -D %s start", r.To),
	}}, nil
}

// recoverOneDatabase starts the restored directory on a private socket,
// lets it recover and promote, marks the databases left out invalid and
// shuts it down cleanly.
func recoverOneDatabase(ctx context.Context, r *asset.Restore, res *RestoreResult, bin pgbin.Bin, user string) error {
	host, err := pgdrill.NewScratch(r.Flags.String("work-dir"), "", r.Log)
	if err != nil {
		return err
	}
	defer host.Close()
	as, err := pgbin.RunAs("", r.To)
	if err != nil {
		return err
	}
	srv, err := pgdrill.NewServer(host, as)
	if err != nil {
		return err
	}
	// The restored directory keeps its own pg_hba.conf: this one run
	// trusts its private socket through a file of the work directory.
	hba := filepath.Join(host.WorkDir(), "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("local all all trust\n"), 0o600); err != nil {
		return err
	}
	if err := as.Chown(hba, host.WorkDir()); err != nil {
		return err
	}
	srv.DataDir, srv.Bin, srv.Env = r.To, bin, r.SelfEnv
	srv.Settings["hba_file"] = hba
	srv.User = user
	if srv.User == "" && as != nil {
		srv.User = as.Name
	}
	if err := srv.EnsureConf(); err != nil {
		return err
	}
	r.Progress(asset.Progress{Line: fmt.Sprintf("restore %s: replaying WAL", r.Asset.Name)})
	if err := pgdrill.Start(ctx, host, srv); err != nil {
		return err
	}
	if res.recovered, err = recoveredAt(ctx, srv, res.Info); err != nil {
		return err
	}
	if err := pgdrill.AsSuperuser(ctx, srv); err != nil {
		return err
	}
	if res.leftNames, err = markInvalid(ctx, srv, res.LeftOut); err != nil {
		return err
	}
	if err := srv.Stop(ctx); err != nil {
		return fmt.Errorf("shut the recovered server down: %w", err)
	}
	return nil
}
