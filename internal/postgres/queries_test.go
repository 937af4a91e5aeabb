package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestUnsupportedVersionError(t *testing.T) {
	var err error = &UnsupportedVersionError{VersionNum: 140007}
	if got, want := err.Error(), "PostgreSQL 15 or newer is required (server is 14.7)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var uv *UnsupportedVersionError
	if !errors.As(fmt.Errorf("backup: %w", err), &uv) || uv.VersionNum != 140007 {
		t.Error("UnsupportedVersionError does not survive wrapping")
	}
	for n, want := range map[int]string{150004: "15.4", 170000: "17.0", 90624: "9.6.24", 100023: "10.23"} {
		if got := FormatVersionNum(n); got != want {
			t.Errorf("FormatVersionNum(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSettingBytes(t *testing.T) {
	tests := []struct {
		value, unit string
		want        uint64
		wantErr     bool
	}{
		{"16777216", "B", 16 << 20, false},
		{"8192", "", 8192, false},
		{"131072", "8kB", 1 << 30, false},
		{"16", "MB", 16 << 20, false},
		{"4", "kB", 4096, false},
		{"1", "GB", 1 << 30, false},
		{"2", "16MB", 32 << 20, false},
		{"x", "B", 0, true},
		{"1", "ms", 0, true},
	}
	for _, tt := range tests {
		got, err := setting{name: "s", value: tt.value, unit: tt.unit}.bytes()
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("bytes(%s %s) = %d, %v; want %d, error %v", tt.value, tt.unit, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestQueriesRealCluster runs every query against a real server, including
// a full pg_backup_start/pg_backup_stop round trip in one session, and
// checks the names this package computes against what PostgreSQL archives.
func TestQueriesRealCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, archive := startArchivingCluster(t)
	conn := connect(t, c)

	si, err := QueryServerInfo(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	dataDir, err := filepath.EvalSymlinks(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	controlID, err := ReadControlSystemID(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case si.VersionNum < 150000 || si.VersionNum >= 160000 || !strings.HasPrefix(si.Version, "15."):
		t.Errorf("version %d %q, want PostgreSQL 15", si.VersionNum, si.Version)
	case si.DataDirectory != dataDir && si.DataDirectory != c.DataDir:
		t.Errorf("data directory %q, want %q", si.DataDirectory, c.DataDir)
	case si.SystemID != controlID:
		t.Errorf("system ID %d, pg_control says %d", si.SystemID, controlID)
	case !si.DataChecksums || si.BlockSize != 8192 || si.WALSegmentSize != seg16MB || si.RelSegmentSize != 1<<30:
		t.Errorf("checksums %v, block size %d, WAL segment %d, relation segment %d",
			si.DataChecksums, si.BlockSize, si.WALSegmentSize, si.RelSegmentSize)
	case si.ArchiveMode != "on" || !strings.HasPrefix(si.ArchiveCommand, "test ! -f "+archive) || si.ArchiveLibrary != "":
		t.Errorf("archive mode %q, command %q, library %q", si.ArchiveMode, si.ArchiveCommand, si.ArchiveLibrary)
	case si.Timeline != 1 || si.InRecovery:
		t.Errorf("timeline %d, in recovery %v", si.Timeline, si.InRecovery)
	}

	// Our segment naming agrees with the server's.
	cur, err := CurrentWALLSN(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Psql(t, "postgres", fmt.Sprintf("select pg_walfile_name('%s')", cur)); SegmentName(1, SegmentForLSN(cur, seg16MB), seg16MB) != want {
		t.Errorf("SegmentName for %s = %s, server says %s", cur, SegmentName(1, SegmentForLSN(cur, seg16MB), seg16MB), want)
	}

	tsDir := t.TempDir()
	c.Psql(t, "postgres", fmt.Sprintf("create tablespace ts location '%s'", tsDir))
	c.Psql(t, "postgres", "create table in_ts tablespace ts as select g from generate_series(1, 100) g")
	tss, err := Tablespaces(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(tss) != 1 || tss[0].Name != "ts" || tss[0].Location != tsDir || tss[0].OID == 0 {
		t.Fatalf("Tablespaces = %+v, want ts at %s", tss, tsDir)
	}

	x1, err := NextXID(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	c.Psql(t, "postgres", "create table x (i int); insert into x values (1)")
	x2, err := NextXID(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if x2 <= x1 {
		t.Errorf("next XID did not advance: %d then %d", x1, x2)
	}

	if _, err := StopBackup(ctx, conn, false); err == nil || !strings.Contains(err.Error(), "pg_backup_stop") {
		t.Errorf("StopBackup without a backup: %v", err)
	}
	start, err := StartBackup(ctx, conn, "lifeboat test", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartBackup(ctx, conn, "again", true); err == nil || !strings.Contains(err.Error(), "pg_backup_start") {
		t.Errorf("second StartBackup in the same session: %v", err)
	}
	c.Psql(t, "postgres", "insert into x select g from generate_series(1, 1000) g")
	stop, err := StopBackup(ctx, conn, true)
	if err != nil {
		t.Fatal(err)
	}
	if stop.LSN <= start {
		t.Errorf("backup stop %s not after start %s", stop.LSN, start)
	}
	startName := SegmentName(1, SegmentForLSN(start, seg16MB), seg16MB)
	for _, want := range []string{
		fmt.Sprintf("START WAL LOCATION: %s (file %s)\n", start, startName),
		"BACKUP METHOD: streamed\n", "START TIMELINE: 1\n", "LABEL: lifeboat test\n",
	} {
		if !strings.Contains(stop.LabelFile, want) {
			t.Errorf("backup label lacks %q:\n%s", want, stop.LabelFile)
		}
	}
	if want := fmt.Sprintf("%d %s\n", tss[0].OID, tsDir); stop.TablespaceMap != want {
		t.Errorf("tablespace map %q, want %q", stop.TablespaceMap, want)
	}

	// pg_backup_stop waited for the archiver: the backup history file and
	// every segment of the backup are there, named as we compute them.
	entries, err := os.ReadDir(archive)
	if err != nil {
		t.Fatal(err)
	}
	var sawBackup bool
	segs := map[uint64]bool{}
	for _, e := range entries {
		n, err := ParseWALFileName(e.Name(), seg16MB)
		if err != nil {
			t.Errorf("archived file: %v", err)
			continue
		}
		switch n.Kind {
		case WALBackup:
			sawBackup = true
			if n.StartLSN() != start || n.TLI != 1 {
				t.Errorf("backup history file %s starts at %s, backup started at %s", e.Name(), n.StartLSN(), start)
			}
			data, err := os.ReadFile(filepath.Join(archive, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "STOP WAL LOCATION: "+stop.LSN.String()) {
				t.Errorf("backup history file does not name stop %s:\n%s", stop.LSN, data)
			}
		case WALSegment:
			segs[n.SegNo] = true
			f, err := os.Open(filepath.Join(archive, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			h, err := ReadSegmentHeader(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			if err := h.CheckName(n); err != nil || h.SystemID != si.SystemID {
				t.Errorf("%s: %v, system ID %d", e.Name(), err, h.SystemID)
			}
		default:
			t.Errorf("unexpected %s file %s in the archive", n.Kind, e.Name())
		}
	}
	if !sawBackup {
		t.Errorf("no .backup file among %d archived files", len(entries))
	}
	for s := SegmentForLSN(start, seg16MB); s <= SegmentForLSN(stop.LSN-1, seg16MB); s++ {
		if !segs[s] {
			t.Errorf("segment %s of the backup is not archived", SegmentName(1, s, seg16MB))
		}
	}

	sw, err := SwitchWAL(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if after, err := CurrentWALLSN(ctx, conn); err != nil || after < sw {
		t.Errorf("current LSN %s, %v after switch at %s", after, err, sw)
	}
	rp, err := CreateRestorePoint(ctx, conn, "nightly")
	if err != nil || rp < sw {
		t.Errorf("CreateRestorePoint = %s, %v", rp, err)
	}
	if _, err := CreateRestorePoint(ctx, conn, strings.Repeat("r", 64)); err == nil {
		t.Error("64-byte restore point name accepted")
	}
	now, err := ServerNow(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(now); d < -time.Minute || d > time.Minute {
		t.Errorf("server time %v is %v away from ours", now, d)
	}
	if tli, err := CurrentTimeline(ctx, conn); err != nil || tli != 1 {
		t.Errorf("CurrentTimeline = %d, %v", tli, err)
	}

	// A role without pg_read_all_settings gets told what it lacks.
	c.Psql(t, "postgres", "create role plain login")
	plain, err := pgx.Connect(ctx, strings.Replace(c.DSN("postgres"), "user=postgres", "user=plain", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	if _, err := QueryServerInfo(ctx, plain); err == nil || !strings.Contains(err.Error(), "pg_read_all_settings") {
		t.Errorf("QueryServerInfo as an unprivileged role: %v", err)
	}
}
