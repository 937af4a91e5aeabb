package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Kind is the snapshot kind of physical PostgreSQL backups.
const Kind = string(lifeboat.KindPostgres)

// SnapshotInfo is the PostgreSQL part of a snapshot manifest.
type SnapshotInfo struct {
	SystemID       string       `json:"system_id"` // decimal: JSON numbers lose uint64 precision
	PGVersion      int          `json:"pg_version"`
	Timeline       uint32       `json:"timeline"`
	StartLSN       lifeboat.LSN `json:"start_lsn"`
	StopLSN        lifeboat.LSN `json:"stop_lsn"`
	StartWAL       string       `json:"start_wal"`
	StopWAL        string       `json:"stop_wal"`
	WALSegmentSize uint64       `json:"wal_segment_size"`
	StopTime       time.Time    `json:"stop_time"` // server clock at pg_backup_stop
	NextXIDStop    uint64       `json:"next_xid_stop"`
	BlockSize      int          `json:"block_size"`
	DataChecksums  bool         `json:"data_checksums"`
	// ChecksumFailures counts pages whose checksum did not match; the first
	// few are named in ChecksumErrors. They are reported, not fatal: the
	// backup copies the page as it is, as PostgreSQL would read it.
	ChecksumFailures int              `json:"checksum_failures"`
	ChecksumErrors   []string         `json:"checksum_errors,omitempty"`
	Tablespaces      []TablespaceInfo `json:"tablespaces,omitempty"`
	BackupLabel      string           `json:"backup_label"`
	TablespaceMap    string           `json:"tablespace_map,omitempty"`
	// WALBlocks tells how an incremental found its changed blocks.
	WALBlocks *WALBlocksInfo `json:"wal_blocks,omitempty"`
	// Catalog lists the databases, schemas and relations as they were
	// just before the stop, for a table restore's early check; absent in
	// snapshots of older versions and when the list was not taken.
	Catalog *CatalogInfo `json:"catalog,omitempty"`
}

// TablespaceInfo records a tablespace stored under pg_tblspc/<oid>.
type TablespaceInfo struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name"`
	Location string `json:"location"`
}

// Info decodes the PostgreSQL part of a snapshot.
func Info(s *repo.Snapshot) (*SnapshotInfo, error) {
	if s.Kind != Kind {
		return nil, fmt.Errorf("snapshot %s is a %s snapshot, not a PostgreSQL backup", s.ID.Short(), s.Kind)
	}
	var si SnapshotInfo
	if err := json.Unmarshal(s.Extra, &si); err != nil {
		return nil, fmt.Errorf("snapshot %s: parse PostgreSQL details: %w", s.ID.Short(), err)
	}
	return &si, nil
}

// BackupOptions shape a physical backup.
type BackupOptions struct {
	Asset  string
	PGData string
	DSN    string
	Full   bool // read every file, even those unchanged since the parent
	// CheckBlocks reads every changed file whole as well, and fails the
	// backup naming any block that changed since the parent although the
	// WAL does not reference it (EnvCheckBlocks sets it too).
	CheckBlocks bool
	Workers     int
	BlockSize   int           // 0: the repository's
	LockWait    time.Duration // how long to wait for another backup of the asset
	// ArchiveTimeout bounds the wait for the last WAL segment to be
	// archived at the end of the backup (0: DefaultArchiveTimeout).
	ArchiveTimeout time.Duration
	// PolicyPath is the policy file archive_command must name; "" skips
	// that check.
	PolicyPath string
	Progress   func(BackupProgress)
	Log        *slog.Logger
}

// DefaultArchiveTimeout is how long a backup waits for its last WAL
// segment when nothing says otherwise. The wait ends sooner when the
// archiver reports a failure, so the limit only matters for an archiver
// that is slow or stuck without failing.
const DefaultArchiveTimeout = 10 * time.Minute

// BackupProgress is reported while a backup runs.
type BackupProgress struct {
	Files, FilesDone      int64
	BytesTotal, BytesRead int64
	BytesNew              int64
	// WaitingForWAL names the segment the finished copy waits for, and
	// Waited how long it has waited, once the files are all read.
	WaitingForWAL string
	Waited        time.Duration
}

// ErrArchiving is returned (wrapped) when WAL archiving is not set up, so a
// backup could never be restored.
var ErrArchiving = errors.New("WAL archiving is not working")

