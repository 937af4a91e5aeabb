package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBackupRefusesBrokenArchiving: each way WAL could fail to reach the
// asset is refused before the backup starts (not after the end-of-backup
// wait for WAL), in one line that names the archive_command to set,
// leaving no snapshot.
func TestBackupRefusesBrokenArchiving(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	good := e.sql("show archive_command")
	setArchive := func(cmd string) {
		t.Helper()
		e.sql(fmt.Sprintf("alter system set archive_command = '%s'", strings.ReplaceAll(cmd, "'", "''")))
		e.sql("select pg_reload_conf()")
		// The setting is read by the backup through SHOW; wait until the
		// reload took.
		if !eventually(10*time.Second, func() bool { return e.sql("show archive_command") == cmd }) {
			t.Fatalf("archive_command not reloaded")
		}
	}
	fix := fmt.Sprintf("archive_command = '%s -c %s wal-push db %%p'", e.bin, e.policy)
	refused := func(what, want string) {
		t.Helper()
		r := e.run("backup", "db")
		if r.code == 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, fix) || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("%s: exit %d, want one line with %q and %q:\n%s", what, r.code, want, fix, r.stderr)
		}
	}

	setArchive("")
	refused("empty archive_command", "archive_command is empty")
	setArchive(fmt.Sprintf("%s -c %s wal-push other %%p", e.bin, e.policy))
	refused("another asset", `archives into asset "other", not db`)
	setArchive("cp %p /tmp/somewhere/%f")
	refused("not lifeboat", "does not run lifeboat wal-push")
	// A command that names this asset but fails: the archiver reports it.
	setArchive("/bin/false wal-push db %p")
	e.sql("create table t as select 1")
	e.sql("select pg_switch_wal()")
	if !eventually(30*time.Second, func() bool { return e.sql("select last_failed_wal is not null from pg_stat_archiver") == "t" }) {
		t.Fatal("the archiver never failed")
	}
	refused("failing archiver", "the archiver is failing: archiving")

	setArchive(good)
	e.switchAndWait()
	e.mustRun("backup", "db")
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots, want only the one taken once archiving worked", n)
	}
}
