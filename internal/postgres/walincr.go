package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// EnvCheckBlocks, set to 1, makes every incremental backup run as with
// --check-blocks. The test suites set it so that each incremental they
// take proves the WAL-derived block set against a full read.
const EnvCheckBlocks = "LIFEBOAT_CHECK_BLOCKS"

// WALBlocksInfo tells how an incremental backup found its changed blocks.
type WALBlocksInfo struct {
	// Fallback, when not "", says why the WAL since the parent vouched for
	// nothing: every changed file was compared block by block instead.
	Fallback string `json:"fallback,omitempty"`
	// FilesWAL were read only at the blocks the WAL references (and past
	// the parent's end); FilesSkipped were referenced nowhere and not read.
	FilesWAL     int `json:"files_wal"`
	FilesSkipped int `json:"files_skipped"`
	// FilesCompared are relation files the WAL could not vouch for, read
	// whole; the first few are named with the reason in Compared.
	FilesCompared int      `json:"files_compared"`
	Compared      []string `json:"compared,omitempty"`
	// Notes name what the WAL shows beyond block references: relations
	// and databases created, truncated or dropped (the first few).
	Notes      []string `json:"notes,omitempty"`
	BlocksRead int      `json:"blocks_read"` // repository blocks read by WAL reference
	Referenced int      `json:"referenced"`  // distinct pages the WAL references
	Records    int      `json:"records"`     // WAL records read
	Checked    bool     `json:"checked"`     // --check-blocks compared the set with a full read
}

// walPlan is what the WAL says about one relation file of an incremental.
type walPlan struct {
	key  RelKey
	fork uint8
	seg  uint32
	read []int // repository block indices below tail to read, ascending
	in   map[int]bool
	tail int // blocks from here on are read whole: the file grew
}

// missedBlock is a block that a full read found changed although the WAL
// before the backup's start does not reference it.
type missedBlock struct {
	path  string
	plan  *walPlan
	index int // repository block index in the file
}

