package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// The WAL format of PostgreSQL 15 (src/include/access/xlog_internal.h,
// xlogrecord.h, xlogreader.c of REL_15_STABLE). Other major versions
// change the page magic, and are not read: their incrementals compare
// every changed file instead.
const (
	walPageMagic15       = 0xD110
	walPageSize          = 8192
	walShortHeader       = 24 // MAXALIGN(sizeof(XLogPageHeaderData))
	walLongHeader        = 40 // MAXALIGN(sizeof(XLogLongPageHeaderData))
	xlpFirstIsContRecord = 0x0001
	walRecordHeader      = 24 // SizeOfXLogRecord

	xlrSpecialRelUpdate = 0x01
	xlrMaxBlockID       = 32
	xlrBlockIDDataShort = 255
	xlrBlockIDDataLong  = 254
	xlrBlockIDOrigin    = 253
	xlrBlockIDTopXID    = 252

	bkpBlockForkMask = 0x0F
	bkpBlockHasImage = 0x10
	bkpBlockSameRel  = 0x80
	bkpImageHasHole  = 0x01
	// BKPIMAGE_COMPRESS_PGLZ | _LZ4 | _ZSTD in PostgreSQL 15.
	bkpImageCompressed = 0x04 | 0x08 | 0x10

	rmXLOG  = 0
	rmXACT  = 1
	rmSMGR  = 2
	rmDBASE = 4

	xlogCheckpointShutdown = 0x00
	xlogSwitch             = 0x40
	xlogParameterChange    = 0x60
	xlogEndOfRecovery      = 0x90
	smgrCreate             = 0x10
	smgrTruncate           = 0x20
	dbaseCreateFileCopy    = 0x00
	dbaseCreateWALLog      = 0x10
	dbaseDrop              = 0x20

	// xact records (access/xact.h of REL_15_STABLE).
	xactOpMask         = 0x70
	xactHasInfo        = 0x80
	xactCommit         = 0x00
	xactAbort          = 0x20
	xactCommitPrepared = 0x30
	xactAbortPrepared  = 0x40
	xactXinfoHasDBInfo = 1 << 0
	xactXinfoHasInvals = 1 << 3

	globalTablespaceOID  = 1664
	defaultTablespaceOID = 1663
)

// RelKey names a relation's storage: tablespace, database and relfilenode,
// as WAL block references do.
type RelKey struct{ Spc, DB, Rel uint32 }

// relFork is one fork of a relation (0 main, 1 fsm, 2 vm, 3 init).
type relFork struct {
	RelKey
	Fork uint8
}

// WALRefs is what a stretch of WAL says about the relation files: the
// blocks its records reference, and what it cannot vouch for.
type WALRefs struct {
	blocks map[relFork]map[uint32]struct{}
	// unsureRel are relations created or truncated in the range: their
	// files changed in ways block references do not describe.
	unsureRel map[RelKey]bool
	// unsureDB are databases created (by file copy, or at all) or dropped
	// in the range, keyed by tablespace and database.
	unsureDB map[[2]uint32]bool
	// Whole, when not "", says why the WAL vouches for nothing in the
	// range (a restart, a parameter change, an unknown special record).
	Whole string
	// Notes name the first few creations, truncations and drops seen.
	Notes   []string
	Records int
	Refs    int // distinct blocks referenced
	// CatalogCommits holds, per database OID, the earliest commit in the
	// range that changed the system catalogs (its commit record carries
	// invalidation messages, as every such commit does at wal_level
	// replica): only such a commit can make a relation, schema or database
	// name appear. Key 0 is a commit whose database is not recorded, and a
	// zero time one whose time could not be read.
	CatalogCommits map[uint32]time.Time
	// StopAfter, when set, ends the scan at the first commit or abort
	// later than it: recovery to that time replays nothing from there on.
	StopAfter *time.Time
	stopped   bool
}

func newWALRefs() *WALRefs {
	return &WALRefs{blocks: map[relFork]map[uint32]struct{}{}, unsureRel: map[RelKey]bool{}, unsureDB: map[[2]uint32]bool{},
		CatalogCommits: map[uint32]time.Time{}}
}