// Backup takes a physical backup of the cluster through the non-exclusive
// backup API and stores it as a snapshot. It returns only once the
// snapshot, its data and the WAL needed to make it consistent are durable
// in the repository.
func Backup(ctx context.Context, r *repo.Repository, opts BackupOptions) (*repo.Snapshot, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = r.Config().BlockSize
	}
	if opts.ArchiveTimeout == 0 {
		opts.ArchiveTimeout = DefaultArchiveTimeout
	}
	conn, err := pgx.Connect(ctx, opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("connect to the server of %s: %w", opts.Asset, err)
	}
	defer conn.Close(context.Background())
	si, err := QueryServerInfo(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := checkServer(opts, si); err != nil {
		return nil, err
	}
	// The cluster is checked first: another cluster's broken archiving is
	// beside the point.
	if err := ensureIdentity(ctx, r, opts.Asset, Identity{SystemID: strconv.FormatUint(si.SystemID, 10), WALSegmentSize: si.WALSegmentSize}); err != nil {
		return nil, err
	}
	if err := checkArchiving(ctx, conn, opts, si); err != nil {
		return nil, err
	}
	lock, err := r.Lock(ctx, "asset/"+opts.Asset, "backup of "+opts.Asset, true, opts.LockWait)
	if err != nil {
		if errors.Is(err, repo.ErrLocked) {
			return nil, fmt.Errorf("another backup of %s is running: %w", opts.Asset, err)
		}
		// A repository this user may not write is not another backup.
		return nil, fmt.Errorf("backup of %s: take the asset's lock in %s: %w", opts.Asset, r.Location(), err)
	}
	defer lock.Unlock()

	b := &backup{r: r, opts: opts, si: si, log: opts.Log, lock: lock}
	return b.run(ctx, conn)
}

func checkServer(opts BackupOptions, si ServerInfo) error {
	want, err := filepath.EvalSymlinks(opts.PGData)
	if err != nil {
		return fmt.Errorf("asset %s: pgdata: %w", opts.Asset, err)
	}
	got, err := filepath.EvalSymlinks(si.DataDirectory)
	if err != nil {
		got = si.DataDirectory
	}
	if want != got {
		return fmt.Errorf("asset %s: pgdata is %s but the server at the dsn runs on %s: the policy points at two different clusters", opts.Asset, opts.PGData, si.DataDirectory)
	}
	if si.InRecovery {
		return fmt.Errorf("asset %s: the server is a standby or in recovery; back up the primary", opts.Asset)
	}
	return nil
}

// Identity ties an asset in a repository to one cluster.
type Identity struct {
	SystemID       string `json:"system_id"`
	WALSegmentSize uint64 `json:"wal_segment_size"`
}

// ErrOtherCluster is returned (wrapped) when a cluster other than the one
// an asset belongs to tries to write to it.
var ErrOtherCluster = errors.New("another cluster owns this asset")

// ensureIdentity records the cluster an asset belongs to on first use, and
// refuses any other cluster afterwards: two clusters archiving into one
// asset would mix their WAL beyond repair.
func ensureIdentity(ctx context.Context, r *repo.Repository, asset string, id Identity) error {
	payload, err := json.Marshal(id)
	if err != nil {
		return err
	}
	_, err = r.PutNamed(ctx, "meta", asset, "identity", payload, repo.CodecZstd)
	if errors.Is(err, repo.ErrConflict) {
		old, gerr := LoadIdentity(ctx, r, asset)
		if gerr != nil {
			return gerr
		}
		return fmt.Errorf("asset %s belongs to the cluster with system identifier %s, but this one is %s: point the asset at its own cluster: %w",
			asset, old.SystemID, id.SystemID, ErrOtherCluster)
	}
	if err != nil {
		return fmt.Errorf("record identity of %s: %w", asset, err)
	}
	return nil
}

// LoadIdentity reads the cluster identity of an asset.
func LoadIdentity(ctx context.Context, r *repo.Repository, asset string) (*Identity, error) {
	data, err := r.GetNamed(ctx, "meta", asset, "identity")
	if err != nil {
		return nil, fmt.Errorf("identity of %s: %w", asset, err)
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("identity of %s: %v: %w", asset, err, repo.ErrCorrupt)
	}
	return &id, nil
}