// planWAL decides, for every relation file the parent also had, which
// blocks to read: those the WAL from the parent's start to this backup's
// start references. Blocks changed after this backup's start need no
// care: the backup is restored by replaying the WAL from its start, and
// that replay rewrites them (full-page images after the start checkpoint).
func (b *backup) planWAL(ctx context.Context, parent *repo.Snapshot, tli uint32, entries []*entry) *WALBlocksInfo {
	info := &WALBlocksInfo{}
	fallback := func(reason string) *WALBlocksInfo {
		info.Fallback = reason
		b.log.Info("incremental compares every changed file: the WAL cannot vouch for the changes", "asset", b.opts.Asset, "reason", reason)
		return info
	}
	pi, err := Info(parent)
	switch {
	case err != nil:
		return fallback(err.Error())
	case pi.Timeline != tli:
		return fallback(fmt.Sprintf("the parent is on timeline %d, the server on %d", pi.Timeline, tli))
	case b.si.VersionNum/10000 != 15:
		return fallback(fmt.Sprintf("WAL block references are read for PostgreSQL 15 only, the server runs %d", b.si.VersionNum))
	case b.si.BlockSize != walPageSize:
		return fallback(fmt.Sprintf("the server's page size is %d, not %d", b.si.BlockSize, walPageSize))
	case pi.DataChecksums != b.si.DataChecksums:
		// pg_checksums rewrites every page offline, without WAL.
		return fallback("data checksums were switched since the parent")
	case pi.StartLSN > b.startLSN || pi.StartLSN == 0:
		return fallback(fmt.Sprintf("the parent's start %s is not before this backup's %s", pi.StartLSN, b.startLSN))
	}
	src, err := b.walSource(ctx, tli, pi.StartLSN, b.startLSN)
	if err != nil {
		return fallback(err.Error())
	}
	refs, err := ScanWALRefs(ctx, src, b.si.WALSegmentSize, pi.StartLSN, b.startLSN)
	if err != nil {
		return fallback(fmt.Sprintf("reading the WAL from %s to %s: %v", pi.StartLSN, b.startLSN, err))
	}
	info.Referenced, info.Records, info.Notes = refs.Refs, refs.Records, refs.Notes
	if refs.Whole != "" {
		return fallback(refs.Whole)
	}
	bs := int64(b.opts.BlockSize)
	blocksPerSeg := uint32(b.si.RelSegmentSize / walPageSize)
	for _, e := range entries {
		if e.typ != repo.NodeFile || e.prev == nil || e.reuse != nil {
			continue // new files are read whole, untouched ones reused
		}
		key, fork, seg, ok := RelKeyOf(e.rel)
		if !ok || fork != 0 {
			// Not a relation's main fork (FSM, VM and init forks are
			// not fully WAL-logged): compared block by block, as
			// always, and not listed.
			continue
		}
		compare := func(reason string) {
			info.FilesCompared++
			if len(info.Compared) < 20 {
				info.Compared = append(info.Compared, e.rel+": "+reason)
			}
		}
		if ok, why := refs.Vouches(key, fork); !ok {
			compare(why)
			continue
		}
		prev := e.prev
		if !consistentBlocks(prev, bs) {
			compare("the parent's block list does not match its size")
			continue
		}
		if e.info.Size() < prev.Size {
			compare("the file is shorter than in the parent")
			continue
		}
		p := &walPlan{key: key, fork: fork, seg: seg, tail: int(prev.Size / bs), in: map[int]bool{}}
		for blk := range refs.Blocks(key, fork) {
			if blk/blocksPerSeg != seg {
				continue
			}
			page := int64(blk % blocksPerSeg)
			for i := page * walPageSize / bs; i <= ((page+1)*walPageSize-1)/bs; i++ {
				if int(i) < p.tail && !p.in[int(i)] {
					p.in[int(i)] = true
					p.read = append(p.read, int(i))
				}
			}
		}
		sort.Ints(p.read)
		info.BlocksRead += len(p.read)
		if len(p.read) == 0 && e.info.Size() == prev.Size && !b.check {
			e.reuse = prev
			info.FilesSkipped++
			continue
		}
		e.wal = p
		info.FilesWAL++
	}
	b.log.Info("incremental reads the blocks the WAL references", "asset", b.opts.Asset, "from", pi.StartLSN.String(), "to", b.startLSN.String(),
		"records", refs.Records, "pages", refs.Refs, "files_wal", info.FilesWAL, "files_skipped", info.FilesSkipped, "files_compared", info.FilesCompared,
		"blocks_read", info.BlocksRead, "compared", strings.Join(info.Compared, "; "), "notes", strings.Join(info.Notes, "; "))
	return info
}

// consistentBlocks reports whether a parent node's blocks are all full
// but the last, and add up to its size.
func consistentBlocks(n *repo.Node, bs int64) bool {
	var size int64
	for i, bl := range n.Blocks {
		if int64(bl.Len) != bs && i != len(n.Blocks)-1 || bl.Len == 0 {
			return false
		}
		size += int64(bl.Len)
	}
	return size == n.Size
}

