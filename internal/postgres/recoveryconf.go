package postgres

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// RecoveryTarget says where point-in-time recovery stops. At most one of
// Time, LSN, XID, Name and Immediate may be set; none means "replay all
// archived WAL".
type RecoveryTarget struct {
	Time      *time.Time
	LSN       *lifeboat.LSN
	XID       *uint64
	Name      string // a restore point made with pg_create_restore_point
	Immediate bool   // stop as soon as the backup is consistent
	// Inclusive stops just after the target (PostgreSQL's default) rather
	// than just before it. It only applies to Time, LSN and XID targets and
	// is then always written, so the zero value means "exclusive".
	Inclusive bool
	// Timeline is "current", "latest" or a timeline number; empty leaves
	// PostgreSQL's default ("latest").
	Timeline string
	// Action is "pause", "promote" or "shutdown"; empty leaves PostgreSQL's
	// default ("pause").
	Action string
}

// recoveryKeys lists the settings WriteRecoveryConfig manages. All of them
// are removed from postgresql.auto.conf before the new ones are written, so
// that a target left by an earlier restore cannot combine with the new one.
func recoveryKeys() []string {
	return []string{
		"restore_command",
		"recovery_target",
		"recovery_target_time",
		"recovery_target_lsn",
		"recovery_target_xid",
		"recovery_target_name",
		"recovery_target_inclusive",
		"recovery_target_timeline",
		"recovery_target_action",
	}
}

// neutralKeys are settings of a restored configuration that would run a
// command on the restore host or load a library into every session:
// archive_cleanup_command runs at every restartpoint of the recovery (a
// standby's cleans its archive, which a drill host must never touch),
// recovery_end_command when it ends; session_preload_libraries and
// local_preload_libraries load code at each connection. What the snapshot
// says is not trusted to run: WriteRecoveryConfig empties each in
// postgresql.auto.conf, which wins over postgresql.conf and its includes.
// An operator who wants them back sets them again after the restore.
// shared_preload_libraries is kept on a restore (the data may need an
// extension's library, such as TimescaleDB's) and blanked on the
// command line of a drill's server (internal/pgdrill).
func neutralKeys() []string {
	return []string{"archive_cleanup_command", "recovery_end_command", "session_preload_libraries", "local_preload_libraries"}
}

// recoveryTimeLayout is an ISO 8601 timestamp with an explicit offset, which
// PostgreSQL's timestamptz input reads regardless of the server's TimeZone.
const recoveryTimeLayout = "2006-01-02 15:04:05.999999-07:00"

// maxRestorePointName is MAXFNAMELEN-1, the longest restore point name.
const maxRestorePointName = 63

// Validate checks the target the way PostgreSQL would at startup, so that a
// mistake surfaces before a restore is under way.
func (t RecoveryTarget) Validate() error {
	var set []string
	if t.Time != nil {
		set = append(set, "time")
	}
	if t.LSN != nil {
		set = append(set, "LSN")
	}
	if t.XID != nil {
		set = append(set, "XID")
	}
	if t.Name != "" {
		set = append(set, "name")
	}
	if t.Immediate {
		set = append(set, "immediate")
	}
	if len(set) > 1 {
		return fmt.Errorf("recovery target: at most one of time, LSN, XID, name and immediate may be given, got %s", strings.Join(set, ", "))
	}
	if len(t.Name) > maxRestorePointName {
		return fmt.Errorf("recovery target name %q is longer than %d bytes", t.Name, maxRestorePointName)
	}
	switch t.Action {
	case "", "pause", "promote", "shutdown":
	default:
		return fmt.Errorf("recovery target action %q: want pause, promote or shutdown", t.Action)
	}
	switch t.Timeline {
	case "", "current", "latest":
	default:
		if n, err := strconv.ParseUint(t.Timeline, 10, 32); err != nil || n == 0 {
			return fmt.Errorf("recovery target timeline %q: want current, latest or a timeline number", t.Timeline)
		}
	}
	return nil
}

// settings returns the recovery settings for the target, in a fixed order.
func (t RecoveryTarget) settings() [][2]string {
	var out [][2]string
	add := func(k, v string) { out = append(out, [2]string{k, v}) }
	pointTarget := true
	switch {
	case t.Time != nil:
		// UTC, because Go's offset layout drops the seconds of historical
		// offsets such as LMT and the instant would shift.
		add("recovery_target_time", t.Time.UTC().Format(recoveryTimeLayout))
	case t.LSN != nil:
		add("recovery_target_lsn", t.LSN.String())
	case t.XID != nil:
		add("recovery_target_xid", strconv.FormatUint(*t.XID, 10))
	case t.Name != "":
		add("recovery_target_name", t.Name)
		pointTarget = false
	case t.Immediate:
		add("recovery_target", "immediate")
		pointTarget = false
	default:
		pointTarget = false
	}
	if pointTarget {
		add("recovery_target_inclusive", strconv.FormatBool(t.Inclusive))
	}
	if t.Timeline != "" {
		add("recovery_target_timeline", t.Timeline)
	}
	if t.Action != "" {
		add("recovery_target_action", t.Action)
	}
	return out
}

