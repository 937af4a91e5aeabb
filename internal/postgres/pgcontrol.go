package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// WALMagicVersion maps a WAL page magic number (XLOG_PAGE_MAGIC in
// access/xlog_internal.h) to the PostgreSQL major version that writes it.
// The value changes with every release whose WAL format changed, so it
// doubles as a version stamp on each segment.
func WALMagicVersion(magic uint16) (major int, ok bool) {
	switch magic {
	case 0xD106:
		return 13, true
	case 0xD10D:
		return 14, true
	case 0xD110:
		return 15, true
	case 0xD113:
		return 16, true
	case 0xD116:
		return 17, true
	}
	return 0, false
}

// xlp_info flag bits.
const (
	xlpLongHeader = 0x0002 // XLP_LONG_HEADER: the first page of a segment
	xlpAllFlags   = 0x0007 // XLP_ALL_FLAGS
)

// SegmentHeaderSize is the size of XLogLongPageHeaderData, the header at the
// start of every WAL segment.
const SegmentHeaderSize = 40

// SegmentHeader is the long page header at the start of a WAL segment. It is
// what lets a WAL push refuse a segment from another cluster, or one whose
// contents do not match its file name.
type SegmentHeader struct {
	Magic     uint16
	Info      uint16
	TLI       uint32       // timeline of the first record on the page
	PageAddr  lifeboat.LSN // position of the page, so the segment start
	RemLen    uint32       // bytes of a record continued from the previous segment
	SystemID  uint64       // the cluster's system identifier, as in pg_control
	SegSize   uint32
	BlockSize uint32 // XLOG_BLCKSZ
}

// ParseSegmentHeader decodes and sanity-checks the header at the start of b,
// which must hold at least SegmentHeaderSize bytes of a segment.
func ParseSegmentHeader(b []byte) (SegmentHeader, error) {
	if len(b) < SegmentHeaderSize {
		return SegmentHeader{}, fmt.Errorf("WAL segment header: need %d bytes, have %d", SegmentHeaderSize, len(b))
	}
	le := binary.LittleEndian
	h := SegmentHeader{
		Magic:    le.Uint16(b[0:]),
		Info:     le.Uint16(b[2:]),
		TLI:      le.Uint32(b[4:]),
		PageAddr: lifeboat.LSN(le.Uint64(b[8:])),
		RemLen:   le.Uint32(b[16:]),
		// b[20:24] is alignment padding.
		SystemID:  le.Uint64(b[24:]),
		SegSize:   le.Uint32(b[32:]),
		BlockSize: le.Uint32(b[36:]),
	}
	if _, ok := WALMagicVersion(h.Magic); !ok {
		return h, fmt.Errorf("WAL segment header: unknown page magic %#04x (not a WAL segment, or from an unsupported PostgreSQL version)", h.Magic)
	}
	if h.Info&xlpLongHeader == 0 {
		return h, fmt.Errorf("WAL segment header: xlp_info %#04x lacks XLP_LONG_HEADER: this is not the first page of a segment", h.Info)
	}
	if h.Info&^xlpAllFlags != 0 {
		return h, fmt.Errorf("WAL segment header: xlp_info %#04x has unknown flag bits", h.Info)
	}
	if h.TLI == 0 {
		return h, errors.New("WAL segment header: timeline 0")
	}
	if err := ValidateWALSegmentSize(uint64(h.SegSize)); err != nil {
		return h, fmt.Errorf("WAL segment header: %w", err)
	}
	if bs := h.BlockSize; bs < 1024 || bs > 65536 || bs&(bs-1) != 0 {
		return h, fmt.Errorf("WAL segment header: invalid WAL block size %d", bs)
	}
	if uint64(h.PageAddr)%uint64(h.SegSize) != 0 {
		return h, fmt.Errorf("WAL segment header: page address %s is not at a segment boundary", h.PageAddr)
	}
	return h, nil
}

