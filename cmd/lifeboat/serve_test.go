package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemonProc is a running lifeboat serve.
type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	code   int
}

func (e *env) serve(args ...string) *daemonProc {
	e.t.Helper()
	return e.serveWithEnv(nil, args...)
}

// serveWithEnv is env.serve with variables added to the daemon's
// environment.
func (e *env) serveWithEnv(vars []string, args ...string) *daemonProc {
	e.t.Helper()
	d := &daemonProc{t: e.t, stderr: &syncBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(e.bin, append([]string{"-c", e.policy, "serve", "--drain-interval", "1s"}, args...)...)
	if vars != nil {
		d.cmd.Env = append(os.Environ(), vars...)
	}
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		d.cmd.Wait()
		d.code = d.cmd.ProcessState.ExitCode()
		close(d.exited)
	}()
	e.t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.exited
		}
	})
	return d
}

func (d *daemonProc) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
}

// stop sends SIGTERM and returns the exit status.
func (d *daemonProc) stop(timeout time.Duration) int {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.code
	case <-time.After(timeout):
		d.t.Fatalf("serve did not stop within %s after SIGTERM:\n%s", timeout, d.stderr)
		return -1
	}
}

func (d *daemonProc) waitLog(what string, timeout time.Duration) {
	d.t.Helper()
	waitFor(d.t, timeout, "serve to log "+what, func() bool { return strings.Contains(d.stderr.String(), what) }, d.stderr.String)
}

// waitFor polls cond until it holds, failing the test after timeout. Many conditions run a
// lifeboat or psql process (some 50 ms of CPU each), so the interval grows from 10 ms to 250 ms:
// a quick condition is seen at once, and a long wait does not keep a core busy polling.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 10 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s\n%s", timeout, what, explain())
		}
		time.Sleep(interval)
		interval = min(interval*3/2, 250*time.Millisecond)
	}
}

// runs lists the runs the daemon recorded: the backups a test ran by hand
// (trigger manual) are left out.
func (e *env) runs(args ...string) []runRow {
	e.t.Helper()
	var rows []runRow
	out := e.mustRun(append([]string{"runs", "--json", "--limit", "0"}, args...)...)
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		e.t.Fatalf("runs --json: %v\n%s", err, out)
	}
	return slices.DeleteFunc(rows, func(r runRow) bool { return r.Trigger == string(scheduler.TriggerManual) })
}

func countRuns(rows []runRow, result string) int {
	n := 0
	for _, r := range rows {
		if r.Result == result {
			n++
		}
	}
	return n
}

// setAsset rewrites the policy with extra keys on the asset.
func (e *env) setAsset(extra string) {
	e.t.Helper()
	e.assetExtra = extra
	e.writePolicy(filepath.Join(e.dir, "repo.key"))
}

// everySecond is the fastest schedule there is: the tests wait for what
// it makes happen, never for a time.
const everySecond = "    schedule: \"@every 1s\"\n"