type backup struct {
	r    *repo.Repository
	opts BackupOptions
	si   ServerInfo
	log  *slog.Logger
	lock *repo.Lock

	startLSN lifeboat.LSN
	w        *repo.Writer
	prog     BackupProgress
	ckMu     sync.Mutex
	ckFails  int
	ckErrs   []string
	check    bool          // --check-blocks
	missed   []missedBlock // under ckMu
}

// entry is one path found in the data directory.
type entry struct {
	rel   string // tree path
	abs   string // where to read it
	typ   repo.NodeType
	info  fs.FileInfo
	link  string
	reuse *repo.Node // parent's node, when the file is unchanged since
	prev  *repo.Node // parent's node for positional block comparison
	wal   *walPlan   // the blocks the WAL says changed, when it vouches for the file
}

func (b *backup) run(ctx context.Context, conn *pgx.Conn) (*repo.Snapshot, error) {
	r := b.r
	var parent *repo.Snapshot
	snaps, err := r.Snapshots(ctx, b.opts.Asset)
	if err != nil {
		return nil, err
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		if info, err := Info(snaps[i]); err == nil && info.SystemID == strconv.FormatUint(b.si.SystemID, 10) && info.BlockSize == b.opts.BlockSize {
			parent = snaps[i]
			break
		}
	}
	// A backup reads its parent's tree only; tree blobs are all it needs
	// from the index, which keeps memory flat as the repository grows.
	view, err := r.OpenWriteView(ctx, func(t repo.BlobType, _ repo.ID) bool { return t == repo.TreeBlob })
	if err != nil {
		return nil, err
	}
	idx := view.Index
	startTime := time.Now().UTC()
	label := fmt.Sprintf("lifeboat %s %s", b.opts.Asset, startTime.Format(time.RFC3339))
	b.startLSN, err = StartBackup(ctx, conn, label, true)
	if err != nil {
		return nil, err
	}
	tli, err := CurrentTimeline(ctx, conn)
	if err != nil {
		return nil, err
	}
	b.log.Info("backup started", "asset", b.opts.Asset, "lsn", b.startLSN.String(), "timeline", tli)
	tablespaces, err := Tablespaces(ctx, conn)
	if err != nil {
		return nil, err
	}
	mark := b.catalogMark(ctx)
	entries, err := b.scan(tablespaces)
	if err != nil {
		return nil, err
	}
	var walInfo *WALBlocksInfo
	if parent != nil {
		if err := b.matchParent(ctx, idx, parent, entries); err != nil {
			return nil, err
		}
		if !b.opts.Full {
			if b.check, err = b.checkBlocksWanted(ctx, conn); err != nil {
				return nil, err
			}
			walInfo = b.planWAL(ctx, parent, tli, entries)
			walInfo.Checked = b.check && walInfo.Fallback == ""
		}
	}
	// Unchanged stretches of the tree are stored once: the tree blobs of
	// earlier snapshots are known.
	// Uploads stop with ctx; every return before Finish aborts the writer
	// (Abort after a successful Finish does nothing).
	b.w = r.NewWriterContext(ctx, idx)
	defer b.w.Abort()
	tree, count, err := b.copyFiles(ctx, entries)
	if err != nil {
		return nil, err
	}
	catalog := b.catalog(ctx, mark)
	stop, err := StopBackup(ctx, conn, false)
	if err != nil {
		return nil, err
	}
	if err := b.waitArchived(ctx, conn, tli, stop.LSN); err != nil {
		return nil, err
	}
	if err := b.checkMissed(ctx, tli, stop.LSN); err != nil {
		return nil, err
	}
	stopTime, err := ServerNow(ctx, conn)
	if err != nil {
		return nil, err
	}
	nextXID, err := NextXID(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := b.w.Finish(ctx); err != nil {
		return nil, fmt.Errorf("store backup data: %w", err)
	}
	seg := b.si.WALSegmentSize
	info := SnapshotInfo{
		SystemID: strconv.FormatUint(b.si.SystemID, 10), PGVersion: b.si.VersionNum, Timeline: tli,
		StartLSN: b.startLSN, StopLSN: stop.LSN,
		StartWAL:       SegmentName(tli, SegmentForLSN(b.startLSN, seg), seg),
		StopWAL:        SegmentName(tli, SegmentForLSN(stop.LSN, seg), seg),
		WALSegmentSize: seg, StopTime: stopTime.UTC(), NextXIDStop: nextXID,
		BlockSize: b.opts.BlockSize, DataChecksums: b.si.DataChecksums,
		ChecksumFailures: b.ckFails, ChecksumErrors: b.ckErrs,
		BackupLabel: stop.LabelFile, TablespaceMap: stop.TablespaceMap,
		WALBlocks: walInfo, Catalog: catalog,
	}
	for _, ts := range tablespaces {
		info.Tablespaces = append(info.Tablespaces, TablespaceInfo{OID: ts.OID, Name: ts.Name, Location: ts.Location})
	}
	// waitArchived saw the last segment; this checks that every segment
	// since the start is in this repository too.
	if err := CheckWALRange(ctx, r, b.opts.Asset, tli, b.startLSN, stop.LSN, seg); err != nil {
		return nil, fmt.Errorf("backup of %s is not restorable: %w", b.opts.Asset, err)
	}
	if err := b.lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("backup of %s lost its lock, another process may have taken it over: %w", b.opts.Asset, err)
	}
	extra, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	ws := b.w.Stats()
	host, _ := os.Hostname()
	snap := &repo.Snapshot{
		Asset: b.opts.Asset, Kind: Kind, Type: string(lifeboat.SnapshotFull), Host: host,
		StartTime: startTime, EndTime: time.Now().UTC(), Tree: tree, Nodes: count, Extra: extra,
		Stats: repo.SnapshotStats{
			Files: atomic.LoadInt64(&b.prog.Files), BytesRead: atomic.LoadInt64(&b.prog.BytesRead),
			BytesTotal: atomic.LoadInt64(&b.prog.BytesTotal), BytesNew: ws.BytesNew,
			BytesStored: ws.BytesStored, BlobsNew: ws.BlobsNew, ListsPatched: ws.ListsPatched,
		},
	}
	if parent != nil && !b.opts.Full {
		snap.Type = string(lifeboat.SnapshotIncremental)
		snap.Parent = &parent.ID
	}
	if err := r.CommitSnapshot(ctx, view, snap); err != nil {
		return nil, fmt.Errorf("backup of %s: %w; run the backup again", b.opts.Asset, err)
	}
	b.log.Info("backup finished", "asset", b.opts.Asset, "snapshot", snap.ID.Short(), "stop_lsn", stop.LSN.String())
	return snap, nil
}

