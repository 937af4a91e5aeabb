package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestDrillRunsNothingFromTheSnapshot: the backed-up cluster's
// configuration names commands (archive_cleanup_command, as a standby's
// has, and recovery_end_command) and a library loaded into every session.
// The drill's server runs none of them: the commands' marker files are
// never made, and the server itself reports the settings empty (a check
// of the drill).
func TestDrillRunsNothingFromTheSnapshot(t *testing.T) {
	t.Parallel()
	markers := t.TempDir()
	cleanup, end := filepath.Join(markers, "archive-cleanup-ran"), filepath.Join(markers, "recovery-end-ran")
	e := startEnv(t, true, func(e *env) {
		e.assetExtra = `    drill:
      point: latest
      checks:
        - name: nothing of the snapshot's runs
          sql: "select current_setting('archive_cleanup_command') = '' and current_setting('recovery_end_command') = '' and current_setting('session_preload_libraries') = '' and current_setting('local_preload_libraries') = ''"
`
	})
	e.sql(fmt.Sprintf("alter system set archive_cleanup_command = 'touch %s'", cleanup))
	e.sql(fmt.Sprintf("alter system set recovery_end_command = 'touch %s'", end))
	e.sql("alter system set session_preload_libraries = 'auto_explain'")
	e.sql("select pg_reload_conf()")
	e.sql("create table t (id int primary key); insert into t select generate_series(1, 1000)")
	e.mustRun("backup", "db")
	e.sql("insert into t select generate_series(1001, 1500); checkpoint")
	e.switchAndWait()

	res, rep := e.drill()
	if res.code != 0 || rep == nil || !rep.Passed {
		t.Fatalf("drill: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for _, m := range []string{cleanup, end} {
		if _, err := os.Stat(m); !os.IsNotExist(err) {
			t.Errorf("%s: the snapshot's command ran on the drill host (%v)", filepath.Base(m), err)
		}
	}
}

// TestDrillOnS3: the drill's server gets none of the drill's environment
// but what its restore_command needs to call lifeboat back: the S3
// secret the policy reads from ${NAME} reaches wal-fetch, and the drill
// replays the WAL archived after the backup.
func TestDrillOnS3(t *testing.T) {
	t.Parallel()
	e, _, _ := newS3Env(t)
	e.ledgerHistory()
	e.mustRun("backup", "db")
	e.sql("insert into ledger select g, 'after' from generate_series(3001, 3500) g")
	e.switchAndWait()
	res, rep := e.drill()
	if res.code != 0 || rep == nil || !rep.Passed || rep.WALFiles < 1 {
		t.Fatalf("drill on S3: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}