// TestServe runs the daemon on a real cluster: scheduled runs recorded with
// their snapshot and hooks, reloads, one daemon per state directory, and a
// clean stop.
func TestServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table ledger as select g from generate_series(1, 1000) g")
	envFile := filepath.Join(e.dir, "post-hook.env")
	e.setAsset(everySecond + fmt.Sprintf("    hooks:\n      pre: \"echo getting ready\"\n      post: \"env | grep ^LIFEBOAT_ | sort > %s\"\n", envFile))
	if out := e.mustRun("runs"); !strings.Contains(out, "no runs recorded") {
		t.Fatalf("runs before any daemon: %s", out)
	}
	if r := e.run("runs", "nope"); r.code != 2 || !strings.Contains(r.stderr, `unknown asset "nope"`) {
		t.Fatalf("runs of an unknown asset: exit %d: %s", r.code, r.stderr)
	}
	d := e.serve()
	waitFor(t, 60*time.Second, "an ok run", func() bool { return countRuns(e.runs(), "ok") >= 1 }, d.stderr.String)

	// The record names the snapshot the repository holds.
	var ok runRow
	for _, r := range e.runs("db") {
		if r.Result == "ok" {
			ok = r
			break
		}
	}
	if ok.Asset != "db" || ok.Kind != "postgres" || ok.Trigger != "schedule" || ok.Slot.IsZero() || ok.End.Before(ok.Start) ||
		ok.Bytes <= 0 || ok.Error != "" || !strings.Contains(ok.HookOutput, "getting ready") {
		t.Fatalf("ok run recorded as %+v", ok)
	}
	found := false
	for _, s := range e.snapshots() {
		found = found || s.ID == ok.Snapshot
	}
	if !found {
		t.Fatalf("run names snapshot %s, which the repository does not list", ok.Snapshot)
	}
	waitFor(t, 10*time.Second, "the post hook", func() bool {
		env, _ := os.ReadFile(envFile)
		return strings.Contains(string(env), "LIFEBOAT_RESULT=ok")
	}, d.stderr.String)
	env, _ := os.ReadFile(envFile)
	for _, want := range []string{"LIFEBOAT_ASSET=db", "LIFEBOAT_KIND=postgres", "LIFEBOAT_SNAPSHOT=", "LIFEBOAT_TRIGGER=schedule"} {
		if !strings.Contains(string(env), want) {
			t.Fatalf("post hook environment lacks %s:\n%s", want, env)
		}
	}

	// A second daemon on the same state directory is refused.
	second := e.serve()
	select {
	case <-second.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("a second daemon on the same state directory keeps running")
	}
	if second.code == 0 || !strings.Contains(second.stderr.String(), "another lifeboat serve is running") {
		t.Fatalf("second daemon: exit %d: %s", second.code, second.stderr)
	}

	// A broken policy on SIGHUP is refused; the old schedule keeps running
	// (the file is put back, without a reload, for its runs to succeed).
	good, _ := os.ReadFile(e.policy)
	os.WriteFile(e.policy, append([]byte("bogus_key: 1\n"), good...), 0o600)
	d.signal(syscall.SIGHUP)
	d.waitLog("reload refused", 10*time.Second)
	if !strings.Contains(d.stderr.String(), "bogus_key") {
		t.Fatalf("refusal does not say why:\n%s", d.stderr)
	}
	os.WriteFile(e.policy, good, 0o600)
	before := countRuns(e.runs(), "ok")
	waitFor(t, 60*time.Second, "another ok run after a refused reload", func() bool { return countRuns(e.runs(), "ok") > before }, d.stderr.String)

	// A valid policy without the schedule replaces it: no more runs (the
	// daemon's tests prove it on a fake clock; here two more periods of
	// the old schedule pass without a run).
	e.setAsset("")
	d.signal(syscall.SIGHUP)
	d.waitLog(`msg="policy reloaded" assets=1 scheduled=0`, 10*time.Second)
	reloaded := time.Now()
	waitFor(t, 60*time.Second, "the last run to end", func() bool { return countRuns(e.runs(), "running") == 0 }, d.stderr.String)
	n := len(e.runs())
	time.Sleep(time.Until(reloaded.Add(2 * time.Second)))
	if rows := e.runs(); len(rows) != n {
		t.Fatalf("runs went on after the schedule was removed: %d, then %d", n, len(rows))
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, d.stderr)
	}
	if !strings.Contains(d.stderr.String(), `msg="run started"`) || !strings.Contains(d.stderr.String(), `msg="run ended"`) {
		t.Fatalf("serve did not log runs:\n%s", d.stderr)
	}
	if got := e.runs("--limit", "1"); len(got) != 1 {
		t.Fatalf("--limit 1 listed %d runs", len(got))
	}
}