// walSource returns the segments from start to end: from the repository,
// and those not archived yet (the archiver runs behind, and the segment of
// this backup's start is still being written) from pg_wal. A segment
// missing from the repository while a later one is archived is a gap in
// the archive, and the WAL then vouches for nothing.
func (b *backup) walSource(ctx context.Context, tli uint32, start, end lifeboat.LSN) (walSegmentSource, error) {
	segSize := b.si.WALSegmentSize
	first, last := SegmentForLSN(start, segSize), SegmentForLSN(end, segSize)
	name := func(segNo uint64) WALName {
		return WALName{Kind: WALSegment, TLI: tli, SegNo: segNo, SegSize: segSize}
	}
	archived := int64(-1)
	for seg := last; seg >= first; seg-- {
		ok, err := b.r.HasNamed(ctx, walArea, b.opts.Asset, walRel(name(seg)))
		if err != nil {
			return nil, err
		}
		if ok {
			archived = int64(seg)
			break
		}
		if seg == 0 {
			break
		}
	}
	return func(ctx context.Context, segNo uint64) ([]byte, error) {
		n := name(segNo)
		for try := 0; try < 2; try++ {
			data, err := b.r.GetNamed(ctx, walArea, b.opts.Asset, walRel(n))
			if err == nil {
				return data, nil
			}
			if !errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("WAL segment %s: %w", n, err)
			}
			if int64(segNo) <= archived {
				return nil, fmt.Errorf("WAL segment %s is not in the repository although later ones are: %w", n, ErrWALGap)
			}
			data, err = os.ReadFile(filepath.Join(b.opts.PGData, "pg_wal", n.String()))
			if err == nil {
				return data, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("WAL segment %s: %w", n, err)
			}
			// Archived and recycled between the two reads: the
			// repository has it now.
		}
		return nil, fmt.Errorf("WAL segment %s is neither in the repository nor in pg_wal: %w", n, ErrWALNotFound)
	}, nil
}

// readWALPart reads the blocks of a file the WAL references, and the
// blocks past the parent's end, taking the others from the parent.
func (b *backup) readWALPart(ctx context.Context, sink *repo.Sink, pt part, buf []byte) ([]repo.Block, bool, error) {
	f, err := os.Open(pt.e.abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil // dropped during the backup; WAL replay knows
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", pt.e.rel, err)
	}
	defer f.Close()
	p, prev := pt.e.wal, pt.e.prev.Blocks
	bs := b.opts.BlockSize
	per := len(buf) / bs
	blocks := make([]repo.Block, 0, len(prev))
	var nread int64
	done := func() {
		atomic.AddInt64(&b.prog.FilesDone, 1)
		nr := atomic.AddInt64(&b.prog.BytesRead, nread)
		if b.opts.Progress != nil {
			pr := b.progress()
			pr.BytesRead = nr
			b.opts.Progress(pr)
		}
	}
	defer done()
	rel, _ := ParseRelationFile(pt.e.rel)
	// store hashes and stores the blocks of data read at block index bi.
	store := func(bi int, data []byte) error {
		if b.si.DataChecksums {
			b.checkPages(pt.e.rel, rel, int64(bi)*int64(bs), data)
		}
		for i := 0; i < len(data); i += bs {
			chunk := data[i:min(i+bs, len(data))]
			id := b.w.BlobID(chunk)
			if bi >= len(prev) || prev[bi].ID != id {
				if _, err := sink.SaveID(ctx, repo.DataBlob, id, chunk); err != nil {
					return err
				}
			}
			blocks = append(blocks, repo.Block{ID: id, Len: uint32(len(chunk))})
			bi++
		}
		return nil
	}
	next := 0
	for i := 0; i < len(p.read); {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		start := p.read[i]
		n := 1
		for i+n < len(p.read) && p.read[i+n] == start+n && n < per {
			n++
		}
		i += n
		blocks = append(blocks, prev[next:start]...)
		want := n * bs
		got, err := f.ReadAt(buf[:want], int64(start)*int64(bs))
		if err != nil && err != io.EOF {
			return nil, false, fmt.Errorf("read %s: %w", pt.e.rel, err)
		}
		nread += int64(got)
		if err := store(start, buf[:got]); err != nil {
			return nil, false, err
		}
		if got < want {
			// Truncated after the backup started: the content ends here
			// and WAL replay redoes the truncation.
			return blocks, false, nil
		}
		next = start + n
	}
	blocks = append(blocks, prev[next:p.tail]...)
	off := int64(p.tail) * int64(bs)
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		got, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return nil, false, fmt.Errorf("read %s: %w", pt.e.rel, err)
		}
		nread += int64(got)
		if err := store(int(off/int64(bs)), buf[:got]); err != nil {
			return nil, false, err
		}
		off += int64(got)
		if got < len(buf) {
			return blocks, false, nil
		}
	}
}

