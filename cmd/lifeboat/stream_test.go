package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/health"
)

// lifeboat serve streams the WAL of an asset with wal: {stream: true},
// beside archive_command (wal-push) as a second path: both store the same
// segments without a conflict. The server crashes with commits only in the
// segment in progress; a restore to latest gets them back from the
// streamed partial, which wal-fetch hands to recovery as the last segment.
func TestServeStreamsWALAndRestoresToLatest(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false, func(e *env) { e.assetExtra = "    wal: {stream: true, flush_interval: 100ms}\n" })
	e.sql("create table ledger (id int primary key, note text)")
	e.mustRun("backup", "db")
	d := e.serve()
	d.waitLog("WAL stream started", 60*time.Second)
	e.sql("insert into ledger select g, 'bulk' from generate_series(1, 50000) g")
	e.switchAndWait() // a full segment by both paths
	const n = 20
	for i := 50001; i <= 50000+n; i++ {
		e.sql("insert into ledger values (" + strconv.Itoa(i) + ", 'one by one')")
	}
	// Every commit is durable in the repository once the stream reports
	// it flushed.
	end := e.sql("select pg_current_wal_lsn()")
	waitFor(t, 30*time.Second, "the stream to flush "+end, func() bool {
		return e.sql("select count(*) from pg_stat_replication where application_name = 'lifeboat_db' and flush_lsn >= '"+end+"'") == "1"
	}, d.stderr.String)
	if f := e.sql("select failed_count from pg_stat_archiver"); f != "0" {
		t.Fatalf("archive_command failed %s times beside the stream\n%s", f, e.pg.Psql(t, "postgres", "select * from pg_stat_archiver"))
	}
	e.pg.StopImmediate(t) // the crash: the segment in progress was never archived
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exit %d\n%s", code, d.stderr)
	}
	c := e.restoreAndStart()
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != strconv.Itoa(50000+n) {
		t.Fatalf("restored %s rows, want %d", got, 50000+n)
	}
}

// check's wal_slot item: passes while the stream keeps up, fails with
// guidance about max_slot_wal_keep_size once the stream is down and the
// slot holds more WAL than slot_max_retained.
func TestCheckAlertsOnRetainedWAL(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false, func(e *env) { e.assetExtra = "    wal: {stream: true, slot_max_retained: 4MiB}\n" })
	if r, _ := e.slotCheck(); r.OK || !strings.Contains(r.Message, "does not exist") {
		t.Fatalf("before any stream: %+v", r)
	}
	stream := exec.Command(e.bin, "-c", e.policy, "wal-stream", "db")
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	defer stream.Process.Kill()
	waitFor(t, 60*time.Second, "the stream to connect", func() bool {
		return e.sql("select count(*) from pg_stat_replication where application_name = 'lifeboat_db'") == "1"
	}, func() string { return "" })
	// A new slot reserves WAL from the last checkpoint's redo point: it
	// passes once the stream has stored what the slot held back.
	var r health.Result
	var code int
	waitFor(t, 60*time.Second, "the check to pass while streaming", func() bool {
		r, _ = e.slotCheck()
		return r.OK
	}, func() string { return fmt.Sprintf("%+v", r) })
	stream.Process.Signal(syscall.SIGTERM)
	stream.Wait()
	e.sql("create table filler as select repeat('x', 1000) as pad from generate_series(1, 20000)")
	e.switchAndWait()
	r, code = e.slotCheck()
	if r.OK || code == 0 || !strings.Contains(r.Message, "more than slot_max_retained 4.0 MiB (no stream connected)") ||
		!strings.Contains(r.Message, "max_slot_wal_keep_size") {
		t.Fatalf("stream down, slot past its threshold: exit %d, %+v", code, r)
	}
}

// slotCheck runs check and returns its wal_slot item and the exit code.
func (e *env) slotCheck() (health.Result, int) {
	e.t.Helper()
	res := e.run("check", "--json")
	var rs []health.Result
	if err := json.Unmarshal([]byte(res.stdout), &rs); err != nil {
		e.t.Fatalf("check --json: exit %d: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	for _, r := range rs {
		if r.Asset == "db" && r.Check == health.CheckWALSlot {
			return r, res.code
		}
	}
	e.t.Fatalf("check has no %s item: %s", health.CheckWALSlot, res.stdout)
	return health.Result{}, 0
}
