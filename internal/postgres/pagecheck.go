package postgres

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// Page header layout (PageHeaderData in storage/bufpage.h).
const (
	pdLSNOffset      = 0  // pd_lsn: xlogid uint32, xrecoff uint32
	pdChecksumOffset = 8  // pd_checksum uint16
	pdUpperOffset    = 14 // pd_upper uint16; zero on a never-initialised page
	pageHeaderSize   = 24
)

// The page checksum (storage/checksum_impl.h) runs 32 FNV-1a-like hashes
// side by side over the page seen as rows of 32 little-endian words.
const (
	checksumLanes = 32
	fnvPrime      = 16777619
	checksumRow   = checksumLanes * 4 // bytes per row of words
)

// checksumBaseOffsets are the starting values of the 32 lanes. They are
// part of the on-disk format: any other values give other checksums.
var checksumBaseOffsets = [checksumLanes]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

func checksumRound(sum, value uint32) uint32 {
	tmp := sum ^ value
	return tmp*fnvPrime ^ (tmp >> 17)
}

// PageChecksum computes the data checksum PostgreSQL stores in pd_checksum
// for page, which is block blkno of its relation fork counted across all
// 1 GB segment files. The stored checksum itself is left out of the sum.
// len(page) must be the cluster's block size (a multiple of 128 bytes).
func PageChecksum(page []byte, blkno uint32) uint16 {
	if len(page) < pageHeaderSize || len(page)%checksumRow != 0 {
		panic(fmt.Sprintf("postgres: PageChecksum: page of %d bytes is not a PostgreSQL block", len(page)))
	}
	sums := checksumBaseOffsets
	le := binary.LittleEndian
	for row := 0; row < len(page); row += checksumRow {
		for lane := range checksumLanes {
			off := row + lane*4
			v := le.Uint32(page[off:])
			if off == pdChecksumOffset {
				// pd_checksum is the low half of this word; the high half
				// is pd_flags, which is covered.
				v &^= 0xFFFF
			}
			sums[lane] = checksumRound(sums[lane], v)
		}
	}
	var result uint32
	for lane := range checksumLanes {
		// Two rounds of zeros so the last words mix into the low bits.
		s := checksumRound(checksumRound(sums[lane], 0), 0)
		result ^= s
	}
	result ^= blkno
	// Offset by one so that a valid checksum is never zero.
	return uint16(result%65535 + 1)
}

// PageLSN returns pd_lsn, the WAL position of the last change to the page.
// A page whose LSN is at or past the backup start may have been torn while
// it was copied; WAL replay rewrites it, so its checksum proves nothing.
func PageLSN(page []byte) lifeboat.LSN {
	if len(page) < 8 {
		return 0
	}
	le := binary.LittleEndian
	return lifeboat.LSN(uint64(le.Uint32(page[pdLSNOffset:]))<<32 | uint64(le.Uint32(page[pdLSNOffset+4:])))
}

// VerifyPage checks the stored checksum of page, block blkno of its fork.
// New pages (all zeros, or pd_upper still zero) carry no checksum and pass,
// as they do for PostgreSQL's own checks. The caller must not call it for
// pages with PageLSN at or after the backup start LSN.
func VerifyPage(page []byte, blkno uint32) (ok bool, reason string) {
	if len(page) < pageHeaderSize || len(page)%checksumRow != 0 {
		return false, fmt.Sprintf("page is %d bytes, not a whole PostgreSQL block", len(page))
	}
	le := binary.LittleEndian
	if le.Uint16(page[pdUpperOffset:]) == 0 {
		return true, ""
	}
	stored := le.Uint16(page[pdChecksumOffset:])
	if want := PageChecksum(page, blkno); stored != want {
		return false, fmt.Sprintf("checksum mismatch in block %d: page has %#04x, computed %#04x", blkno, stored, want)
	}
	return true, ""
}

// DefaultRelationSegmentSize is the size at which PostgreSQL splits relation
// forks into numbered files (RELSEG_SIZE, 1 GB unless built otherwise).
const DefaultRelationSegmentSize = 1 << 30

// RelationBlockNumber turns block i of segment file seg into the block
// number the checksum covers, which counts from the start of the fork.
func RelationBlockNumber(seg, i uint32, blocksPerSegment uint32) uint32 {
	return seg*blocksPerSegment + i
}

// RelationFile is a parsed path of a relation fork file.
type RelationFile struct {
	RelFileNode uint32
	Fork        string // "" for the main fork, or "fsm", "vm", "init"
	Segment     uint32 // 0 for the first file, N for "<relfilenode>.N"
}

// ParseRelationFile recognises the files whose pages carry checksums:
// "<relfilenode>[_fork][.segment]" directly in global/, base/<dboid>/ or
// pg_tblspc/<spcoid>/PG_<major>_<catversion>/<dboid>/. relPath is relative
// to the data directory with '/' separators. Temporary relations (t3_16384)
// and the catalog side files (pg_filenode.map, pg_internal.init,
// PG_VERSION, pg_control) do not qualify.
func ParseRelationFile(relPath string) (RelationFile, bool) {
	parts := strings.Split(relPath, "/")
	switch {
	case len(parts) == 2 && parts[0] == "global":
	case len(parts) == 3 && parts[0] == "base" && isOID(parts[1]):
	case len(parts) == 5 && parts[0] == "pg_tblspc" && isOID(parts[1]) &&
		strings.HasPrefix(parts[2], "PG_") && isOID(parts[3]):
	default:
		return RelationFile{}, false
	}
	return parseRelationName(parts[len(parts)-1])
}

// IsRelationFile reports whether relPath is a relation fork file whose
// pages carry checksums; see ParseRelationFile.
func IsRelationFile(relPath string) bool {
	_, ok := ParseRelationFile(relPath)
	return ok
}

// parseRelationName parses "<relfilenode>[_fsm|_vm|_init][.<segment>]".
func parseRelationName(name string) (RelationFile, bool) {
	var rf RelationFile
	base, seg, hasSeg := strings.Cut(name, ".")
	if hasSeg {
		n, ok := parseOID(seg)
		if !ok {
			return rf, false
		}
		rf.Segment = n
	}
	node, fork, hasFork := strings.Cut(base, "_")
	if hasFork {
		switch fork {
		case "fsm", "vm", "init":
			rf.Fork = fork
		default:
			return rf, false
		}
	}
	n, ok := parseOID(node)
	if !ok {
		return rf, false
	}
	rf.RelFileNode = n
	return rf, true
}

func isOID(s string) bool {
	_, ok := parseOID(s)
	return ok
}

// parseOID accepts a positive decimal uint32 without a sign or leading
// zeros, the way PostgreSQL prints OIDs, relfilenodes and segment numbers.
func parseOID(s string) (uint32, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}