// noteMiss records, in --check-blocks mode, a block a full read found
// changed since the parent although the WAL does not reference it.
func (b *backup) noteMiss(e *entry, bi int, id repo.ID) {
	p := e.wal
	if p == nil || bi >= p.tail || p.in[bi] || bi >= len(e.prev.Blocks) || e.prev.Blocks[bi].ID == id {
		return
	}
	b.ckMu.Lock()
	b.missed = append(b.missed, missedBlock{path: e.rel, plan: p, index: bi})
	b.ckMu.Unlock()
}

// checkMissed ends --check-blocks: a changed block the WAL before the
// start did not reference is excused only when the WAL written during the
// backup references it (it changed while being copied). Any other is a
// block the WAL-derived incremental would have missed.
func (b *backup) checkMissed(ctx context.Context, tli uint32, stop lifeboat.LSN) error {
	if len(b.missed) == 0 {
		return nil
	}
	src, err := b.walSource(ctx, tli, b.startLSN, stop)
	if err != nil {
		return fmt.Errorf("--check-blocks: %w", err)
	}
	refs, err := ScanWALRefs(ctx, src, b.si.WALSegmentSize, b.startLSN, stop)
	if err != nil {
		return fmt.Errorf("--check-blocks: read the WAL written during the backup: %w", err)
	}
	bs := int64(b.opts.BlockSize)
	blocksPerSeg := uint32(b.si.RelSegmentSize / walPageSize)
	var missed []string
	for _, m := range b.missed {
		if ok, _ := refs.Vouches(m.plan.key, m.plan.fork); !ok {
			continue
		}
		excused := false
		var pages []string
		for pg := int64(m.index) * bs / walPageSize; pg <= (int64(m.index+1)*bs-1)/walPageSize; pg++ {
			blk := m.plan.seg*blocksPerSeg + uint32(pg)
			pages = append(pages, fmt.Sprint(blk))
			if refs.Referenced(m.plan.key, m.plan.fork, blk) {
				excused = true
			}
		}
		if !excused {
			missed = append(missed, fmt.Sprintf("%s block %s", m.path, strings.Join(pages, ",")))
		}
	}
	if len(missed) == 0 {
		return nil
	}
	shown := missed
	if len(shown) > 20 {
		shown = shown[:20]
	}
	for _, s := range missed {
		b.log.Error("--check-blocks: block changed since the parent but not referenced by the WAL", "block", s)
	}
	return fmt.Errorf("--check-blocks: the WAL since the parent misses %d changed blocks (no snapshot stored): %s", len(missed), strings.Join(shown, "; "))
}

// walOnly reports whether a file is read at the WAL's blocks only.
func (b *backup) walOnly(e *entry) bool { return e.wal != nil && !b.check }

// checkBlocksWanted tells whether this backup checks the WAL-derived
// block set. The check compares whole pages, so hint-bit changes, which
// are WAL-logged only with data checksums or wal_log_hints, would show
// as misses without either: it refuses to run then.
func (b *backup) checkBlocksWanted(ctx context.Context, conn *pgx.Conn) (bool, error) {
	if !b.opts.CheckBlocks && os.Getenv(EnvCheckBlocks) != "1" {
		return false, nil
	}
	if b.si.DataChecksums {
		return true, nil
	}
	var hints string
	if err := conn.QueryRow(ctx, "SHOW wal_log_hints").Scan(&hints); err != nil {
		return false, fmt.Errorf("--check-blocks: read wal_log_hints: %w", err)
	}
	if hints != "on" {
		return false, fmt.Errorf("--check-blocks: asset %s: the cluster has neither data checksums nor wal_log_hints = on, so hint-bit changes are not WAL-logged and every one would count as a missed block; set wal_log_hints = on to check", b.opts.Asset)
	}
	return true, nil
}
