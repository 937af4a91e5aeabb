package postgres

import (
	"path"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Excluder decides which parts of a data directory a physical backup leaves
// out. The lists follow PostgreSQL's own base backup (basebackup.c and
// "Backing Up the Data Directory" in the manual): files the server
// recreates or resets at startup, files that belong to the running
// postmaster, and files that would be wrong in a restored cluster.
type Excluder struct {
	// Top-level directories kept as empty directories, so that their
	// permissions survive, while their contents are dropped.
	emptyDirs map[string]bool
	// Top-level files that are never copied.
	files map[string]bool
	// Directories inside pg_wal that a restored cluster expects to exist.
	walDirs map[string]bool
}

// NewExcluder returns the exclusion rules for PostgreSQL 15 and later.
func NewExcluder() *Excluder {
	return &Excluder{
		emptyDirs: map[string]bool{
			"pg_stat_tmp":  true, // temporary statistics, and pg_stat_statements' text file
			"pg_replslot":  true, // slots of the source server mean nothing to a restored one
			"pg_dynshmem":  true, // removed at startup
			"pg_notify":    true, // removed at startup
			"pg_serial":    true, // only kept for debugging
			"pg_snapshots": true, // exported snapshots, removed at startup
			"pg_subtrans":  true, // zeroed at startup
		},
		files: map[string]bool{
			"postmaster.pid":  true,
			"postmaster.opts": true,
			// The backup's own backup_label and tablespace_map come from
			// pg_backup_stop and are stored with the snapshot; stray copies
			// in the data directory would describe some other backup.
			"backup_label":    true,
			"tablespace_map":  true,
			"backup_manifest": true,
			// A restore decides for itself whether the copy recovers as a
			// standby; a signal file carried over would decide for it.
			"recovery.signal": true,
			"standby.signal":  true,
			// Half-written temporary files of ALTER SYSTEM and the logging
			// collector.
			"postgresql.auto.conf.tmp": true,
			"current_logfiles.tmp":     true,
			// What a restore into this directory wrote, for its next
			// delta restore; nothing the cluster's data holds.
			repo.RestoreRecordName:          true,
			repo.RestoreRecordName + ".tmp": true,
		},
		walDirs: map[string]bool{
			"archive_status": true,
			"summaries":      true, // PostgreSQL 17's WAL summaries
		},
	}
}

// ShouldSkip tells whether to leave relPath (relative to the data directory,
// '/'-separated) out of the backup. For a directory, skip means "do not
// descend"; keepDirEmpty then says the directory itself still belongs in
// the backup, empty. pg_wal is descended into (a symbolic link to a WAL
// directory elsewhere should be reported as a directory): its segments are
// skipped, archive_status is kept empty. Unlogged relations need the whole
// directory listing; see UnloggedRelations.
func (e *Excluder) ShouldSkip(relPath string, isDir bool) (skip, keepDirEmpty bool) {
	relPath = strings.Trim(path.Clean("/"+relPath), "/")
	if relPath == "" {
		return false, false
	}
	parts := strings.Split(relPath, "/")
	name := parts[len(parts)-1]

	// Temporary files of sorts and hashes, anywhere (base/pgsql_tmp, and
	// pgsql_tmp inside tablespaces).
	if strings.HasPrefix(name, "pgsql_tmp") {
		return true, false
	}
	top := parts[0]
	if len(parts) == 1 {
		switch {
		case isDir && e.emptyDirs[top]:
			return true, true
		case !isDir && e.files[top]:
			return true, false
		}
		return false, false
	}
	if e.emptyDirs[top] {
		return true, false
	}
	if top == "pg_wal" {
		if len(parts) == 2 && isDir && e.walDirs[name] {
			return true, true
		}
		return true, false
	}
	if isDir {
		return false, false
	}
	// The relation cache init file and its temporary copies are rebuilt at
	// startup.
	if strings.HasPrefix(name, "pg_internal.init") {
		return true, false
	}
	// Temporary tables vanish when the server restarts.
	if isDatabaseDir(parts[:len(parts)-1]) && looksLikeTempRelation(name) {
		return true, false
	}
	return false, false
}

// isDatabaseDir reports whether dir (split on '/') is base/<dboid> or
// pg_tblspc/<spcoid>/PG_<version>/<dboid>.
func isDatabaseDir(dir []string) bool {
	switch {
	case len(dir) == 2 && dir[0] == "base":
		return isOID(dir[1])
	case len(dir) == 4 && dir[0] == "pg_tblspc":
		return isOID(dir[1]) && strings.HasPrefix(dir[2], "PG_") && isOID(dir[3])
	}
	return false
}

// looksLikeTempRelation matches "t<backendid>_<relfilenode>[_fork][.seg]".
func looksLikeTempRelation(name string) bool {
	rest, ok := strings.CutPrefix(name, "t")
	if !ok {
		return false
	}
	backend, rel, ok := strings.Cut(rest, "_")
	if !ok || !allDigits(backend) {
		return false
	}
	_, ok = parseRelationName(rel)
	return ok
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// UnloggedRelations picks, from a list of data directory paths, the forks
// of unlogged relations that a backup should drop. An unlogged relation is
// recognised by its init fork ("<relfilenode>_init"); at the end of
// recovery PostgreSQL rebuilds the main fork from it and discards the rest,
// so only the init fork is worth copying. Paths are grouped by directory,
// so a list may span several directories, and bare file names work too.
func UnloggedRelations(files []string) map[string]bool {
	type relKey struct {
		dir  string
		node uint32
	}
	unlogged := make(map[relKey]bool)
	for _, f := range files {
		if rf, ok := parseRelationName(path.Base(f)); ok && rf.Fork == "init" {
			unlogged[relKey{path.Dir(f), rf.RelFileNode}] = true
		}
	}
	drop := make(map[string]bool)
	if len(unlogged) == 0 {
		return drop
	}
	for _, f := range files {
		rf, ok := parseRelationName(path.Base(f))
		if ok && rf.Fork != "init" && unlogged[relKey{path.Dir(f), rf.RelFileNode}] {
			drop[f] = true
		}
	}
	return drop
}