// Vouches reports whether the WAL describes every change to the relation
// fork's blocks; when it does not, reason says why.
func (w *WALRefs) Vouches(k RelKey, fork uint8) (ok bool, reason string) {
	switch {
	case w.Whole != "":
		return false, w.Whole
	case w.unsureDB[[2]uint32{k.Spc, k.DB}]:
		return false, "its database was created or dropped in the WAL range"
	case w.unsureRel[k]:
		return false, "the relation was created or truncated in the WAL range"
	case fork != 0:
		// Free space map updates are not WAL-logged, and clearing
		// visibility map bits is replayed from heap records that do not
		// reference the map's block.
		return false, "FSM, VM and init forks are not fully WAL-logged"
	}
	return true, ""
}

// Blocks returns the referenced blocks of a relation fork, as a set.
func (w *WALRefs) Blocks(k RelKey, fork uint8) map[uint32]struct{} {
	return w.blocks[relFork{k, fork}]
}

// Referenced reports whether a block is referenced.
func (w *WALRefs) Referenced(k RelKey, fork uint8, blk uint32) bool {
	_, ok := w.blocks[relFork{k, fork}][blk]
	return ok
}

func (w *WALRefs) add(k RelKey, fork uint8, blk uint32) {
	rf := relFork{k, fork}
	m := w.blocks[rf]
	if m == nil {
		m = map[uint32]struct{}{}
		w.blocks[rf] = m
	}
	if _, ok := m[blk]; !ok {
		m[blk] = struct{}{}
		w.Refs++
	}
}

// RelKeyOf maps a data-directory path of a relation file to the key WAL
// block references use, its fork number and its segment.
func RelKeyOf(relPath string) (k RelKey, fork uint8, seg uint32, ok bool) {
	rf, ok := ParseRelationFile(relPath)
	if !ok {
		return RelKey{}, 0, 0, false
	}
	switch rf.Fork {
	case "":
		fork = 0
	case "fsm":
		fork = 1
	case "vm":
		fork = 2
	case "init":
		fork = 3
	default:
		return RelKey{}, 0, 0, false
	}
	var parts []string
	start := 0
	for i := 0; i <= len(relPath); i++ {
		if i == len(relPath) || relPath[i] == '/' {
			parts = append(parts, relPath[start:i])
			start = i + 1
		}
	}
	k.Rel = rf.RelFileNode
	switch parts[0] {
	case "global":
		k.Spc = globalTablespaceOID
	case "base":
		k.Spc = defaultTablespaceOID
		db, _ := parseOID(parts[1])
		k.DB = db
	case "pg_tblspc":
		spc, _ := parseOID(parts[1])
		db, _ := parseOID(parts[3])
		k.Spc, k.DB = spc, db
	default:
		return RelKey{}, 0, 0, false
	}
	return k, fork, rf.Segment, true
}

// walSegmentSource returns the content of segment segNo of the range's
// timeline, or an error.
type walSegmentSource func(ctx context.Context, segNo uint64) ([]byte, error)

// errWALFormat marks WAL that does not parse as PostgreSQL 15 WAL.
var errWALFormat = errors.New("unexpected WAL content")

// walStream reads WAL bytes by position, one segment in memory at a time,
// checking each page header it touches.
type walStream struct {
	ctx     context.Context
	get     walSegmentSource
	segSize uint64
	segNo   uint64
	seg     []byte
	loaded  bool
}

func (s *walStream) load(lsn uint64) error {
	segNo := lsn / s.segSize
	if s.loaded && segNo == s.segNo {
		return nil
	}
	data, err := s.get(s.ctx, segNo)
	if err != nil {
		return err
	}
	if uint64(len(data)) != s.segSize {
		return fmt.Errorf("segment %d has %d bytes, want %d: %w", segNo, len(data), s.segSize, errWALFormat)
	}
	s.seg, s.segNo, s.loaded = data, segNo, true
	return nil
}

// page checks the header of the page starting at lsn and returns its
// info flags, continuation length and header size.
func (s *walStream) page(lsn uint64) (info uint16, remLen uint32, hdr uint64, err error) {
	if err := s.load(lsn); err != nil {
		return 0, 0, 0, err
	}
	p := s.seg[lsn%s.segSize:]
	magic := binary.LittleEndian.Uint16(p[0:])
	info = binary.LittleEndian.Uint16(p[2:])
	addr := binary.LittleEndian.Uint64(p[8:])
	remLen = binary.LittleEndian.Uint32(p[16:])
	if magic != walPageMagic15 {
		return 0, 0, 0, fmt.Errorf("page at %s: magic %#x, want %#x (PostgreSQL 15): %w", lifeboat.LSN(lsn), magic, walPageMagic15, errWALFormat)
	}
	if addr != lsn {
		return 0, 0, 0, fmt.Errorf("page at %s claims address %s: %w", lifeboat.LSN(lsn), lifeboat.LSN(addr), errWALFormat)
	}
	hdr = walShortHeader
	if info&xlpLongHeader != 0 {
		hdr = walLongHeader
	}
	return info, remLen, hdr, nil
}

