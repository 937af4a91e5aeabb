package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// Every statement Lifeboat sends to a PostgreSQL server is in this file, so
// that the privileges a backup role needs can be read off one page.
const (
	sqlServerVersionNum = `select current_setting('server_version_num')::int, current_setting('server_version')`
	sqlSettings         = `select name, setting, coalesce(unit, '') from pg_settings where name = any($1)`
	sqlSystemID         = `select system_identifier from pg_control_system()`
	sqlTimeline         = `select timeline_id from pg_control_checkpoint()`
	sqlInRecovery       = `select pg_is_in_recovery()`
	sqlBackupStart      = `select pg_backup_start($1, $2)::text`
	sqlBackupStop       = `select lsn::text, labelfile, coalesce(spcmapfile, '') from pg_backup_stop($1)`
	sqlTablespaces      = `select oid, spcname, pg_tablespace_location(oid) from pg_tablespace where spcname not in ('pg_default', 'pg_global') order by oid`
	sqlSwitchWAL        = `select pg_switch_wal()::text`
	sqlCurrentWALLSN    = `select pg_current_wal_lsn()::text`
	sqlNextXID          = `select txid_snapshot_xmax(txid_current_snapshot())`
	sqlRestorePoint     = `select pg_create_restore_point($1)::text`
	sqlArchiver         = `select pg_walfile_name(pg_current_wal_lsn()),
		(select setting::bigint from pg_settings where name = 'wal_segment_size'),
		last_archived_time, last_failed_time, last_failed_wal from pg_stat_archiver`
	sqlNow = `select now()`
	// doctor's WAL round trip: a transaction with an xid writes a commit
	// record, so the switch after it always completes a segment.
	sqlAssignXID     = `select txid_current()`
	sqlSwitchWALFile = `select pg_walfile_name(pg_switch_wal())`
)

// MinServerVersionNum is the oldest server supported: the backup functions
// were renamed to pg_backup_start/pg_backup_stop in PostgreSQL 15.
const MinServerVersionNum = 150000

// UnsupportedVersionError reports a server older than MinServerVersionNum.
type UnsupportedVersionError struct {
	VersionNum int // server_version_num, e.g. 140007
}

func (e *UnsupportedVersionError) Error() string {
	return fmt.Sprintf("PostgreSQL 15 or newer is required (server is %s)", FormatVersionNum(e.VersionNum))
}

// FormatVersionNum turns server_version_num into the "major.minor" form
// people know (140007 → "14.7").
func FormatVersionNum(n int) string {
	if n >= 100000 {
		return fmt.Sprintf("%d.%d", n/10000, n%10000)
	}
	return fmt.Sprintf("%d.%d.%d", n/10000, n/100%100, n%100)
}

// ServerInfo describes a running cluster as a backup needs to know it.
type ServerInfo struct {
	VersionNum     int    // server_version_num, e.g. 150004
	Version        string // server_version, e.g. "15.4 (Debian 15.4-1)"
	DataDirectory  string
	SystemID       uint64
	DataChecksums  bool
	BlockSize      int    // bytes per data page
	WALSegmentSize uint64 // bytes
	// RelSegmentSize is the size in bytes at which relation forks are
	// split into numbered files; block numbers for checksums count across
	// those files.
	RelSegmentSize uint64
	ArchiveMode    string // "off", "on" or "always"
	ArchiveCommand string
	ArchiveLibrary string
	Timeline       uint32 // timeline of the latest checkpoint
	InRecovery     bool   // the server is a standby or still recovering
}

