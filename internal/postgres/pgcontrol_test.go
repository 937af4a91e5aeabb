package postgres

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// segmentHeader builds a long page header as PostgreSQL 15 writes it.
func segmentHeader(tli uint32, pageAddr uint64, sysID uint64, segSize uint32) []byte {
	b := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], xlpLongHeader)
	le.PutUint32(b[4:], tli)
	le.PutUint64(b[8:], pageAddr)
	le.PutUint32(b[16:], 0)
	le.PutUint64(b[24:], sysID)
	le.PutUint32(b[32:], segSize)
	le.PutUint32(b[36:], 8192)
	return b
}

func TestParseSegmentHeader(t *testing.T) {
	good := segmentHeader(2, 0x1_05000000, 7301234567890123456, seg16MB)
	h, err := ParseSegmentHeader(good)
	if err != nil {
		t.Fatal(err)
	}
	want := SegmentHeader{Magic: 0xD110, Info: xlpLongHeader, TLI: 2, PageAddr: 0x1_05000000,
		SystemID: 7301234567890123456, SegSize: seg16MB, BlockSize: 8192}
	if h != want {
		t.Fatalf("got %+v, want %+v", h, want)
	}
	if h2, err := ReadSegmentHeader(bytes.NewReader(good)); err != nil || h2 != want {
		t.Fatalf("ReadSegmentHeader = %+v, %v", h2, err)
	}

	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	le := binary.LittleEndian
	bad := []struct {
		name    string
		b       []byte
		wantErr string
	}{
		{"short", good[:39], "need 40 bytes"},
		{"zeros", make([]byte, 64), "unknown page magic"},
		{"PostgreSQL 12 magic", mutate(func(b []byte) { le.PutUint16(b, 0xD101) }), "unknown page magic"},
		{"short header", mutate(func(b []byte) { le.PutUint16(b[2:], 0x0001) }), "XLP_LONG_HEADER"},
		{"unknown flag", mutate(func(b []byte) { le.PutUint16(b[2:], 0x0012) }), "unknown flag"},
		{"timeline 0", mutate(func(b []byte) { le.PutUint32(b[4:], 0) }), "timeline 0"},
		{"segment size", mutate(func(b []byte) { le.PutUint32(b[32:], 12345) }), "segment size"},
		{"block size", mutate(func(b []byte) { le.PutUint32(b[36:], 100) }), "block size"},
		{"unaligned page", mutate(func(b []byte) { le.PutUint64(b[8:], 0x2000) }), "segment boundary"},
	}
	for _, tt := range bad {
		if _, err := ParseSegmentHeader(tt.b); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	if _, err := ReadSegmentHeader(bytes.NewReader(good[:20])); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("ReadSegmentHeader of 20 bytes: %v", err)
	}

	for major, magic := range map[int]uint16{13: 0xD106, 14: 0xD10D, 15: 0xD110, 16: 0xD113, 17: 0xD116} {
		if got, ok := WALMagicVersion(magic); !ok || got != major {
			t.Errorf("WALMagicVersion(%#x) = %d, %v; want %d", magic, got, ok, major)
		}
	}
}

