package postgres

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

const seg16MB = 16 << 20

func TestParseWALFileName(t *testing.T) {
	tests := []struct {
		name    string
		segSize uint64
		want    WALName
		wantErr string
	}{
		{name: "000000010000000000000003", segSize: seg16MB,
			want: WALName{Kind: WALSegment, TLI: 1, SegNo: 3}},
		{name: "0000000100000016000000B3", segSize: seg16MB,
			want: WALName{Kind: WALSegment, TLI: 1, SegNo: 0x16B3}},
		{name: "0000000A00000001000000FF", segSize: seg16MB,
			want: WALName{Kind: WALSegment, TLI: 10, SegNo: 0x1FF}},
		{name: "000000020000000100000003", segSize: 1 << 30,
			want: WALName{Kind: WALSegment, TLI: 2, SegNo: 4 + 3}},
		{name: "FFFFFFFFFFFFFFFF000000FF", segSize: seg16MB,
			want: WALName{Kind: WALSegment, TLI: 0xFFFFFFFF, SegNo: 0xFFFFFFFF<<8 | 0xFF}},
		{name: "000000020000000000000005.partial", segSize: seg16MB,
			want: WALName{Kind: WALPartial, TLI: 2, SegNo: 5}},
		{name: "000000010000000000000002.00000028.backup", segSize: seg16MB,
			want: WALName{Kind: WALBackup, TLI: 1, SegNo: 2, BackupOffset: 0x28}},
		{name: "0000001F.history", segSize: seg16MB,
			want: WALName{Kind: WALHistory, TLI: 31}},

		{name: "", segSize: seg16MB, wantErr: "want a segment"},
		{name: "000000010000000000000003", segSize: 3 << 20, wantErr: "invalid WAL segment size"},
		{name: "00000001000000000000000a", segSize: seg16MB, wantErr: "upper-case hex"},
		{name: "0000000100000000000000G3", segSize: seg16MB, wantErr: "upper-case hex"},
		{name: "00000001/000000000000003", segSize: seg16MB, wantErr: "upper-case hex"},
		{name: "../../00000000000000003", segSize: seg16MB, wantErr: "want a segment"},
		{name: "..0000010000000000000003", segSize: seg16MB, wantErr: "upper-case hex"},
		{name: "+00000010000000000000003", segSize: seg16MB, wantErr: "upper-case hex"},
		{name: "000000000000000000000003", segSize: seg16MB, wantErr: "timeline 0"},
		{name: "000000010000000000000100", segSize: seg16MB, wantErr: "out of range"},
		{name: "000000010000000000000004", segSize: 1 << 30, wantErr: "out of range"},
		{name: "0000000100000000000000030", segSize: seg16MB, wantErr: "want a segment"},
		{name: "000000010000000000000003.gz", segSize: seg16MB, wantErr: "want a segment"},
		{name: "000000010000000000000003.PARTIAL", segSize: seg16MB, wantErr: "want a segment"},
		{name: "000000010000000000000003.partiaX", segSize: seg16MB, wantErr: "want a segment"},
		{name: "000000010000000000000002.01000000.backup", segSize: seg16MB, wantErr: "beyond"},
		{name: "000000010000000000000002.0000002g.backup", segSize: seg16MB, wantErr: "backup offset"},
		{name: "000000010000000000000002_00000028.backup", segSize: seg16MB, wantErr: "want a segment"},
		{name: "00000000.history", segSize: seg16MB, wantErr: "timeline 0"},
		{name: "0000001f.history", segSize: seg16MB, wantErr: "upper-case hex"},
		{name: "1.history", segSize: seg16MB, wantErr: "want a segment"},
		{name: "00000001.history/", segSize: seg16MB, wantErr: "want a segment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWALFileName(tt.name, tt.segSize)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseWALFileName(%q) = %+v, %v; want error containing %q", tt.name, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseWALFileName(%q): %v", tt.name, err)
			}
			tt.want.SegSize = tt.segSize
			if got != tt.want {
				t.Fatalf("ParseWALFileName(%q) = %+v, want %+v", tt.name, got, tt.want)
			}
			if s := got.String(); s != tt.name {
				t.Errorf("String() = %q, want %q", s, tt.name)
			}
		})
	}
}