// TestServeStopDuringBackup stops the daemon while a backup waits for its
// WAL to be archived: the run is recorded as aborted, no snapshot is left,
// the repository verifies, and the next start makes the run up.
func TestServeStopDuringBackup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table ledger as select g from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	snapsBefore := len(e.snapshots())
	// A backup waits until its WAL is archived: with the archive_command
	// held at a gate, the backup hangs there. (An empty
	// archive_command would be refused before the backup starts.)
	gate := filepath.Join(e.dir, "archive-gate")
	held := fmt.Sprintf("while [ ! -e %s ]; do sleep 0.1; done; %s -c %s wal-push db %%p", gate, e.bin, e.policy)
	e.sql(fmt.Sprintf("alter system set archive_command = '%s'", held))
	e.sql("select pg_reload_conf()")
	waitFor(t, 10*time.Second, "the held archive_command", func() bool { return e.sql("show archive_command") == held }, func() string { return "" })
	e.setAsset(everySecond)
	d := e.serve("--stop-timeout", "30s")
	// pg_backup_stop has run once the backup history file waits to be
	// archived; the backup then waits for its last segment.
	waitFor(t, 30*time.Second, "the backup to wait for its WAL", func() bool {
		return e.sql("select count(*) from pg_ls_archive_statusdir() where name like '%.backup.ready'") == "1"
	}, d.stderr.String)
	if code := d.stop(40 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, d.stderr)
	}
	// Slots that came meanwhile were skipped (the backup hung); the one
	// run that started is aborted.
	var rows []runRow
	for _, r := range e.runs() {
		if r.Result != "skipped" {
			rows = append(rows, r)
		} else if !strings.Contains(r.Error, "still going") {
			t.Fatalf("skipped run says %q", r.Error)
		}
	}
	if len(rows) != 1 || rows[0].Result != "aborted" || rows[0].Snapshot != "" || !strings.Contains(rows[0].Error, "daemon stopped") {
		t.Fatalf("runs after a stop during a backup: %+v\n%s", rows, d.stderr)
	}
	if n := len(e.snapshots()); n != snapsBefore {
		t.Fatalf("%d snapshots after the aborted run, want %d", n, snapsBefore)
	}
	if r := e.run("verify"); r.code != 0 {
		t.Fatalf("verify after an aborted run: %s%s", r.stdout, r.stderr)
	}

	// Archiving back, the daemon back: the aborted run is made up at once.
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.sql("alter system reset archive_command")
	e.sql("select pg_reload_conf()")
	e.setAsset("    schedule: \"@every 1h\"\n")
	d = e.serve()
	waitFor(t, 60*time.Second, "the catch-up run", func() bool { return countRuns(e.runs(), "ok") == 1 }, d.stderr.String)
	rows = e.runs("--limit", "1")
	if rows[0].Trigger != "catch-up" || rows[0].Result != "ok" {
		t.Fatalf("run after the restart: %+v", rows[0])
	}
	if n := len(e.snapshots()); n != snapsBefore+1 {
		t.Fatalf("%d snapshots after the catch-up, want %d", n, snapsBefore+1)
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, d.stderr)
	}
}

// TestServeFailingPreHook: the run stops at the hook, whose output is in
// the record; the backup does not run; the post hook learns the result.
//
// It runs alone, before the parallel tests: it reads the newest run, which under load could be a
// slot skipped while the failing run was still going.
func TestServeFailingPreHook(t *testing.T) {
	e := newEnv(t, false)
	envFile := filepath.Join(e.dir, "post-hook.env")
	e.setAsset(everySecond + fmt.Sprintf("    hooks:\n      pre: \"echo checking space; echo disk full >&2; exit 3\"\n"+
		"      post: \"env | grep ^LIFEBOAT_ > %s\"\n      timeout: 10s\n", envFile))
	d := e.serve()
	waitFor(t, 30*time.Second, "a failed run", func() bool { return countRuns(e.runs(), "failed") >= 1 }, d.stderr.String)
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, d.stderr)
	}
	r := e.runs()[0]
	if r.Result != "failed" || r.Error != "pre hook exited with status 3: disk full" || r.Snapshot != "" ||
		!strings.Contains(r.HookOutput, "checking space") || !strings.Contains(r.HookOutput, "disk full") || r.Output != "" {
		t.Fatalf("run with a failing pre hook recorded as %+v", r)
	}
	if n := len(e.snapshots()); n != 0 {
		t.Fatalf("%d snapshots after failing pre hooks", n)
	}
	env, _ := os.ReadFile(envFile)
	if !strings.Contains(string(env), "LIFEBOAT_RESULT=failed") || !strings.Contains(string(env), "LIFEBOAT_ERROR=pre hook exited with status 3") {
		t.Fatalf("post hook environment:\n%s", env)
	}
}