// ReadSegmentHeader reads and checks the header of the segment in r.
func ReadSegmentHeader(r io.ReaderAt) (SegmentHeader, error) {
	buf := make([]byte, SegmentHeaderSize)
	if _, err := r.ReadAt(buf, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return SegmentHeader{}, fmt.Errorf("WAL segment header: file shorter than %d bytes", SegmentHeaderSize)
		}
		return SegmentHeader{}, fmt.Errorf("read WAL segment header: %w", err)
	}
	return ParseSegmentHeader(buf)
}

// CheckName verifies that the header belongs in a file called name: same
// segment size and start position, and a timeline no later than the name's.
// The header's timeline may be earlier because the first segment of a new
// timeline starts as a copy of its parent's segment.
func (h SegmentHeader) CheckName(name WALName) error {
	if name.Kind != WALSegment && name.Kind != WALPartial {
		return fmt.Errorf("%s is a %s file, not a WAL segment", name, name.Kind)
	}
	if uint64(h.SegSize) != name.SegSize {
		return fmt.Errorf("%s: header says %d-byte segments, expected %d", name, h.SegSize, name.SegSize)
	}
	if want := name.StartLSN(); h.PageAddr != want {
		return fmt.Errorf("%s: header is for position %s, expected %s", name, h.PageAddr, want)
	}
	if h.TLI > name.TLI {
		return fmt.Errorf("%s: header timeline %d is later than the file name's %d", name, h.TLI, name.TLI)
	}
	return nil
}

// ControlFile is the part of global/pg_control that identifies a cluster.
type ControlFile struct {
	SystemID       uint64
	ControlVersion uint32 // PG_CONTROL_VERSION, e.g. 1300 for PostgreSQL 15
	CatalogVersion uint32 // CATALOG_VERSION_NO
}

// controlFileSize is PG_CONTROL_FILE_SIZE: pg_control is always written as
// 8 kB, the struct first and zeros after it.
const controlFileSize = 8192

// ParseControlFile decodes the leading fields of pg_control and verifies its
// CRC, so that a torn or foreign file is not trusted.
func ParseControlFile(b []byte) (ControlFile, error) {
	if len(b) < 16 {
		return ControlFile{}, fmt.Errorf("pg_control: %d bytes is too short", len(b))
	}
	le := binary.LittleEndian
	cf := ControlFile{
		SystemID:       le.Uint64(b[0:]),
		ControlVersion: le.Uint32(b[8:]),
		CatalogVersion: le.Uint32(b[12:]),
	}
	if !controlCRCValid(b) {
		return cf, errors.New("pg_control: CRC check failed (file is corrupt or not a pg_control file)")
	}
	return cf, nil
}

// controlCRCValid looks for the CRC-32C that ends ControlFileData. Its
// offset differs between major versions; rather than tabulate the layouts,
// we accept the file if at some 4-aligned offset the stored value is the CRC
// of every byte before it. A corrupt byte breaks every candidate at or after
// it, and a chance match earlier is a one in 2^32 event per offset.
func controlCRCValid(b []byte) bool {
	// ControlFileData is a few hundred bytes in every supported version.
	limit := min(len(b), 1024)
	tab := crc32.MakeTable(crc32.Castagnoli)
	var crc uint32
	for off := 0; off+4 <= limit; off += 4 {
		if off >= 16 && crc == binary.LittleEndian.Uint32(b[off:]) {
			return true
		}
		crc = crc32.Update(crc, tab, b[off:off+4])
	}
	return false
}

// ReadControlFile reads pgdata/global/pg_control.
func ReadControlFile(pgdata string) (ControlFile, error) {
	path := filepath.Join(pgdata, "global", "pg_control")
	f, err := os.Open(path)
	if err != nil {
		return ControlFile{}, fmt.Errorf("read control file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, controlFileSize))
	if err != nil {
		return ControlFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	cf, err := ParseControlFile(b)
	if err != nil {
		return cf, fmt.Errorf("%s: %w", path, err)
	}
	return cf, nil
}

// ReadControlSystemID returns the system identifier of the cluster in
// pgdata, which every WAL segment and backup of that cluster must carry.
func ReadControlSystemID(pgdata string) (uint64, error) {
	cf, err := ReadControlFile(pgdata)
	if err != nil {
		return 0, err
	}
	return cf.SystemID, nil
}