// QueryServerInfo reads the facts a backup depends on. It fails with an
// *UnsupportedVersionError for servers older than PostgreSQL 15, and with a
// hint when the role may not read a setting.
func QueryServerInfo(ctx context.Context, conn *pgx.Conn) (ServerInfo, error) {
	var si ServerInfo
	if err := conn.QueryRow(ctx, sqlServerVersionNum).Scan(&si.VersionNum, &si.Version); err != nil {
		return si, fmt.Errorf("query server version: %w", err)
	}
	if si.VersionNum < MinServerVersionNum {
		return si, &UnsupportedVersionError{VersionNum: si.VersionNum}
	}

	names := []string{"data_directory", "data_checksums", "block_size", "wal_segment_size",
		"segment_size", "archive_mode", "archive_command", "archive_library"}
	settings, err := querySettings(ctx, conn, names)
	if err != nil {
		return si, err
	}
	for _, n := range names {
		if _, ok := settings[n]; !ok {
			return si, fmt.Errorf("query server settings: %s is not visible; the role needs superuser or pg_read_all_settings", n)
		}
	}
	si.DataDirectory = settings["data_directory"].value
	si.DataChecksums = settings["data_checksums"].value == "on"
	si.ArchiveMode = settings["archive_mode"].value
	si.ArchiveCommand = settings["archive_command"].value
	si.ArchiveLibrary = settings["archive_library"].value
	blockSize, err := settings["block_size"].bytes()
	if err != nil {
		return si, err
	}
	si.BlockSize = int(blockSize)
	if si.WALSegmentSize, err = settings["wal_segment_size"].bytes(); err != nil {
		return si, err
	}
	if err := ValidateWALSegmentSize(si.WALSegmentSize); err != nil {
		return si, fmt.Errorf("query server settings: %w", err)
	}
	if si.RelSegmentSize, err = settings["segment_size"].bytes(); err != nil {
		return si, err
	}

	var sysID int64 // bigint on the SQL side; the bits are the uint64
	if err := conn.QueryRow(ctx, sqlSystemID).Scan(&sysID); err != nil {
		return si, fmt.Errorf("query system identifier: %w", err)
	}
	si.SystemID = uint64(sysID)
	if si.Timeline, err = CurrentTimeline(ctx, conn); err != nil {
		return si, err
	}
	if err := conn.QueryRow(ctx, sqlInRecovery).Scan(&si.InRecovery); err != nil {
		return si, fmt.Errorf("query recovery state: %w", err)
	}
	return si, nil
}

type setting struct {
	name, value, unit string
}

// bytes converts a memory-valued setting to bytes using its pg_settings
// unit, which may carry a multiplier ("8kB").
func (s setting) bytes() (uint64, error) {
	v, err := strconv.ParseUint(s.value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("setting %s: value %q is not a number", s.name, s.value)
	}
	unit := s.unit
	mult := uint64(1)
	if i := strings.IndexFunc(unit, func(r rune) bool { return r < '0' || r > '9' }); i > 0 {
		mult, _ = strconv.ParseUint(unit[:i], 10, 64)
		unit = unit[i:]
	}
	switch unit {
	case "", "B":
	case "kB":
		mult <<= 10
	case "MB":
		mult <<= 20
	case "GB":
		mult <<= 30
	case "TB":
		mult <<= 40
	default:
		return 0, fmt.Errorf("setting %s: unknown unit %q", s.name, s.unit)
	}
	return v * mult, nil
}

func querySettings(ctx context.Context, conn *pgx.Conn, names []string) (map[string]setting, error) {
	rows, err := conn.Query(ctx, sqlSettings, names)
	if err != nil {
		return nil, fmt.Errorf("query server settings: %w", err)
	}
	out := make(map[string]setting, len(names))
	for rows.Next() {
		var s setting
		if err := rows.Scan(&s.name, &s.value, &s.unit); err != nil {
			rows.Close()
			return nil, fmt.Errorf("query server settings: %w", err)
		}
		out[s.name] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query server settings: %w", err)
	}
	return out, nil
}

// CurrentTimeline returns the timeline of the latest checkpoint.
func CurrentTimeline(ctx context.Context, conn *pgx.Conn) (uint32, error) {
	var tli int64
	if err := conn.QueryRow(ctx, sqlTimeline).Scan(&tli); err != nil {
		return 0, fmt.Errorf("query timeline: %w", err)
	}
	return uint32(tli), nil
}

// StartBackup begins a non-exclusive backup on conn and returns its start
// LSN. The backup belongs to the session: StopBackup must run on the same
// connection, and closing it aborts the backup. fast asks for an immediate
// checkpoint instead of a spread one.
func StartBackup(ctx context.Context, conn *pgx.Conn, label string, fast bool) (lifeboat.LSN, error) {
	var s string
	if err := conn.QueryRow(ctx, sqlBackupStart, label, fast).Scan(&s); err != nil {
		return 0, fmt.Errorf("pg_backup_start: %w", err)
	}
	lsn, err := lifeboat.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("pg_backup_start: %w", err)
	}
	return lsn, nil
}

// BackupStop is what pg_backup_stop returns: the end of the WAL a restore
// must replay, and the backup_label and tablespace_map files to write into
// the restored data directory.
type BackupStop struct {
	LSN           lifeboat.LSN
	LabelFile     string
	TablespaceMap string // empty when there are no tablespaces
}