// newBareEnv is a policy whose assets need no server: their backups fail
// at once (no repository), which is all the tests of hooks and workers
// need. assets is the YAML of the asset list.
func newBareEnv(t *testing.T, assets string) *env {
	t.Helper()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: t.TempDir()}
	e.policy = filepath.Join(e.dir, "lifeboat.yaml")
	policy := fmt.Sprintf("state_dir: %s\nrepositories:\n  - name: primary\n    url: file://%s\n    key_file: %s\nassets:\n%s",
		filepath.Join(e.dir, "state"), filepath.Join(e.dir, "repo"), filepath.Join(e.dir, "repo.key"), assets)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func bareAsset(name, extra string) string {
	return fmt.Sprintf("  - name: %s\n    kind: postgres\n    pgdata: /nonexistent/%s\n    dsn: \"host=/nonexistent\"\n    repositories: [primary]\n%s", name, name, extra)
}

// TestServeKillsAtStopBound: a pre hook that ignores SIGTERM is killed
// with its process group at --stop-timeout; the run is aborted and the
// daemon says it had to kill.
func TestServeKillsAtStopBound(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "hook-running")
	e := newBareEnv(t, bareAsset("db", everySecond+fmt.Sprintf("    hooks:\n      pre: \"trap '' TERM; touch %s; sleep 60\"\n", marker)))
	d := e.serve("--stop-timeout", "1s")
	waitFor(t, 20*time.Second, "the pre hook", func() bool { _, err := os.Stat(marker); return err == nil }, d.stderr.String)
	start := time.Now()
	if code := d.stop(20 * time.Second); code != 1 || time.Since(start) > 10*time.Second {
		t.Fatalf("serve exited %d after %s:\n%s", code, time.Since(start), d.stderr)
	}
	if !strings.Contains(d.stderr.String(), "were killed") {
		t.Fatalf("serve does not say it killed:\n%s", d.stderr)
	}
	var r runRow
	for _, row := range e.runs() {
		if row.Result != "skipped" {
			r = row
		}
	}
	if r.Result != "aborted" || r.Error != "the daemon stopped during the pre hook" {
		t.Fatalf("run killed at the bound recorded as %+v", r)
	}
	if out, _ := exec.Command("pgrep", "-f", "touch "+marker).Output(); len(out) > 0 {
		t.Fatalf("the hook's processes outlived the daemon: %s", out)
	}
}

// TestServeBoundsWorkers: with --jobs 1, runs of three assets due together
// never overlap; a slot that comes while its asset waits for the worker is
// skipped.
func TestServeBoundsWorkers(t *testing.T) {
	t.Parallel()
	hook := "    hooks:\n      pre: \"sleep 1\"\n"
	e := newBareEnv(t, bareAsset("a", everySecond+hook)+bareAsset("b", everySecond+hook)+bareAsset("c", everySecond+hook))
	d := e.serve("--jobs", "1")
	waitFor(t, 30*time.Second, "runs of every asset", func() bool {
		seen := map[string]bool{}
		for _, r := range e.runs() {
			if r.Result == "failed" {
				seen[r.Asset] = true
			}
		}
		return len(seen) == 3
	}, d.stderr.String)
	if code := d.stop(20 * time.Second); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, d.stderr)
	}
	var ran []runRow
	waiting := false
	for _, r := range e.runs() {
		switch r.Result {
		case "skipped":
			waiting = waiting || strings.Contains(r.Error, "waiting for a free worker")
		case "failed":
			if !strings.Contains(r.Error, "repository") && !strings.Contains(r.Error, "connect") {
				t.Fatalf("run failed for another reason than the missing server: %+v", r)
			}
			ran = append(ran, r)
		case "aborted":
			ran = append(ran, r)
		default:
			t.Fatalf("unexpected run %+v", r)
		}
	}
	for i, x := range ran {
		for _, y := range ran[i+1:] {
			if x.Start.Before(y.End) && y.Start.Before(x.End) {
				t.Fatalf("runs overlap with --jobs 1:\n%+v\n%+v", x, y)
			}
		}
	}
	if !waiting {
		t.Fatalf("no slot skipped while its asset waited for the worker:\n%s", d.stderr)
	}
}