// bytes returns n bytes at lsn, which must not cross a page.
func (s *walStream) bytes(lsn uint64, n uint64) ([]byte, error) {
	if err := s.load(lsn); err != nil {
		return nil, err
	}
	off := lsn % s.segSize
	return s.seg[off : off+n], nil
}

func maxAlign(x uint64) uint64 { return (x + 7) &^ 7 }

// ScanWALRefs reads the WAL from the start of the segment holding start
// up to the last record that begins before end, and collects the blocks
// its records reference. Records before start are read too (the segment
// is read from its first record): they only add blocks, which errs on
// the side of reading more. An error means the WAL could not be read or
// parsed; the caller then trusts none of it.
func ScanWALRefs(ctx context.Context, get walSegmentSource, segSize uint64, start, end lifeboat.LSN) (*WALRefs, error) {
	return scanWAL(ctx, get, segSize, start, end, newWALRefs())
}

// errWALEnd, from a segment source, says the WAL ends before that
// segment: the scan stops there without error, as a recovery that runs
// out of WAL does (a record cut off by the end is not replayed either).
var errWALEnd = errors.New("the archived WAL ends")

func scanWAL(ctx context.Context, get walSegmentSource, segSize uint64, start, end lifeboat.LSN, w *WALRefs) (*WALRefs, error) {
	s := &walStream{ctx: ctx, get: get, segSize: segSize}
	pos := uint64(start) - uint64(start)%segSize
	// The segment's first page may continue a record from the previous
	// segment: skip it, over as many pages as it spans.
	for {
		info, remLen, hdr, err := s.page(pos)
		if err != nil {
			return nil, err
		}
		if info&xlpFirstIsContRecord == 0 {
			pos += hdr
			break
		}
		if uint64(remLen) <= walPageSize-hdr {
			pos += hdr + maxAlign(uint64(remLen))
			break
		}
		pos += walPageSize
	}
	for pos < uint64(end) && !w.stopped {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if pos%walPageSize == 0 {
			_, _, hdr, err := s.page(pos)
			if errors.Is(err, errWALEnd) {
				return w, nil
			}
			if err != nil {
				return nil, err
			}
			pos += hdr
			continue
		}
		if walPageSize-pos%walPageSize < 4 {
			return nil, fmt.Errorf("record at %s: no room for its length: %w", lifeboat.LSN(pos), errWALFormat)
		}
		lb, err := s.bytes(pos, 4)
		if err != nil {
			return nil, err
		}
		totLen := uint64(binary.LittleEndian.Uint32(lb))
		if totLen < walRecordHeader || totLen > 1<<30 {
			return nil, fmt.Errorf("record at %s: length %d (the WAL ends before %s?): %w", lifeboat.LSN(pos), totLen, end, errWALFormat)
		}
		rec, next, err := s.record(pos, totLen)
		if errors.Is(err, errWALEnd) {
			return w, nil
		}
		if err != nil {
			return nil, err
		}
		switchSeg, err := w.parseRecord(rec, pos >= uint64(start))
		if err != nil {
			return nil, fmt.Errorf("record at %s: %w", lifeboat.LSN(pos), err)
		}
		w.Records++
		if switchSeg {
			// The rest of the segment is padding.
			next = (pos/segSize + 1) * segSize
		}
		pos = maxAlign(next)
	}
	return w, nil
}