// WriteRecoveryConfig prepares a restored data directory for archive
// recovery (PostgreSQL 12 and later): it writes the recovery settings into
// postgresql.auto.conf, replacing earlier values of the same settings and
// keeping everything else, and creates recovery.signal. It also blanks the
// settings neutralKeys lists. extra adds further
// settings (for example hot_standby or archive_mode) the same way. Files
// are replaced atomically and take the owner of the data directory, since a
// restore often runs as root for a server running as postgres.
func WriteRecoveryConfig(dataDir string, restoreCommand string, t RecoveryTarget, extra map[string]string) error {
	if restoreCommand == "" {
		return errors.New("write recovery config: restore_command is empty")
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("write recovery config: %w", err)
	}
	settings := append([][2]string{{"restore_command", restoreCommand}}, t.settings()...)
	for _, k := range neutralKeys() {
		if _, ok := extra[k]; !ok {
			settings = append(settings, [2]string{k, ""})
		}
	}
	extraKeys := make([]string, 0, len(extra))
	for k := range extra {
		extraKeys = append(extraKeys, k)
	}
	slices.Sort(extraKeys)
	for _, k := range extraKeys {
		if !validSettingName(k) {
			return fmt.Errorf("write recovery config: invalid setting name %q", k)
		}
		if slices.Contains(recoveryKeys(), strings.ToLower(k)) {
			return fmt.Errorf("write recovery config: %s is set from the recovery target, not as an extra setting", k)
		}
		settings = append(settings, [2]string{k, extra[k]})
	}
	for _, kv := range settings {
		if strings.ContainsAny(kv[1], "\x00\n\r") {
			return fmt.Errorf("write recovery config: value of %s contains a line break or NUL", kv[0])
		}
	}

	dirInfo, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("write recovery config: %w", err)
	}
	if !dirInfo.IsDir() {
		return fmt.Errorf("write recovery config: %s is not a directory", dataDir)
	}
	confPath := filepath.Join(dataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(confPath)
	mode, owner := fs.FileMode(0o600), dirInfo
	switch {
	case err == nil:
		if fi, err := os.Stat(confPath); err == nil {
			mode, owner = fi.Mode().Perm(), fi
		}
	case errors.Is(err, fs.ErrNotExist):
		old = []byte("# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n")
	default:
		return fmt.Errorf("write recovery config: %w", err)
	}

	drop := append(recoveryKeys(), neutralKeys()...)
	for _, k := range extraKeys {
		drop = append(drop, strings.ToLower(k))
	}
	merged, err := mergeAutoConf(old, drop, settings)
	if err != nil {
		return fmt.Errorf("write recovery config: read %s: %w", confPath, err)
	}

	if err := writeFileAtomic(confPath, merged, mode, owner); err != nil {
		return fmt.Errorf("write recovery config: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dataDir, "recovery.signal"), nil, 0o600, dirInfo); err != nil {
		return fmt.Errorf("write recovery config: %w", err)
	}
	return nil
}

// mergeAutoConf drops the lines of a postgresql.auto.conf that assign one of
// the settings in drop (lower case; setting names are case-insensitive) and
// appends settings, keeping every other line as it was.
func mergeAutoConf(old []byte, drop []string, settings [][2]string) ([]byte, error) {
	var buf bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if slices.Contains(drop, strings.ToLower(settingName(line))) {
			continue
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, kv := range settings {
		fmt.Fprintf(&buf, "%s = %s\n", kv[0], QuoteConfigValue(kv[1]))
	}
	return buf.Bytes(), nil
}

// QuoteConfigValue quotes s as a string in PostgreSQL's configuration file
// syntax. The file parser treats backslash as an escape inside quotes, so
// backslashes are doubled as well as single quotes.
func QuoteConfigValue(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'':
			b.WriteString("''")
		case '\\':
			b.WriteString(`\\`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// settingName returns the setting a configuration line assigns, or "" for
// comments, blank lines and anything else.
func settingName(line string) string {
	line = strings.TrimLeft(line, " \t")
	end := 0
	for end < len(line) && isSettingNameByte(line[end]) {
		end++
	}
	if end == 0 {
		return ""
	}
	rest := strings.TrimLeft(line[end:], " \t")
	// "name = value" or "name value"; "name" alone is not an assignment.
	if rest == "" || rest[0] == '#' {
		return ""
	}
	return line[:end]
}

func isSettingNameByte(c byte) bool {
	return c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validSettingName accepts the names PostgreSQL's configuration scanner
// reads as one identifier: a letter or underscore, then letters, digits,
// underscores, and dots for extension settings.
func validSettingName(s string) bool {
	if s == "" || s[0] == '.' || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isSettingNameByte(s[i]) {
			return false
		}
	}
	return true
}

// writeFileAtomic replaces path with data: temp file, fsync, rename, fsync
// of the directory, so a crash leaves either the old or the new file. The
// new file gets mode and, when running as root, the owner of ownerOf.
func writeFileAtomic(path string, data []byte, mode fs.FileMode, ownerOf fs.FileInfo) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if st, ok := ownerOf.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err = f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, err)
		}
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
