package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgdrill"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// CatalogInfo lists, as a backup found them, the names a table-level
// restore's --database, --schema and --table can give, so that a name
// that cannot exist at the target is refused before the restore.
type CatalogInfo struct {
	Databases []CatalogDB `json:"databases"`
}

// CatalogDB is one database and, when it takes connections, its schemas
// with the relations (of the kinds pgdrill's Check accepts) in each.
type CatalogDB struct {
	Name    string              `json:"name"`
	OID     uint32              `json:"oid"`
	Listed  bool                `json:"listed"`
	Schemas map[string][]string `json:"schemas,omitempty"`
}

// maxCatalogRelations bounds the list: beyond it the snapshot's metadata
// would grow by megabytes, and the names are checked after the restore.
const maxCatalogRelations = 100_000

// catalogRelkinds are the relation kinds pgdrill.Selection.Check accepts:
// the list must hold every name the late check would, or the early check
// could refuse a name that exists.
const catalogRelkinds = `('r', 'p', 'v', 'm', 'f', 'S')`

// queryCatalog lists the relations of every database of the server dsn
// names, on connections of its own (a timeout closes the connection it
// hits, which must not be the backup's), once no transaction below mark
// runs. Taken so, after pg_backup_start, a name missing from the list can
// appear at a later target only through a commit in the WAL after the
// backup's start. It returns nil, with the reason, when the list would be
// incomplete or too long.
func queryCatalog(ctx context.Context, dsn string, mark uint64) (*CatalogInfo, string) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, "dsn: " + err.Error()
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err.Error()
	}
	defer conn.Close(context.Background())
	if err := settled(ctx, conn, mark); err != nil {
		return nil, err.Error()
	}
	rows, err := conn.Query(ctx, `select oid, datname, datallowconn from pg_catalog.pg_database where datname <> 'template0' order by datname`)
	if err != nil {
		return nil, "list the databases: " + err.Error()
	}
	var cat CatalogInfo
	for rows.Next() {
		var d CatalogDB
		if err := rows.Scan(&d.OID, &d.Name, &d.Listed); err != nil {
			rows.Close()
			return nil, "list the databases: " + err.Error()
		}
		cat.Databases = append(cat.Databases, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "list the databases: " + err.Error()
	}
	total := 0
	for i := range cat.Databases {
		d := &cat.Databases[i]
		if !d.Listed {
			continue
		}
		n, err := catalogOf(ctx, cfg, d, maxCatalogRelations-total)
		if err != nil {
			return nil, fmt.Sprintf("database %q: %v", d.Name, err)
		}
		total += n
		if total > maxCatalogRelations {
			return nil, fmt.Sprintf("more than %d relations", maxCatalogRelations)
		}
	}
	return &cat, ""
}

// catalogOf fills d's schemas unless it holds more than limit relations,
// and returns how many it holds.
func catalogOf(ctx context.Context, cfg *pgx.ConnConfig, d *CatalogDB, limit int) (int, error) {
	cfg = cfg.Copy()
	cfg.Database = d.Name
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, `select count(*) from pg_catalog.pg_class where relkind in `+catalogRelkinds).Scan(&n); err != nil {
		return 0, err
	}
	if n > limit {
		return n, nil
	}
	rows, err := conn.Query(ctx, `select n.nspname, c.relname from pg_catalog.pg_namespace n
		left join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relkind in `+catalogRelkinds)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	d.Schemas = map[string][]string{}
	for rows.Next() {
		var schema string
		var rel *string
		if err := rows.Scan(&schema, &rel); err != nil {
			return 0, err
		}
		if rel == nil {
			if _, ok := d.Schemas[schema]; !ok {
				d.Schemas[schema] = []string{}
			}
			continue
		}
		d.Schemas[schema] = append(d.Schemas[schema], *rel)
	}
	for _, rels := range d.Schemas {
		sort.Strings(rels)
	}
	return n, rows.Err()
}

// maxPrecheckSegments bounds the WAL read before a table restore; beyond
// it the names are checked after the restore, which replays that WAL
// anyway.
const maxPrecheckSegments = 1024