func TestSegmentHeaderCheckName(t *testing.T) {
	h, err := ParseSegmentHeader(segmentHeader(2, 0x1_05000000, 1, seg16MB))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		segSize uint64
		wantErr string
	}{
		{"000000020000000100000005", seg16MB, ""},
		{"000000020000000100000005.partial", seg16MB, ""},
		// A new timeline's first segment starts as a copy of its parent's.
		{"000000030000000100000005", seg16MB, ""},
		{"000000010000000100000005", seg16MB, "later than"},
		{"000000020000000100000006", seg16MB, "expected 1/6000000"},
		{"000000020000000100000001", 64 << 20, "16777216-byte segments"},
		{"000000020000000100000005.00000028.backup", seg16MB, "not a WAL segment"},
	}
	for _, tt := range tests {
		n, err := ParseWALFileName(tt.name, tt.segSize)
		if err != nil {
			t.Fatal(err)
		}
		err = h.CheckName(n)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckName(%s) = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

// controlFile builds a pg_control image with the CRC at crcOff.
func controlFile(sysID uint64, crcOff int) []byte {
	b := make([]byte, controlFileSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], sysID)
	le.PutUint32(b[8:], 1300)
	le.PutUint32(b[12:], 202209061)
	for i := 16; i < crcOff; i++ {
		b[i] = byte(i * 7)
	}
	le.PutUint32(b[crcOff:], crc32.Checksum(b[:crcOff], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func TestParseControlFile(t *testing.T) {
	for _, off := range []int{16, 20, 296, 1020} {
		b := controlFile(0x6543210987654321, off)
		cf, err := ParseControlFile(b)
		if err != nil {
			t.Fatalf("CRC at %d: %v", off, err)
		}
		if cf != (ControlFile{SystemID: 0x6543210987654321, ControlVersion: 1300, CatalogVersion: 202209061}) {
			t.Fatalf("CRC at %d: got %+v", off, cf)
		}
		for _, i := range []int{0, 9, off - 1, off, off + 3} {
			c := bytes.Clone(b)
			c[i] ^= 0x40
			if _, err := ParseControlFile(c); err == nil || !strings.Contains(err.Error(), "CRC") {
				t.Errorf("CRC at %d, byte %d flipped: err = %v", off, i, err)
			}
		}
	}
	if _, err := ParseControlFile(make([]byte, 8)); err == nil {
		t.Error("8-byte pg_control accepted")
	}
	if _, err := ParseControlFile(make([]byte, controlFileSize)); err == nil {
		t.Error("all-zero pg_control accepted")
	}

	dir := t.TempDir()
	if _, err := ReadControlSystemID(dir); err == nil || !strings.Contains(err.Error(), "read control file") {
		t.Errorf("ReadControlSystemID of empty dir: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), controlFile(42, 296), 0o600); err != nil {
		t.Fatal(err)
	}
	if id, err := ReadControlSystemID(dir); err != nil || id != 42 {
		t.Errorf("ReadControlSystemID = %d, %v; want 42", id, err)
	}
}

// TestSegmentHeaderRealCluster reads pg_control and WAL written by a real
// server and checks them against pg_controldata and the server's own view.
func TestSegmentHeaderRealCluster(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	c.Psql(t, "postgres", "create table t as select g from generate_series(1, 1000) g")
	lsn := mustLSN(t, c.Psql(t, "postgres", "select pg_current_wal_lsn()"))
	walName := c.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn())")
	c.Stop(t)

	out, err := exec.Command(filepath.Join(c.BinDir, "pg_controldata"), "-D", c.DataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	var wantID uint64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Database system identifier:"); ok {
			if wantID, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil {
				t.Fatal(err)
			}
		}
	}
	if wantID == 0 {
		t.Fatalf("no system identifier in pg_controldata output:\n%s", out)
	}
	cf, err := ReadControlFile(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if cf.SystemID != wantID || cf.ControlVersion != 1300 {
		t.Fatalf("ReadControlFile = %+v, want system ID %d and control version 1300", cf, wantID)
	}

	n, err := ParseWALFileName(walName, seg16MB)
	if err != nil {
		t.Fatal(err)
	}
	if n.SegNo != SegmentForLSN(lsn, seg16MB) || n.TLI != 1 {
		t.Fatalf("server's WAL file %s for %s parsed to %+v", walName, lsn, n)
	}
	f, err := os.Open(filepath.Join(c.DataDir, "pg_wal", walName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadSegmentHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	want := SegmentHeader{Magic: 0xD110, Info: h.Info, TLI: 1, PageAddr: SegmentStartLSN(n.SegNo, seg16MB),
		RemLen: h.RemLen, SystemID: wantID, SegSize: seg16MB, BlockSize: 8192}
	if h != want {
		t.Fatalf("header of %s = %+v, want %+v", walName, h, want)
	}
	if err := h.CheckName(n); err != nil {
		t.Fatal(err)
	}
	if major, _ := WALMagicVersion(h.Magic); major != 15 {
		t.Errorf("PostgreSQL 15 segment magic %#x maps to version %d", h.Magic, major)
	}
}

func FuzzParseSegmentHeader(f *testing.F) {
	f.Add(segmentHeader(1, 0x3000000, 99, seg16MB)[:SegmentHeaderSize])
	f.Add(make([]byte, SegmentHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseSegmentHeader(b)
		if err != nil {
			return
		}
		if ValidateWALSegmentSize(uint64(h.SegSize)) != nil || h.Info&xlpLongHeader == 0 || h.TLI == 0 {
			t.Fatalf("accepted invalid header %+v", h)
		}
		name := WALName{Kind: WALSegment, TLI: h.TLI, SegNo: SegmentForLSN(h.PageAddr, uint64(h.SegSize)), SegSize: uint64(h.SegSize)}
		if err := h.CheckName(name); err != nil {
			t.Fatalf("header %+v does not match its own name %s: %v", h, name, err)
		}
	})
}

func FuzzParseControlFile(f *testing.F) {
	f.Add(controlFile(1, 296)[:512])
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		cf, err := ParseControlFile(b)
		if err != nil {
			return
		}
		if cf.SystemID != binary.LittleEndian.Uint64(b) {
			t.Fatalf("system ID %d does not match the first 8 bytes", cf.SystemID)
		}
	})
}