func TestSegmentNameAndLSN(t *testing.T) {
	tests := []struct {
		lsn     string
		segSize uint64
		tli     uint32
		segno   uint64
		name    string
	}{
		// pg_walfile_name('16/B374D848') on a default cluster.
		{"16/B374D848", seg16MB, 1, 0x16B3, "0000000100000016000000B3"},
		{"0/3000028", seg16MB, 1, 3, "000000010000000000000003"},
		{"0/FFFFFFF", seg16MB, 2, 0xF, "00000002000000000000000F"},
		{"1/0", seg16MB, 1, 0x100, "000000010000000100000000"},
		{"1/0", 64 << 20, 1, 64, "000000010000000100000000"},
		{"1/FC000000", 64 << 20, 3, 64 + 63, "00000003000000010000003F"},
		{"0/0", 1 << 20, 1, 0, "000000010000000000000000"},
		{"0/FFFFF", 1 << 20, 1, 0, "000000010000000000000000"},
		{"0/100000", 1 << 20, 1, 1, "000000010000000000000001"},
		{"FFFFFFFF/FFFFFFFF", 1 << 30, 1, 0xFFFFFFFF<<2 | 3, "00000001FFFFFFFF00000003"},
	}
	for _, tt := range tests {
		lsn, err := lifeboat.ParseLSN(tt.lsn)
		if err != nil {
			t.Fatal(err)
		}
		segno := SegmentForLSN(lsn, tt.segSize)
		if segno != tt.segno {
			t.Errorf("SegmentForLSN(%s, %d) = %#x, want %#x", tt.lsn, tt.segSize, segno, tt.segno)
		}
		if got := SegmentName(tt.tli, segno, tt.segSize); got != tt.name {
			t.Errorf("SegmentName(%d, %#x, %d) = %q, want %q", tt.tli, segno, tt.segSize, got, tt.name)
		}
		start := SegmentStartLSN(segno, tt.segSize)
		if start > lsn || uint64(lsn-start) >= tt.segSize {
			t.Errorf("SegmentStartLSN(%#x, %d) = %s, does not contain %s", segno, tt.segSize, start, lsn)
		}
		n, err := ParseWALFileName(tt.name, tt.segSize)
		if err != nil {
			t.Fatalf("ParseWALFileName(%q): %v", tt.name, err)
		}
		if n.SegNo != segno || n.TLI != tt.tli || n.StartLSN() != start {
			t.Errorf("ParseWALFileName(%q) = %+v (start %s), want segno %#x tli %d start %s", tt.name, n, n.StartLSN(), segno, tt.tli, start)
		}
	}
}

func TestWALNameStartLSN(t *testing.T) {
	b, err := ParseWALFileName("000000010000000100000002.00ABCDEF.backup", seg16MB)
	if err != nil {
		t.Fatal(err)
	}
	if want := lifeboat.LSN(0x1_02ABCDEF); b.StartLSN() != want {
		t.Errorf("backup file StartLSN = %s, want %s", b.StartLSN(), want)
	}
	h, err := ParseWALFileName("00000002.history", seg16MB)
	if err != nil {
		t.Fatal(err)
	}
	if h.StartLSN() != 0 {
		t.Errorf("history file StartLSN = %s, want 0/0", h.StartLSN())
	}
}

func TestValidateWALSegmentSize(t *testing.T) {
	for size, ok := range map[uint64]bool{
		0: false, 1: false, 512 << 10: false, 1 << 20: true, 3 << 20: false, 16 << 20: true,
		1 << 30: true, 2 << 30: false, 1<<20 + 1: false,
	} {
		if err := ValidateWALSegmentSize(size); (err == nil) != ok {
			t.Errorf("ValidateWALSegmentSize(%d) = %v, want ok=%v", size, err, ok)
		}
	}
}

func TestSegmentNamePanicsOnBadSize(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("SegmentName with segment size 0 did not panic")
		}
	}()
	SegmentName(1, 1, 0)
}

func FuzzParseWALFileName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000003", "000000020000000000000005.partial",
		"000000010000000000000002.00000028.backup", "0000001F.history",
		"../000000010000000000000003", "00000001000000000000000a",
	} {
		f.Add(s, uint8(24))
	}
	f.Fuzz(func(t *testing.T, name string, sizeLog uint8) {
		segSize := uint64(1) << (20 + sizeLog%11)
		n, err := ParseWALFileName(name, segSize)
		if err != nil {
			return
		}
		// Accepted names become storage keys: they must be canonical and
		// must not be able to name a path outside their prefix.
		if got := n.String(); got != name {
			t.Fatalf("ParseWALFileName(%q).String() = %q", name, got)
		}
		if strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
			t.Fatalf("accepted unsafe name %q", name)
		}
	})
}