// scan lists the data directory and the tablespaces in tree order,
// leaving out what PostgreSQL documents as excludable.
func (b *backup) scan(tablespaces []Tablespace) ([]*entry, error) {
	ex := NewExcluder()
	var entries []*entry
	tsByOID := make(map[string]Tablespace)
	for _, ts := range tablespaces {
		tsByOID[strconv.FormatUint(uint64(ts.OID), 10)] = ts
	}
	var walk func(absRoot, relRoot string) error
	walk = func(absRoot, relRoot string) error {
		return filepath.WalkDir(absRoot, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				// PostgreSQL drops relations while a backup runs; a
				// vanished file is expected, anything else is not.
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return fmt.Errorf("scan %s: %w", p, err)
			}
			rel, _ := filepath.Rel(absRoot, p)
			rel = filepath.ToSlash(rel)
			if rel == "." {
				return nil // the root itself: the data directory, or a tablespace's symlink node
			}
			if relRoot != "" {
				rel = relRoot + "/" + rel
			}
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("scan %s: %w", p, err)
			}
			isDir := d.IsDir()
			if relRoot == "" {
				skip, keepEmpty := ex.ShouldSkip(rel, isDir)
				if skip && !keepEmpty {
					if isDir {
						return filepath.SkipDir
					}
					return nil
				}
				if skip && keepEmpty {
					entries = append(entries, &entry{rel: rel, abs: p, typ: repo.NodeDir, info: info})
					return filepath.SkipDir
				}
			} else if strings.HasPrefix(d.Name(), "pgsql_tmp") {
				if isDir {
					return filepath.SkipDir
				}
				return nil
			}
			switch {
			case isDir:
				entries = append(entries, &entry{rel: rel, abs: p, typ: repo.NodeDir, info: info})
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return fmt.Errorf("scan %s: %w", p, err)
				}
				dir, name := filepath.Split(rel)
				if ts, ok := tsByOID[name]; ok && relRoot == "" && dir == "pg_tblspc/" {
					// A tablespace: record the link and store its content
					// below it, so restore can put it anywhere.
					entries = append(entries, &entry{rel: rel, abs: p, typ: repo.NodeSymlink, info: info, link: ts.Location})
					return walk(ts.Location, rel)
				}
				if relRoot == "" && rel == "pg_wal" {
					// pg_wal moved elsewhere with initdb -X: its content is
					// never backed up, so a plain directory restores it.
					entries = append(entries, &entry{rel: rel, abs: p, typ: repo.NodeDir, info: info})
					return nil
				}
				entries = append(entries, &entry{rel: rel, abs: p, typ: repo.NodeSymlink, info: info, link: target})
			case info.Mode().IsRegular():
				entries = append(entries, &entry{rel: rel, abs: p, typ: repo.NodeFile, info: info})
			}
			return nil
		})
	}
	if err := walk(b.opts.PGData, ""); err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if e.typ == repo.NodeFile {
			files = append(files, e.rel)
		}
	}
	drop := UnloggedRelations(files)
	kept := entries[:0]
	for _, e := range entries {
		if !drop[e.rel] {
			kept = append(kept, e)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].rel < kept[j].rel })
	for _, e := range kept {
		if e.typ == repo.NodeFile {
			b.prog.Files++
			b.prog.BytesTotal += e.info.Size()
		}
	}
	return kept, nil
}

