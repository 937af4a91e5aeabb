package main

import (
	"fmt"
	"os"
	"path/filepath"
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

	// A script that wraps wal-push (to time or log it) is read for its
	// wal-push line.
	script := func(asset string) string {
		t.Helper()
		path := filepath.Join(e.dir, "archive-"+asset+".sh")
		body := fmt.Sprintf("#!/bin/sh\n# times wal-push\nexec %s -c %s wal-push %s \"$1\"\n", e.bin, e.policy, asset)
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return path + " %p"
	}
	setArchive(script("other"))
	refused("a script for another asset", `runs the script `+filepath.Join(e.dir, "archive-other.sh")+`, whose wal-push line archives into asset "other", not db`)

	setArchive(script("db"))
	e.switchAndWait()
	e.mustRun("backup", "db")
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots, want only the one taken once archiving worked", n)
	}
}

// TestBackupWALWait: the end-of-backup wait for the last WAL segment gives
// up as soon as the archiver fails on it (not at the time limit), and at
// --archive-timeout when the segment never arrives; neither leaves a
// snapshot.
func TestBackupWALWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	gate := filepath.Join(e.dir, "gate")
	setArchive := func(cmd string) {
		t.Helper()
		e.sql(fmt.Sprintf("alter system set archive_command = '%s'", strings.ReplaceAll(cmd, "'", "''")))
		e.sql("select pg_reload_conf()")
		if !eventually(10*time.Second, func() bool { return e.sql("show archive_command") == cmd }) {
			t.Fatalf("archive_command not reloaded")
		}
	}
	oneLine := func(what string, r result, want string) {
		t.Helper()
		if r.code == 0 || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("%s: exit %d, want one line with %q:\n%s", what, r.code, want, r.stderr)
		}
		if n := len(e.snapshots()); n != 0 {
			t.Fatalf("%s: %d snapshots stored", what, n)
		}
	}

	// Archiving works until the gate appears, then fails: pre-flight sees
	// a healthy archiver, the segment pg_backup_stop ends fails.
	setArchive(fmt.Sprintf("test ! -e %s && %s -c %s wal-push db %%p", gate, e.bin, e.policy))
	e.switchAndWait()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("backup", "db", "--archive-timeout", "5m")
	oneLine("failing archiver", r, "the archiver failed on WAL segment")
	if !strings.Contains(r.stderr, fmt.Sprintf("it should be archive_command = '%s -c %s wal-push db %%p'", e.bin, e.policy)) {
		t.Fatalf("the refusal does not name the archive_command: %s", r.stderr)
	}

	// The archiver "succeeds" without storing: only the limit ends the wait.
	setArchive(fmt.Sprintf("test -e %s && exit 0; %s -c %s wal-push db %%p", gate, e.bin, e.policy))
	if !eventually(30*time.Second, func() bool {
		return e.sql("select last_archived_time > coalesce(last_failed_time, '-infinity') from pg_stat_archiver") == "t"
	}) {
		t.Fatal("the archiver did not recover")
	}
	r = e.run("backup", "db", "--archive-timeout", "2s")
	oneLine("archive timeout", r, "was not archived into "+"file://"+e.repo+" within 2s (--archive-timeout")
}