// TestServeStopDuringDump stops the daemon while pg_dump waits for a lock
// another session holds: no snapshot of the broken dump, the repository
// verifies, and the daemon's next start makes the run up.
func TestServeStopDuringDump(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, everySecond)
	e.pg.Psql(t, "app", "create table ledger as select g from generate_series(1, 1000) g")
	lock := exec.Command(filepath.Join(pgtest.PGBin(t), "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", e.pg.DSN("app"))
	stdin, err := lock.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	locked := &syncBuffer{}
	lock.Stdout, lock.Stderr = locked, locked
	if err := lock.Start(); err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(func() { stdin.Close(); lock.Wait() })
	t.Cleanup(release)
	fmt.Fprintln(stdin, "begin; lock table ledger in access exclusive mode; select 'locked';")
	waitFor(t, 10*time.Second, "the table lock", func() bool { return strings.Contains(locked.String(), "locked") }, locked.String)

	d := e.serve("--stop-timeout", "30s")
	waitFor(t, 30*time.Second, "pg_dump to wait for the lock", func() bool {
		return e.sql("select count(*) from pg_stat_activity where application_name = 'pg_dump' and wait_event_type = 'Lock'") == "1"
	}, d.stderr.String)
	if code := d.stop(40 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, d.stderr)
	}
	var rows []runRow
	for _, r := range e.runs() {
		if r.Result != "skipped" {
			rows = append(rows, r)
		}
	}
	if len(rows) != 1 || rows[0].Result != "aborted" || rows[0].Kind != "pg_dump" || rows[0].Snapshot != "" {
		t.Fatalf("runs after a stop during a dump: %+v\n%s", rows, d.stderr)
	}
	t.Logf("the stopped dump's record: %s", rows[0].Error)
	if n := len(e.dumpSnapshots()); n != 0 {
		t.Fatalf("%d snapshots of a dump that was stopped", n)
	}
	if r := e.run("verify"); r.code != 0 {
		t.Fatalf("verify after a stopped dump: %s%s", r.stdout, r.stderr)
	}

	release()
	text, _ := os.ReadFile(e.policy)
	os.WriteFile(e.policy, bytes.Replace(text, []byte("@every 1s"), []byte("@every 1h"), 1), 0o600)
	d = e.serve()
	waitFor(t, 60*time.Second, "the catch-up run", func() bool { return countRuns(e.runs(), "ok") == 1 }, d.stderr.String)
	if r := e.runs("--limit", "1")[0]; r.Trigger != "catch-up" || r.Snapshot == "" {
		t.Fatalf("run after the restart: %+v", r)
	}
	if n := len(e.dumpSnapshots()); n != 1 {
		t.Fatalf("%d snapshots after the catch-up, want 1", n)
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, d.stderr)
	}
}

// TestServeChildKilled: a backup child that dies without reporting its
// result (here SIGKILL, while it waits for a server that never answers) is
// recorded failed with how it ended; the daemon reads no output for it.
func TestServeChildKilled(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // accepts, never answers
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	e := newBareEnv(t, fmt.Sprintf("  - name: db\n    kind: postgres\n    pgdata: /nonexistent/db\n"+
		"    dsn: \"host=127.0.0.1 port=%d connect_timeout=60 sslmode=disable\"\n    repositories: [primary]\n%s", port, everySecond))
	e.mustRun("repo", "init")
	d := e.serve()
	var pid int
	waitFor(t, 30*time.Second, "the backup child", func() bool {
		out, _ := exec.Command("pgrep", "-f", "--", "-c "+e.policy+" backup db$").Output()
		pid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
		return pid > 0
	}, d.stderr.String)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var r runRow
	waitFor(t, 30*time.Second, "the run to end", func() bool {
		for _, row := range e.runs() {
			if row.Result != "skipped" && row.Result != "running" {
				r = row
			}
		}
		return r.Result != ""
	}, d.stderr.String)
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, d.stderr)
	}
	if r.Result != "failed" || r.Error != "backup killed by signal killed" || r.Snapshot != "" {
		t.Fatalf("killed child recorded as %+v\n%s", r, d.stderr)
	}
}