// matchParent walks the parent's tree beside the scan (both are sorted)
// and marks files unchanged since the parent, which an incremental backup
// does not read again.
func (b *backup) matchParent(ctx context.Context, idx *repo.Index, parent *repo.Snapshot, entries []*entry) error {
	tr := b.r.NewTreeReader(idx, parent.Tree)
	pn := tr.Next(ctx)
	// A file changed at or after the moment the parent started reading may
	// have been copied before the change; only older files are reused.
	cutoff := parent.StartTime.Add(-time.Second).UnixNano()
	for _, e := range entries {
		for pn != nil && pn.Path < e.rel {
			pn = tr.Next(ctx)
		}
		if pn == nil {
			break
		}
		if pn.Path != e.rel || pn.Type != repo.NodeFile || e.typ != repo.NodeFile {
			continue
		}
		e.prev = pn
		mt := e.info.ModTime().UnixNano()
		if !b.opts.Full && pn.Size == e.info.Size() && pn.MTime == mt && mt < cutoff && e.rel != "global/pg_control" {
			e.reuse = pn
		}
	}
	if err := tr.Err(); err != nil {
		return fmt.Errorf("read parent snapshot %s: %w", parent.ID.Short(), err)
	}
	return nil
}

// partSize is the most of one file a worker reads as one job, so that two
// cores share a large relation file.
const partSize = 64 << 20

type part struct {
	e      *entry
	fileNo int
	no     int
	off    int64
	length int64 // read up to this many bytes; the last part reads to EOF
	last   bool
}

type fileResult struct {
	parts   [][]repo.Block
	short   []bool // part ended before its length: the file shrank
	pending int32
	err     error
	size    int64
}

// copyFiles reads the files with parallel workers and writes the tree in
// path order as files complete.
func (b *backup) copyFiles(ctx context.Context, entries []*entry) ([]repo.ID, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &copier{b: b, entries: entries, results: make([]*fileResult, len(entries)), read: make([]bool, len(entries)),
		jobs: make(chan part, b.opts.Workers*2), done: make(chan int, 1024), slots: make(chan struct{}, filesInFlight)}
	for i, e := range entries {
		c.read[i] = e.typ == repo.NodeFile && e.reuse == nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.dispatch(gctx) })
	var workers sync.WaitGroup
	for w := 0; w < b.opts.Workers; w++ {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			return c.work(gctx)
		})
	}
	go func() {
		workers.Wait()
		close(c.done)
	}()
	tree, count, emitErr := c.emitTree(gctx)
	// A failed reader cancels gctx, and the tree then stops short: the
	// reader's error is the one to report.
	groupFailed := gctx.Err() != nil
	if emitErr != nil {
		// Stop the dispatcher and the workers, and let them finish.
		cancel()
		for range c.done {
		}
	}
	werr := g.Wait()
	if werr != nil && (emitErr == nil || groupFailed) {
		return nil, 0, werr
	}
	if emitErr != nil {
		return nil, 0, emitErr
	}
	return tree, count, nil
}