// StopBackup ends the backup started on conn. With waitForArchive it
// returns only once the last segment the backup needs has been archived.
func StopBackup(ctx context.Context, conn *pgx.Conn, waitForArchive bool) (BackupStop, error) {
	var (
		bs  BackupStop
		lsn string
	)
	if err := conn.QueryRow(ctx, sqlBackupStop, waitForArchive).Scan(&lsn, &bs.LabelFile, &bs.TablespaceMap); err != nil {
		return bs, fmt.Errorf("pg_backup_stop: %w", err)
	}
	var err error
	if bs.LSN, err = lifeboat.ParseLSN(lsn); err != nil {
		return bs, fmt.Errorf("pg_backup_stop: %w", err)
	}
	return bs, nil
}

// Tablespace is a user tablespace, stored outside the data directory.
type Tablespace struct {
	OID      uint32
	Name     string
	Location string
}

// Tablespaces lists the user tablespaces (pg_default and pg_global live in
// the data directory).
func Tablespaces(ctx context.Context, conn *pgx.Conn) ([]Tablespace, error) {
	rows, err := conn.Query(ctx, sqlTablespaces)
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	defer rows.Close()
	var out []Tablespace
	for rows.Next() {
		var ts Tablespace
		if err := rows.Scan(&ts.OID, &ts.Name, &ts.Location); err != nil {
			return nil, fmt.Errorf("list tablespaces: %w", err)
		}
		out = append(out, ts)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	return out, nil
}

// SwitchWAL closes the current WAL segment so that it can be archived, and
// returns the end of the switch record (or the current position if nothing
// was written since the last switch).
func SwitchWAL(ctx context.Context, conn *pgx.Conn) (lifeboat.LSN, error) {
	return queryLSN(ctx, conn, "pg_switch_wal", sqlSwitchWAL)
}

// CurrentWALLSN returns the current WAL write position.
func CurrentWALLSN(ctx context.Context, conn *pgx.Conn) (lifeboat.LSN, error) {
	return queryLSN(ctx, conn, "pg_current_wal_lsn", sqlCurrentWALLSN)
}

// CreateRestorePoint writes a named restore point into the WAL, a target
// for recovery_target_name, and returns its position.
func CreateRestorePoint(ctx context.Context, conn *pgx.Conn, name string) (lifeboat.LSN, error) {
	if name == "" || len(name) > maxRestorePointName {
		return 0, fmt.Errorf("pg_create_restore_point: name must be 1 to %d bytes, got %d", maxRestorePointName, len(name))
	}
	return queryLSN(ctx, conn, "pg_create_restore_point", sqlRestorePoint, name)
}

func queryLSN(ctx context.Context, conn *pgx.Conn, what, sql string, args ...any) (lifeboat.LSN, error) {
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	lsn, err := lifeboat.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return lsn, nil
}

// NextXID returns the first transaction ID not yet assigned (with epoch),
// so that a snapshot can record which transactions it may contain.
func NextXID(ctx context.Context, conn *pgx.Conn) (uint64, error) {
	var xid int64
	if err := conn.QueryRow(ctx, sqlNextXID).Scan(&xid); err != nil {
		return 0, fmt.Errorf("query next transaction ID: %w", err)
	}
	if xid < 0 {
		return 0, errors.New("query next transaction ID: negative value")
	}
	return uint64(xid), nil
}

// ServerNow returns the server's clock, so that recovery targets given as a
// time can be related to the server's view of it.
func ServerNow(ctx context.Context, conn *pgx.Conn) (time.Time, error) {
	var t time.Time
	if err := conn.QueryRow(ctx, sqlNow).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("query server time: %w", err)
	}
	return t, nil
}

// archiver is what the server says of its WAL archiving.
type archiver struct {
	inRecovery               bool
	current                  string // the segment being written
	segSize                  int64
	lastArchived, lastFailed *time.Time
	failedWAL                *string
}

// archiverState asks the server at dsn how its archiver fares. A nil
// state means the server could not be reached; a state with an error,
// that it could not tell.
func archiverState(ctx context.Context, dsn string) (*archiver, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	st := &archiver{}
	if err := conn.QueryRow(ctx, sqlInRecovery).Scan(&st.inRecovery); err != nil {
		return st, err
	}
	if st.inRecovery {
		return st, nil
	}
	err = conn.QueryRow(ctx, sqlArchiver).Scan(&st.current, &st.segSize,
		&st.lastArchived, &st.lastFailed, &st.failedWAL)
	return st, err
}

// querySlot reads the stream's physical slot: whether a stream is
// connected, PostgreSQL's judgement of its WAL (wal_status, safe_wal_size)
// and how much WAL it holds back from the current position.
const querySlot = `SELECT active, coalesce(wal_status, ''),
	coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, restart_lsn), 0)::bigint,
	safe_wal_size
FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical'`
