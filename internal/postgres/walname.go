package postgres

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// WALKind tells the kinds of file PostgreSQL hands to archive_command apart.
type WALKind int

// The WAL file kinds. The zero value is deliberately invalid so that an
// unparsed WALName is never mistaken for a segment.
const (
	WALSegment WALKind = iota + 1 // a complete segment, 000000010000000000000003
	WALPartial                    // a segment cut short by a timeline switch, ...03.partial
	WALBackup                     // a backup history file, ...03.00000028.backup
	WALHistory                    // a timeline history file, 00000002.history
)

// String names the kind for messages and listings.
func (k WALKind) String() string {
	switch k {
	case WALSegment:
		return "segment"
	case WALPartial:
		return "partial"
	case WALBackup:
		return "backup"
	case WALHistory:
		return "history"
	}
	return fmt.Sprintf("WALKind(%d)", int(k))
}

// Valid WAL segment sizes (initdb --wal-segsize): a power of two from 1 MiB
// to 1 GiB.
const (
	MinWALSegmentSize = 1 << 20
	MaxWALSegmentSize = 1 << 30
)

const (
	walSegNameLen  = 24 // TTTTTTTTXXXXXXXXYYYYYYYY
	partialSuffix  = ".partial"
	backupSuffix   = ".backup"
	historySuffix  = ".history"
	historyNameLen = 8 + len(historySuffix)
	backupNameLen  = walSegNameLen + 1 + 8 + len(backupSuffix)
)

// ValidateWALSegmentSize reports whether size is a segment size PostgreSQL
// can be initialised with. Every function here that takes a segment size
// expects one that passes this check.
func ValidateWALSegmentSize(size uint64) error {
	if size < MinWALSegmentSize || size > MaxWALSegmentSize || size&(size-1) != 0 {
		return fmt.Errorf("invalid WAL segment size %d: want a power of two from 1MB to 1GB", size)
	}
	return nil
}

// SegmentsPerXLogID is how many segments share one value of the middle
// eight hex digits of a segment name.
func SegmentsPerXLogID(segSize uint64) uint64 {
	mustValidSegSize(segSize)
	return 0x100000000 / segSize
}

// mustValidSegSize guards the helpers that return a bare value: a bad size
// there is a programming error (sizes come from the server or a segment
// header, both validated), and dividing by it would give silently wrong
// names.
func mustValidSegSize(segSize uint64) {
	if err := ValidateWALSegmentSize(segSize); err != nil {
		panic("postgres: " + err.Error())
	}
}

// SegmentName formats a segment file name the way PostgreSQL's XLogFileName
// does.
func SegmentName(tli uint32, segno uint64, segSize uint64) string {
	per := SegmentsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, uint32(segno/per), uint32(segno%per))
}

// SegmentForLSN is the number of the segment holding the byte at lsn.
func SegmentForLSN(lsn lifeboat.LSN, segSize uint64) uint64 {
	mustValidSegSize(segSize)
	return uint64(lsn) / segSize
}

// SegmentStartLSN is the position of a segment's first byte.
func SegmentStartLSN(segno uint64, segSize uint64) lifeboat.LSN {
	mustValidSegSize(segSize)
	return lifeboat.LSN(segno * segSize)
}

// WALName is a parsed archive file name. Names arrive from PostgreSQL's %f
// and %p and become storage keys, so only the exact shapes PostgreSQL
// produces are accepted: upper-case hex, no directories, no other suffixes.
type WALName struct {
	Kind WALKind
	TLI  uint32
	// SegNo is the segment number (zero for history files). For a backup
	// history file it is the segment the backup started in.
	SegNo uint64
	// BackupOffset is, for backup history files, the backup start
	// position within segment SegNo.
	BackupOffset uint32
	// SegSize is the WAL segment size the name was read with; String needs
	// it to split SegNo back into its two hex fields.
	SegSize uint64
}

// String formats the name back into the file name PostgreSQL uses.
func (n WALName) String() string {
	switch n.Kind {
	case WALHistory:
		return fmt.Sprintf("%08X%s", n.TLI, historySuffix)
	case WALPartial:
		return SegmentName(n.TLI, n.SegNo, n.SegSize) + partialSuffix
	case WALBackup:
		return fmt.Sprintf("%s.%08X%s", SegmentName(n.TLI, n.SegNo, n.SegSize), n.BackupOffset, backupSuffix)
	default:
		return SegmentName(n.TLI, n.SegNo, n.SegSize)
	}
}