// record gathers a record of totLen bytes starting at pos across pages,
// checks its CRC, and returns it with the position after it.
func (s *walStream) record(pos, totLen uint64) ([]byte, uint64, error) {
	rec := make([]byte, 0, totLen)
	p := pos
	for uint64(len(rec)) < totLen {
		pageEnd := (p/walPageSize + 1) * walPageSize
		n := min(totLen-uint64(len(rec)), pageEnd-p)
		b, err := s.bytes(p, n)
		if err != nil {
			return nil, 0, err
		}
		rec = append(rec, b...)
		p += n
		if uint64(len(rec)) < totLen {
			info, remLen, hdr, err := s.page(p)
			if err != nil {
				return nil, 0, err
			}
			if info&xlpFirstIsContRecord == 0 || uint64(remLen) != totLen-uint64(len(rec)) {
				return nil, 0, fmt.Errorf("record at %s: page %s does not continue it: %w", lifeboat.LSN(pos), lifeboat.LSN(p), errWALFormat)
			}
			p += hdr
		}
	}
	// xl_crc covers the body, then the header up to the CRC field.
	crc := crc32.Update(0, crcTable, rec[walRecordHeader:])
	crc = crc32.Update(crc, crcTable, rec[:20])
	if crc != binary.LittleEndian.Uint32(rec[20:]) {
		return nil, 0, fmt.Errorf("record at %s: CRC mismatch: %w", lifeboat.LSN(pos), errWALFormat)
	}
	return rec, p, nil
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// parseRecord notes the blocks a record references and, for a record
// inRange (at or after the range's start), what it changes beyond them:
// a record before the start, read because its segment is, may add blocks
// but its restarts and truncations are already in the parent. It reports
// whether the record switches to the next segment.
func (w *WALRefs) parseRecord(rec []byte, inRange bool) (bool, error) {
	info := rec[16]
	rmid := rec[17]
	totLen := uint64(len(rec))
	off := uint64(walRecordHeader)
	var datatotal, mainLen uint64
	var rel RelKey
	haveRel := false
	need := func(n uint64) error {
		if off+n > totLen {
			return fmt.Errorf("block header runs past the record: %w", errWALFormat)
		}
		return nil
	}
	for totLen-off > datatotal {
		if err := need(1); err != nil {
			return false, err
		}
		id := rec[off]
		off++
		if id == xlrBlockIDDataShort {
			if err := need(1); err != nil {
				return false, err
			}
			mainLen = uint64(rec[off])
			off++
			datatotal += mainLen
			break
		}
		if id == xlrBlockIDDataLong {
			if err := need(4); err != nil {
				return false, err
			}
			mainLen = uint64(binary.LittleEndian.Uint32(rec[off:]))
			off += 4
			datatotal += mainLen
			break
		}
		switch {
		case id == xlrBlockIDOrigin:
			off += 2
			continue
		case id == xlrBlockIDTopXID:
			off += 4
			continue
		case id > xlrMaxBlockID:
			return false, fmt.Errorf("block id %d: %w", id, errWALFormat)
		}
		if err := need(3); err != nil {
			return false, err
		}
		flags := rec[off]
		datatotal += uint64(binary.LittleEndian.Uint16(rec[off+1:]))
		off += 3
		if flags&bkpBlockHasImage != 0 {
			if err := need(5); err != nil {
				return false, err
			}
			datatotal += uint64(binary.LittleEndian.Uint16(rec[off:]))
			bimg := rec[off+4]
			off += 5
			if bimg&bkpImageHasHole != 0 && bimg&bkpImageCompressed != 0 {
				off += 2
			}
		}
		if flags&bkpBlockSameRel == 0 {
			if err := need(12); err != nil {
				return false, err
			}
			rel = RelKey{Spc: binary.LittleEndian.Uint32(rec[off:]), DB: binary.LittleEndian.Uint32(rec[off+4:]), Rel: binary.LittleEndian.Uint32(rec[off+8:])}
			off += 12
			haveRel = true
		} else if !haveRel {
			return false, fmt.Errorf("BKPBLOCK_SAME_REL without a previous relation: %w", errWALFormat)
		}
		if err := need(4); err != nil {
			return false, err
		}
		w.add(rel, flags&bkpBlockForkMask, binary.LittleEndian.Uint32(rec[off:]))
		off += 4
	}
	if off+datatotal != totLen {
		return false, fmt.Errorf("headers and data do not add up to the record length: %w", errWALFormat)
	}
	main := rec[totLen-mainLen:]
	u32 := func(i int) uint32 {
		if len(main) < i+4 {
			return 0
		}
		return binary.LittleEndian.Uint32(main[i:])
	}
	kind := info & 0xF0
	if !inRange {
		return rmid == rmXLOG && kind == xlogSwitch, nil
	}
	switch rmid {
	case rmXLOG:
		switch kind {
		case xlogSwitch:
			return true, nil
		case xlogCheckpointShutdown, xlogEndOfRecovery:
			// While the server was down, or before recovery ended, files
			// may have changed without WAL (pg_checksums, pg_resetwal,
			// an operator's copy).
			w.setWhole("the server shut down or recovered from a crash in the WAL range")
		case xlogParameterChange:
			w.setWhole("wal_level or another WAL parameter changed in the WAL range")
		}
	case rmSMGR:
		if len(main) < 16 {
			return false, fmt.Errorf("short smgr record: %w", errWALFormat)
		}
		switch kind {
		case smgrCreate:
			w.unsureRel[RelKey{u32(0), u32(4), u32(8)}] = true
			w.note("relation %d/%d/%d created", u32(0), u32(4), u32(8))
		case smgrTruncate: // xl_smgr_truncate: blkno, then the relation
			w.unsureRel[RelKey{u32(4), u32(8), u32(12)}] = true
			w.note("relation %d/%d/%d truncated", u32(4), u32(8), u32(12))
		default:
			w.setWhole(fmt.Sprintf("unknown smgr record %#x", kind))
		}
	case rmDBASE:
		switch kind {
		case dbaseCreateFileCopy, dbaseCreateWALLog: // db_id, tablespace_id first
			if len(main) < 8 {
				return false, fmt.Errorf("short dbase record: %w", errWALFormat)
			}
			w.unsureDB[[2]uint32{u32(4), u32(0)}] = true
			how := "by file copy"
			if kind == dbaseCreateWALLog {
				how = "WAL-logged"
			}
			w.note("database %d/%d created %s", u32(4), u32(0), how)
		case dbaseDrop: // db_id, ntablespaces, tablespace_ids[]
			n := int(u32(4))
			if len(main) < 8+4*n {
				return false, fmt.Errorf("short dbase drop record: %w", errWALFormat)
			}
			for i := 0; i < n; i++ {
				w.unsureDB[[2]uint32{u32(8 + 4*i), u32(0)}] = true
			}
			w.note("database %d dropped", u32(0))
		default:
			w.setWhole(fmt.Sprintf("unknown dbase record %#x", kind))
		}
	case rmXACT:
		// Commit and abort records carry the relations they drop: their
		// files are gone, and a relfilenode used again is created anew
		// with an smgr record.
		w.xact(info, main)
	default:
		if info&xlrSpecialRelUpdate != 0 {
			w.setWhole(fmt.Sprintf("a record of resource manager %d changes relation files beyond its block references", rmid))
		}
	}
	return false, nil
}

// xact notes a commit that changed the catalogs, and ends the scan at
// the first commit or abort after StopAfter. The main data begins with
// xl_xact_commit (or _abort): the time, then xinfo when XLOG_XACT_HAS_INFO
// is set, then the database when XACT_XINFO_HAS_DBINFO is.
func (w *WALRefs) xact(info uint8, main []byte) {
	op := info & xactOpMask
	if op != xactCommit && op != xactCommitPrepared && op != xactAbort && op != xactAbortPrepared {
		return
	}
	var at time.Time
	if len(main) >= 8 {
		at = pgEpoch.Add(time.Duration(int64(binary.LittleEndian.Uint64(main))) * time.Microsecond)
	}
	if w.StopAfter != nil && len(main) >= 8 && at.After(*w.StopAfter) {
		w.stopped = true
		return
	}
	if op != xactCommit && op != xactCommitPrepared {
		return
	}
	if info&xactHasInfo == 0 {
		return
	}
	if len(main) < 12 {
		w.catalogCommit(0, time.Time{})
		return
	}
	xinfo := binary.LittleEndian.Uint32(main[8:])
	if xinfo&xactXinfoHasInvals == 0 {
		return
	}
	var db uint32
	if xinfo&xactXinfoHasDBInfo != 0 && len(main) >= 16 {
		db = binary.LittleEndian.Uint32(main[12:])
	}
	w.catalogCommit(db, at)
}

func (w *WALRefs) catalogCommit(db uint32, at time.Time) {
	if old, ok := w.CatalogCommits[db]; !ok || at.Before(old) {
		w.CatalogCommits[db] = at
	}
}

// pgEpoch is where PostgreSQL's timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (w *WALRefs) note(format string, args ...any) {
	if len(w.Notes) < 20 {
		w.Notes = append(w.Notes, fmt.Sprintf(format, args...))
	}
}

func (w *WALRefs) setWhole(reason string) {
	if w.Whole == "" {
		w.Whole = reason
	}
}