// filesInFlight bounds the files read but not yet written to the tree, so
// memory stays flat whatever the number of files.
const filesInFlight = 256

// copier is the state one copyFiles run shares between its dispatcher,
// its workers and the tree emitter.
type copier struct {
	b       *backup
	entries []*entry
	results []*fileResult // per entry, set by the dispatcher before its parts are sent
	// read tells the entries whose files are read, decided before the
	// copy starts: the emitter drops an entry's parent node once it is in
	// the tree, possibly before the dispatcher gets to the entry.
	read  []bool
	jobs  chan part
	done  chan int // entry numbers whose parts are all read
	slots chan struct{}
}

// dispatch cuts the files to read into parts, in path order.
func (c *copier) dispatch(ctx context.Context) error {
	defer close(c.jobs)
	for i, e := range c.entries {
		if !c.read[i] {
			continue
		}
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := int((e.info.Size() + partSize - 1) / partSize)
		if n == 0 || c.b.walOnly(e) {
			n = 1 // a WAL-planned file is read as one job: a few blocks of it
		}
		c.results[i] = &fileResult{parts: make([][]repo.Block, n), short: make([]bool, n), pending: int32(n)}
		for p := 0; p < n; p++ {
			pt := part{e: e, fileNo: i, no: p, off: int64(p) * partSize, length: partSize, last: p == n-1}
			select {
			case c.jobs <- pt:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// work reads parts until there are none left.
func (c *copier) work(ctx context.Context) error {
	sink := c.b.w.NewSink()
	buf := make([]byte, readChunk/c.b.opts.BlockSize*c.b.opts.BlockSize)
	for pt := range c.jobs {
		read := c.b.readPart
		if c.b.walOnly(pt.e) {
			read = c.b.readWALPart
		}
		blocks, short, err := read(ctx, sink, pt, buf)
		if err != nil {
			return err
		}
		res := c.results[pt.fileNo]
		res.parts[pt.no] = blocks
		res.short[pt.no] = short
		if atomic.AddInt32(&res.pending, -1) == 0 {
			select {
			case c.done <- pt.fileNo:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return sink.Flush(ctx)
}

// emitTree adds the nodes to the tree in path order as their files
// complete, and closes the tree once every entry is in it.
func (c *copier) emitTree(ctx context.Context) ([]repo.ID, int, error) {
	tw := c.b.w.NewTreeWriter()
	next := 0
	finished := make(map[int]bool)
	emit := func() error {
		for ; next < len(c.entries); next++ {
			e := c.entries[next]
			read := c.read[next]
			if read && !finished[next] {
				return nil
			}
			n := c.b.node(e)
			if read {
				n.Blocks, n.Size = assemble(c.results[next])
				c.results[next] = nil
				delete(finished, next)
				<-c.slots
			}
			prev := e.prev
			if c.b.opts.Full {
				prev = nil // a full backup stands on no earlier tree
			}
			if err := tw.AddAfter(ctx, n, prev); err != nil {
				return err
			}
			// The parent's block lists are the bulk of an incremental's
			// memory: each goes once its file is in the tree.
			e.prev, e.reuse = nil, nil
		}
		return nil
	}
	if err := emit(); err != nil {
		return nil, 0, err
	}
	for fileNo := range c.done {
		finished[fileNo] = true
		if err := emit(); err != nil {
			return nil, 0, err
		}
	}
	if next != len(c.entries) {
		return nil, 0, fmt.Errorf("backup stopped at %s", c.entries[next].rel)
	}
	return tw.Close(ctx)
}

// assemble joins the parts of a file; a part cut short means the file
// shrank while being read, and the content ends there (WAL replay
// restores whatever the truncation removed or re-added).
func assemble(res *fileResult) ([]repo.Block, int64) {
	var blocks []repo.Block
	var size int64
	for i, p := range res.parts {
		blocks = append(blocks, p...)
		for _, bl := range p {
			size += int64(bl.Len)
		}
		if res.short[i] {
			break
		}
	}
	return blocks, size
}

func (b *backup) node(e *entry) *repo.Node {
	st, _ := e.info.Sys().(*syscall.Stat_t)
	n := &repo.Node{Path: e.rel, Type: e.typ, Mode: e.info.Mode().Perm() | e.info.Mode()&(fs.ModeSetgid|fs.ModeSetuid|fs.ModeSticky),
		MTime: e.info.ModTime().UnixNano(), Link: e.link}
	if st != nil {
		n.UID, n.GID = st.Uid, st.Gid
	}
	if e.reuse != nil {
		n.Blocks = e.reuse.Blocks
		n.Size = e.reuse.Size
		atomic.AddInt64(&b.prog.FilesDone, 1)
	}
	return n
}

// readChunk is how much of a file one read call takes: blocks are hashed
// one by one, but 8 KiB reads would cost a system call each.
const readChunk = 1 << 20

// readPart reads one part of a file, stores the blocks the parent does not
// have at the same place, and checks page checksums. buf holds readChunk
// bytes, a multiple of the block size.
func (b *backup) readPart(ctx context.Context, sink *repo.Sink, pt part, buf []byte) ([]repo.Block, bool, error) {
	f, err := os.Open(pt.e.abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil // dropped during the backup; WAL replay knows
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", pt.e.rel, err)
	}
	defer f.Close()
	rel, isRel := ParseRelationFile(pt.e.rel)
	checkPages := isRel && b.si.DataChecksums
	bs := int64(b.opts.BlockSize)
	var blocks []repo.Block
	off := pt.off
	end := pt.off + pt.length
	short := false
	for pt.last || off < end {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		want := int64(len(buf))
		if !pt.last && end-off < want {
			want = end - off
		}
		n, err := f.ReadAt(buf[:want], off)
		if err != nil && err != io.EOF {
			return nil, false, fmt.Errorf("read %s: %w", pt.e.rel, err)
		}
		for i := 0; i < n; i += int(bs) {
			data := buf[i:min(i+int(bs), n)]
			if checkPages {
				b.checkPages(pt.e.rel, rel, off+int64(i), data)
			}
			id := b.w.BlobID(data)
			bi := int((off + int64(i)) / bs)
			if b.check {
				b.noteMiss(pt.e, bi, id)
			}
			if p := pt.e.prev; p == nil || bi >= len(p.Blocks) || p.Blocks[bi].ID != id {
				if _, err := sink.SaveID(ctx, repo.DataBlob, id, data); err != nil {
					return nil, false, err
				}
			}
			blocks = append(blocks, repo.Block{ID: id, Len: uint32(len(data))})
		}
		off += int64(n)
		nr := atomic.AddInt64(&b.prog.BytesRead, int64(n))
		if b.opts.Progress != nil {
			p := b.progress()
			p.BytesRead = nr
			b.opts.Progress(p)
		}
		if int64(n) < want {
			short = !pt.last
			break
		}
	}
	if pt.last {
		atomic.AddInt64(&b.prog.FilesDone, 1)
	}
	return blocks, short, nil
}

func (b *backup) progress() BackupProgress {
	return BackupProgress{
		Files: b.prog.Files, FilesDone: atomic.LoadInt64(&b.prog.FilesDone),
		BytesTotal: b.prog.BytesTotal, BytesRead: atomic.LoadInt64(&b.prog.BytesRead),
		BytesNew: b.w.Stats().BytesNew,
	}
}

// checkPages validates the checksums of the pages in data. Pages changed
// after the backup started may be torn; WAL replay rewrites them, so they
// are not checked.
func (b *backup) checkPages(path string, rel RelationFile, off int64, data []byte) {
	const page = 8192
	blocksPerSeg := uint32(b.si.RelSegmentSize / page)
	for p := 0; p+page <= len(data); p += page {
		pg := data[p : p+page]
		if PageLSN(pg) >= b.startLSN {
			continue
		}
		blk := RelationBlockNumber(rel.Segment, uint32((off+int64(p))/page), blocksPerSeg)
		if ok, reason := VerifyPage(pg, blk); !ok {
			b.ckMu.Lock()
			b.ckFails++
			if len(b.ckErrs) < 10 {
				b.ckErrs = append(b.ckErrs, fmt.Sprintf("%s block %d: %s", path, blk, reason))
			}
			b.ckMu.Unlock()
			b.log.Warn("page checksum mismatch", "file", path, "block", blk, "reason", reason)
		}
	}
}