// precheckSelection refuses, before anything but WAL is read, a selection
// that cannot exist at the target: names the snapshot's list lacks, when
// no commit in the WAL the restore would replay changed the catalogs
// (only such a commit creates or renames a relation, schema or
// database). Whenever it cannot be sure it returns nil, and the names
// are checked on the restored server as before.
func precheckSelection(ctx context.Context, r *repo.Repository, assetName string, info *SnapshotInfo, sel pgdrill.Selection, db string, target Target, log *slog.Logger) error {
	later := func(reason string) error {
		log.Info("table restore: names are checked after the restore", "asset", assetName, "reason", reason)
		return nil
	}
	if info.Catalog == nil {
		return later("the snapshot lists no relations (taken by an older lifeboat, or the list was not taken)")
	}
	var d *CatalogDB
	for i := range info.Catalog.Databases {
		if info.Catalog.Databases[i].Name == db {
			d = &info.Catalog.Databases[i]
		}
	}
	var missing []string
	switch {
	case d == nil:
		missing = append(missing, fmt.Sprintf("database %q", db))
	case !d.Listed || d.Schemas == nil:
		return later(fmt.Sprintf("database %q takes no connections or was not listed", db))
	default:
		for _, t := range sel.Tables {
			if !slices.Contains(d.Schemas[t.Schema], t.Name) {
				missing = append(missing, "table "+t.String())
			}
		}
		for _, s := range sel.Schemas {
			if _, ok := d.Schemas[s]; !ok {
				missing = append(missing, "schema "+pgdrill.QuoteIdent(s))
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	end, reason := catalogUnchanged(ctx, r, assetName, info, target)
	if reason != "" {
		return later(strings.Join(missing, ", ") + " not in the snapshot, but " + reason)
	}
	verb := "does not exist"
	if len(missing) > 1 {
		verb = "do not exist"
	}
	where := ""
	if d != nil {
		where = fmt.Sprintf(" in database %q", db)
	}
	return asset.Usagef("%s %s%s at %s: not in the snapshot of %s, and no commit in the archived WAL from its start to %s changed the catalogs",
		strings.Join(missing, ", "), verb, where, target, info.StopTime.Format(lifeboat.TimeLayout), end)
}

// catalogUnchanged reads the archived WAL the restore would replay, from
// the snapshot's start, and returns where it stopped, or why a name may
// have appeared: a commit that changed the catalogs by the target, or WAL
// it cannot read.
func catalogUnchanged(ctx context.Context, r *repo.Repository, assetName string, info *SnapshotInfo, target Target) (string, string) {
	if v := info.PGVersion / 10000; v != 15 {
		return "", fmt.Sprintf("the WAL is read for PostgreSQL 15 only, the snapshot is of %d", v)
	}
	segSize := info.WALSegmentSize
	newest, _, err := NewestWAL(ctx, r, assetName)
	if err != nil {
		return "", err.Error()
	}
	if newest == "" {
		return "", "no WAL is archived"
	}
	last, err := ParseWALFileName(newest, segSize)
	if err != nil {
		return "", err.Error()
	}
	first := SegmentForLSN(info.StartLSN, segSize)
	switch {
	case last.TLI != info.Timeline:
		return "", fmt.Sprintf("the newest archived WAL is on timeline %d, the snapshot on %d", last.TLI, info.Timeline)
	case last.SegNo < first:
		return "", "the archived WAL ends before the snapshot's start"
	case last.SegNo-first >= maxPrecheckSegments:
		return "", fmt.Sprintf("the WAL since the snapshot is more than %d segments", maxPrecheckSegments)
	}
	get := func(ctx context.Context, segNo uint64) ([]byte, error) {
		if segNo > last.SegNo {
			return nil, errWALEnd
		}
		n := WALName{Kind: WALSegment, TLI: info.Timeline, SegNo: segNo, SegSize: segSize}
		data, err := r.GetNamed(ctx, walArea, assetName, walRel(n))
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("WAL segment %s is not in the repository although later ones are: %w", n, ErrWALGap)
		}
		if err != nil {
			return nil, fmt.Errorf("WAL segment %s: %w", n, err)
		}
		return data, nil
	}
	w := newWALRefs()
	w.StopAfter = target.Time
	endLSN := lifeboat.LSN((last.SegNo + 1) * segSize)
	if _, err := scanWAL(ctx, get, segSize, info.StartLSN, endLSN, w); err != nil {
		return "", "reading the WAL: " + err.Error()
	}
	// Catalog changes reach the WAL's commit records at wal_level replica
	// only: a parameter change (or a restart, which may bring one) ends
	// what the WAL vouches for.
	if w.Whole != "" {
		return "", w.Whole
	}
	// A commit in any database counts: a database renamed from another
	// one (pg_database is shared) swaps what a name holds.
	for _, at := range w.CatalogCommits {
		if target.Time != nil && !at.IsZero() && at.After(*target.Time) {
			continue
		}
		when := "in the WAL replayed"
		if !at.IsZero() {
			when = "at " + lifeboat.FormatPreciseTime(at)
		}
		return "", "a commit " + when + " changed the catalogs"
	}
	end := "its end (" + newest + ")"
	if w.stopped {
		end = target.String()
	}
	return end, ""
}

// catalogTimeout bounds the listing at backup time: it is a convenience
// for later restores, and must not hold a backup up.
const catalogTimeout = 2 * time.Minute

// catalogMark returns a transaction ID above every one assigned before
// the backup's start: the next ID the start's checkpoint (or a later one)
// recorded, read after the redo point was fixed. It writes nothing (a
// transaction of its own would leave an abort record in the backup's WAL).
// 0 means none could be had, and then no list is taken.
func (b *backup) catalogMark(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	fail := func(err error) uint64 {
		b.log.Info("backup: relations will not be listed", "asset", b.opts.Asset, "reason", err.Error())
		return 0
	}
	conn, err := pgx.Connect(ctx, b.opts.DSN)
	if err != nil {
		return fail(err)
	}
	defer conn.Close(context.Background())
	var next string
	if err := conn.QueryRow(ctx, "select next_xid from pg_catalog.pg_control_checkpoint()").Scan(&next); err != nil {
		return fail(fmt.Errorf("read the checkpoint's next transaction ID: %w", err))
	}
	epoch, xid, ok := strings.Cut(next, ":")
	e, err1 := strconv.ParseUint(epoch, 10, 32)
	x, err2 := strconv.ParseUint(xid, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fail(fmt.Errorf("the checkpoint's next transaction ID %q is not epoch:xid", next))
	}
	return e<<32 | x
}

// catalog lists the server's relations for the snapshot, or returns nil
// (logged): the list only saves a failing table restore its wait. It
// runs just before pg_backup_stop, once every transaction that had an ID
// before the start (below mark) has ended: one whose commit record came
// before the start, but which was still ending (waiting for a synchronous
// standby) as the list was read, would otherwise be missing from the list
// and from the WAL a restore reads.
func (b *backup) catalog(ctx context.Context, mark uint64) *CatalogInfo {
	if mark == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	start := time.Now()
	cat, reason := queryCatalog(ctx, b.opts.DSN, mark)
	if cat == nil {
		b.log.Info("backup: relations not listed; a table restore checks names after restoring", "asset", b.opts.Asset, "reason", reason)
		return nil
	}
	b.log.Debug("backup: relations listed", "asset", b.opts.Asset, "databases", len(cat.Databases), "seconds", time.Since(start).Seconds())
	return cat
}

// catalogSettle bounds the wait for the transactions older than the
// backup's start: a long one leaves the snapshot without a list.
const catalogSettle = 5 * time.Second

// settled waits until no transaction with an ID below mark is running.
func settled(ctx context.Context, conn *pgx.Conn, mark uint64) error {
	deadline := time.Now().Add(catalogSettle)
	for {
		var xmin uint64
		if err := conn.QueryRow(ctx, "select pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint").Scan(&xmin); err != nil {
			return err
		}
		if xmin >= mark {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("transaction %d, older than the backup's start, still runs after %s", xmin, catalogSettle)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
