package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
)

// addFileCopy adds a copy repository in dir to the policy and initialises
// it.
func (e *env) addFileCopy(dir string) {
	e.t.Helper()
	policy, err := os.ReadFile(e.policy)
	if err != nil {
		e.t.Fatal(err)
	}
	text := strings.Replace(string(policy), "tiers:", fmt.Sprintf(`  - name: dr-copy
    url: file://%s
    key_file: %s
tiers:`, dir, filepath.Join(e.dir, "dr.key")), 1)
	text = strings.Replace(text, "repositories: [primary]", "repositories: [primary, dr-copy]", 1)
	if err := os.WriteFile(e.policy, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.mustRun("repo", "init", "dr-copy")
}

// status runs status --json; it may exit 1 when a repository is
// unreachable, and still prints what it saw.
func (e *env) status() (map[string]statusRow, int) {
	e.t.Helper()
	r := e.run("status", "--json")
	var rows []statusRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		e.t.Fatalf("status --json: exit %d: %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	out := make(map[string]statusRow)
	for _, row := range rows {
		out[row.Repository] = row
	}
	return out, r.code
}

// waitCopyCaughtUp waits until the copy holds every WAL file of the
// primary and its queue is empty.
func (e *env) waitCopyCaughtUp(within time.Duration) statusRow {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		rows, code := e.status()
		cp := rows["dr-copy"]
		if code == 0 && copyCaughtUp(rows) {
			return cp
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the copy did not catch up within %s: %+v %+v", within, cp, cp.Lag)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func copyCaughtUp(rows map[string]statusRow) bool {
	cp := rows["dr-copy"]
	return cp.Lag != nil && cp.Lag.WALFiles == 0 && cp.Lag.Queue != nil && cp.Lag.Queue.Entries == 0 &&
		cp.NewestWAL == rows["primary"].NewestWAL
}

// waitDrainerGone waits until no background drainer holds the queue.
func waitDrainerGone(t *testing.T, dir string) {
	t.Helper()
	q, err := copyqueue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		if busy, err := q.Busy(); err != nil || !busy {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the background drainer did not finish")
}

// TestWALCopyQueue: wal-push queues each WAL file for the copy and a
// background drainer sends it; an unreachable copy does not stop archiving,
// the queue keeps the files (their bytes: the copy is filled even while
// the primary is gone too), and the copy then restores alone.
func TestWALCopyQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	dr := filepath.Join(e.dir, "dr")
	e.addFileCopy(dr)
	queue := filepath.Join(e.dir, "state", "copy-queue", "dr-copy")

	e.sql("create table t (i int)")
	e.sql("insert into t select generate_series(1, 1000)")
	if out := e.mustRun("backup", "db"); !strings.Contains(out, "to dr-copy") {
		t.Fatalf("backup did not copy its snapshot to the copy:\n%s", out)
	}
	e.sql("insert into t select generate_series(1001, 2000)")
	e.switchAndWait()
	cp := e.waitCopyCaughtUp(30 * time.Second)
	if cp.Snapshots != 1 || cp.Lag.Snapshots != 0 || cp.Lag.Queue.LastError != "" {
		t.Fatalf("caught-up copy: %+v %+v", cp, cp.Lag)
	}

	// The copy's region is out of reach: archiving goes on, the queue grows.
	waitDrainerGone(t, queue)
	if err := os.Rename(dr, dr+"-away"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.sql(fmt.Sprintf("insert into t select generate_series(%d, %d)", 2001+i*1000, 3000+i*1000))
		e.switchAndWait()
	}
	waitDrainerGone(t, queue)
	// A backup is stored, and says that its copy is not.
	r := e.run("backup", "db")
	if r.code != 1 || !strings.Contains(r.stderr, "is stored in primary, but copy to dr-copy") ||
		strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("backup with the copy unreachable: exit %d: %s", r.code, r.stderr)
	}
	rows, code := e.status()
	cp = rows["dr-copy"]
	if code != 1 || cp.Error == "" || rows["primary"].Snapshots != 2 || cp.Lag == nil || cp.Lag.Queue == nil || cp.Lag.Queue.Entries < 3 ||
		!strings.Contains(cp.Lag.Queue.LastError, "does not exist") {
		t.Fatalf("status with the copy unreachable: exit %d, %+v, lag %+v", code, cp, cp.Lag)
	}
	if out := e.run("status"); !strings.Contains(out.stdout, "the last copy from the queue failed") {
		t.Fatalf("status text does not name the failure:\n%s", out.stdout)
	}

	// Now the primary is gone as well: the queue holds the stored bytes.
	e.pg.Stop(t)
	// The shutdown archives one last segment and starts a drainer; a
	// queued-only copy leaves a queue that drainer holds, so wait it out.
	waitDrainerGone(t, queue)
	if err := os.Rename(e.repo, e.repo+"-away"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dr+"-away", dr); err != nil {
		t.Fatal(err)
	}
	e.mustRun("copy", "--queued")
	if err := os.Rename(e.repo+"-away", e.repo); err != nil {
		t.Fatal(err)
	}
	cp = e.waitCopyCaughtUp(30 * time.Second)
	if cp.Lag.Queue.LastError != "" {
		t.Fatalf("a drained queue still reports %q", cp.Lag.Queue.LastError)
	}

	c := e.restoreAndStart("--repository", "dr-copy")
	if got := c.Psql(t, "postgres", "select count(*) from t"); got != "5000" {
		t.Fatalf("restored %s rows from the copy, want 5000", got)
	}
}

// TestWALPushFailsWithoutQueue: a WAL file that cannot be queued for a
// copy is not reported archived, so PostgreSQL keeps it and retries.
func TestWALPushFailsWithoutQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.addFileCopy(filepath.Join(e.dir, "dr"))
	e.switchAndWait()
	blocked := filepath.Join(e.dir, "not-a-dir")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	policy, _ := os.ReadFile(e.policy)
	text := strings.Replace(string(policy), "state_dir: "+filepath.Join(e.dir, "state"), "state_dir: "+blocked, 1)
	if err := os.WriteFile(e.policy, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(e.pg.DataDir, "pg_wal", e.sql("select pg_walfile_name(pg_current_wal_lsn())"))
	r := e.run("wal-push", "db", seg)
	if r.code == 0 || !strings.Contains(r.stderr, "state_dir "+blocked) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("wal-push with an unusable state_dir: exit %d: %s", r.code, r.stderr)
	}
}