// StartLSN is the first position the file covers: the segment start for
// segments and partial segments, the backup start for backup history files,
// and zero for timeline history files.
func (n WALName) StartLSN() lifeboat.LSN {
	switch n.Kind {
	case WALSegment, WALPartial:
		return SegmentStartLSN(n.SegNo, n.SegSize)
	case WALBackup:
		return SegmentStartLSN(n.SegNo, n.SegSize) + lifeboat.LSN(n.BackupOffset)
	}
	return 0
}

// ParseWALFileName parses the base name of a file PostgreSQL archives. The
// segment size is needed because it decides how the 16 hex digits after the
// timeline map to a segment number.
func ParseWALFileName(name string, segSize uint64) (WALName, error) {
	if err := ValidateWALSegmentSize(segSize); err != nil {
		return WALName{}, fmt.Errorf("parse WAL file name %q: %w", name, err)
	}
	fail := func(why string) (WALName, error) {
		return WALName{}, fmt.Errorf("invalid WAL file name %q: %s", name, why)
	}
	switch {
	case len(name) == historyNameLen && strings.HasSuffix(name, historySuffix):
		tli, err := parseHex32(name[:8])
		if err != nil {
			return fail("timeline is not 8 upper-case hex digits")
		}
		if tli == 0 {
			return fail("timeline 0 does not exist")
		}
		return WALName{Kind: WALHistory, TLI: tli, SegSize: segSize}, nil
	case len(name) == walSegNameLen:
		return parseSegmentPart(name, WALSegment, segSize, fail)
	case len(name) == walSegNameLen+len(partialSuffix) && strings.HasSuffix(name, partialSuffix):
		return parseSegmentPart(name[:walSegNameLen], WALPartial, segSize, fail)
	case len(name) == backupNameLen && strings.HasSuffix(name, backupSuffix) && name[walSegNameLen] == '.':
		n, err := parseSegmentPart(name[:walSegNameLen], WALBackup, segSize, fail)
		if err != nil {
			return n, err
		}
		off, err := parseHex32(name[walSegNameLen+1 : walSegNameLen+9])
		if err != nil {
			return fail("backup offset is not 8 upper-case hex digits")
		}
		if uint64(off) >= segSize {
			return fail(fmt.Sprintf("backup offset %#x is beyond the %d-byte segment", off, segSize))
		}
		n.BackupOffset = off
		return n, nil
	}
	return fail("want a segment (24 hex digits), optionally with .partial, a .backup file or a TLI.history file")
}

func parseSegmentPart(s string, kind WALKind, segSize uint64, fail func(string) (WALName, error)) (WALName, error) {
	tli, err1 := parseHex32(s[0:8])
	log, err2 := parseHex32(s[8:16])
	seg, err3 := parseHex32(s[16:24])
	if err1 != nil || err2 != nil || err3 != nil {
		return fail("segment name is not 24 upper-case hex digits")
	}
	if tli == 0 {
		return fail("timeline 0 does not exist")
	}
	per := SegmentsPerXLogID(segSize)
	if uint64(seg) >= per {
		return fail(fmt.Sprintf("segment field %08X is out of range for %d-byte segments", seg, segSize))
	}
	return WALName{Kind: kind, TLI: tli, SegNo: uint64(log)*per + uint64(seg), SegSize: segSize}, nil
}

// parseHex32 accepts exactly eight upper-case hex digits, as PostgreSQL
// writes them; strconv alone would also take lower case and signs.
func parseHex32(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("want 8 hex digits, got %q", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return 0, fmt.Errorf("want upper-case hex digits, got %q", s)
		}
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err
}

// AfterSegment reports whether name is a WAL segment (or partial segment)
// after the segment until: on a later timeline, or later on the same one.
// Timeline history and backup history files are never after.
func AfterSegment(name, until string) bool {
	if len(name) < walSegNameLen || len(until) < walSegNameLen || strings.HasSuffix(name, ".history") || strings.HasSuffix(name, ".backup") {
		return false
	}
	return name[:walSegNameLen] > until[:walSegNameLen]
}
