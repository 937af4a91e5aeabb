package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
)

func TestMain(m *testing.M) {
	// Every incremental the tests take proves its WAL-derived block set
	// against a full read (backup --check-blocks).
	os.Setenv(postgres.EnvCheckBlocks, "1")
	os.Exit(pgtest.RunMain(m, pgtest.MainOptions{Build: []string{"./cmd/lifeboat", "./cmd/lifeboat-walpush"}}))
}

// The tests of this package run in parallel (t.Parallel; make test runs several per core): each
// has its own temporary directories, cluster, repository and servers, and spends most of its time
// waiting on them. A test that needs an environment variable uses one named for it alone (testEnv),
// not t.Setenv, which forbids t.Parallel. The tests that do not call t.Parallel run first, one at a
// time, before the parallel ones start.

// envSeq numbers the environment variables testEnv creates.
var envSeq atomic.Int64

// testEnv sets an environment variable, whose name is prefix followed by a number no other test
// uses, to value until the test ends, and returns its name. The environment belongs to the process,
// and the servers and commands a test starts inherit it, so a name of its own is what lets tests
// that set one run in parallel. Change the value with os.Setenv(name, ...).
func testEnv(t *testing.T, prefix, value string) string {
	t.Helper()
	name := fmt.Sprintf("%s_%d", prefix, envSeq.Add(1))
	if err := os.Setenv(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Unsetenv(name) })
	return name
}

// env is one cluster protected by lifeboat: a policy, a repository and a
// running server archiving into it.
type env struct {
	t      *testing.T
	bin    string
	dir    string
	policy string
	repo   string // the local repository directory (file repositories)
	// repoURL and repoCreds, when set, put the repository elsewhere (S3).
	repoURL   string
	repoCreds string
	// assetExtra is added to the asset's entry in the policy (retention).
	assetExtra string
	pg         *pgtest.Cluster
}

// newEnv starts a cluster whose archive_command is lifeboat wal-push and
// initialises a repository for it.
func newEnv(t *testing.T, checksums bool) *env {
	t.Helper()
	return startEnv(t, checksums, nil)
}

// forTest is the env for a subtest: the same cluster and repository, with
// failures and temporary directories going to t.
func (e *env) forTest(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// startEnv is newEnv with a hook that may point the repository elsewhere
// before the policy is written.
func startEnv(t *testing.T, checksums bool, configure func(*env)) *env {
	t.Helper()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: t.TempDir()}
	e.repo = filepath.Join(e.dir, "repo")
	e.repoURL = "file://" + e.repo
	if configure != nil {
		configure(e)
	}
	e.policy = filepath.Join(e.dir, "lifeboat.yaml")
	archive := fmt.Sprintf("%s -c %s wal-push db %%p", e.bin, e.policy)
	e.pg = pgtest.Start(t, pgtest.Options{Checksums: checksums, NoStart: true, Conf: map[string]string{
		"archive_mode": "on", "archive_command": archive, "wal_level": "replica", "archive_timeout": "0",
	}})
	e.writePolicy(filepath.Join(e.dir, "repo.key"))
	e.pg.Start(t)
	e.mustRun("repo", "init")
	return e
}

func (e *env) writePolicy(keyFile string) {
	e.t.Helper()
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: %s
    key_file: %s%s
tiers:
  critical: { rpo: 5m, rto: 1h }
assets:
  - name: db
    kind: postgres
    tier: critical
    pgdata: %s
    dsn: "%s"
    repositories: [primary]
%s`, filepath.Join(e.dir, "state"), e.repoURL, keyFile, e.repoCreds, e.pg.DataDir, e.pg.DSN("postgres"), e.assetExtra)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// eventually polls cond every 10ms until it holds or timeout passes, and
// reports whether it held. It replaces fixed sleeps: the caller asserts
// what it needs afterwards, so a timeout fails the same check a too short
// sleep would have.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

type result struct {
	code   int
	stdout string
	stderr string
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return runCommand(e.t, exec.Command(e.bin, append([]string{"-c", e.policy}, args...)...))
}

// runCommand runs cmd to its end and gives its exit status and output; a
// command that cannot run at all fails the test.
func runCommand(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("lifeboat %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (e *env) sql(q string) string {
	e.t.Helper()
	return e.pg.Psql(e.t, "postgres", q)
}

// switchAndWait forces the current WAL segment out and waits until the
// archiver has pushed it.
func (e *env) switchAndWait() {
	e.t.Helper()
	switchAndWait(e.t, e.pg)
}

func switchAndWait(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	// One psql, two statements in order: the segment's name is read before the switch ends it.
	out := c.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn()); select pg_switch_wal()")
	seg, _, _ := strings.Cut(out, "\n")
	c.WaitArchived(t, seg, 60*time.Second)
}

type snapshotJSON struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	StopLSN      string `json:"stop_lsn"`
	Parent       string `json:"parent"`
	ListsPatched int    `json:"lists_patched"`
}

func (e *env) snapshots() []snapshotJSON {
	e.t.Helper()
	var s []snapshotJSON
	if err := json.Unmarshal([]byte(e.mustRun("snapshots", "db", "--json")), &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// restoreAndStart restores with the given flags into a new directory,
// starts the server there and waits for recovery to finish.
func (e *env) restoreAndStart(args ...string) *pgtest.Cluster {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "restored")
	e.mustRun(append([]string{"restore", "db", "--to", dir, "--archive-off"}, args...)...)
	c := pgtest.Open(e.t, dir, nil)
	c.WaitRecoveryDone(e.t, 120*time.Second)
	return c
}

// treeDigest summarises a directory's files, to show that a failed command
// changed nothing: one line per file, its path and content hash, so a
// mismatch can be printed as the files that differ (treeChanges).
func treeDigest(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "%s %x\n", p, sha256.Sum256(data))
		return nil
	})
	return b.String()
}

// treeChanges lists the lines of two treeDigests that differ.
func treeChanges(before, after string) string {
	was := map[string]bool{}
	for _, l := range strings.Split(before, "\n") {
		was[l] = true
	}
	var out []string
	for _, l := range strings.Split(after, "\n") {
		if !was[l] {
			out = append(out, "+ "+l)
		}
		delete(was, l)
	}
	for l := range was {
		out = append(out, "- "+l)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestPITRByEveryTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.sql("create table ledger (id int primary key, note text)")
	e.sql("insert into ledger select g, 'before backup' from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	e.sql("insert into ledger select g, 'batch A' from generate_series(1001, 2000) g")
	// Targets right after batch A.
	xid := e.sql("select txid_current()") // its own transaction, committed at once
	lsn := e.sql("select pg_current_wal_lsn()")
	time.Sleep(1100 * time.Millisecond)
	ts := e.sql("select to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || 'Z'")
	time.Sleep(1100 * time.Millisecond)
	e.mustRun("restore-point", "db", "before-batch-b")
	e.sql("insert into ledger select g, 'batch B' from generate_series(2001, 3000) g")
	e.switchAndWait()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"time", []string{"--time", strings.Replace(ts, " ", "T", 1)}, "2000"},
		{"lsn", []string{"--lsn", lsn}, "2000"},
		{"xid", []string{"--xid", xid}, "2000"},
		{"name", []string{"--name", "before-batch-b"}, "2000"},
		{"latest", nil, "3000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each restores into a directory and a server of its own
			c := e.forTest(t).restoreAndStart(tc.args...)
			got := c.Psql(t, "postgres", "select count(*) from ledger")
			if got != tc.want {
				t.Fatalf("restored %s rows, want %s", got, tc.want)
			}
			if tc.want == "2000" {
				if n := c.Psql(t, "postgres", "select count(*) from ledger where note = 'batch B'"); n != "0" {
					t.Fatalf("%s rows of batch B after the target", n)
				}
			}
		})
	}
}

func TestIncrementalChainRestoresEachState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.pg.PGBench(t, "-i", "-s", "2", "postgres")
	var states []map[string]string
	var snaps []string
	for i := 0; i < 3; i++ {
		if i > 0 {
			e.pg.PGBench(t, "-t", "300", "-c", "2", "postgres")
			e.sql(fmt.Sprintf("create table t%d as select g from generate_series(1, %d) g", i, 1000*i))
		}
		e.sql("checkpoint")
		e.mustRun("backup", "db")
		states = append(states, e.pg.TableChecksums(t, "postgres"))
		s := e.snapshots()
		snaps = append(snaps, s[len(s)-1].ID)
		if i > 0 && (s[len(s)-1].Type != "incr" || s[len(s)-1].Parent == "") {
			t.Fatalf("backup %d is %s with parent %q, want an incremental", i, s[len(s)-1].Type, s[len(s)-1].Parent)
		}
	}
	e.switchAndWait()
	all := e.snapshots()
	for i, id := range snaps {
		var stop string
		for _, s := range all {
			if s.ID == id {
				stop = s.StopLSN
			}
		}
		t.Run(fmt.Sprint("backup ", i), func(t *testing.T) {
			t.Parallel() // each restores into a directory and a server of its own
			c := e.forTest(t).restoreAndStart("--snapshot", id, "--lsn", stop)
			got := c.TableChecksums(t, "postgres")
			if fmt.Sprint(got) != fmt.Sprint(states[i]) {
				t.Fatalf("restore of backup %d differs:\n got %v\nwant %v", i, got, states[i])
			}
		})
	}
}

func TestBadInputIsOneClearLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table x as select 1")
	e.mustRun("backup", "db")
	before := treeDigest(t, e.repo)

	wrongKey := filepath.Join(e.dir, "wrong.key")
	os.WriteFile(wrongKey, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	bad := filepath.Join(e.dir, "bad.yaml")
	os.WriteFile(bad, []byte("repositories:\n  - name: primary\n    url: file:///x\n    key_fil: /k\n"), 0o600)
	policyText, _ := os.ReadFile(e.policy)

	cases := []struct {
		name   string
		setup  func()
		args   []string
		code   int
		expect string
	}{
		{"wrong key", func() { e.writePolicy(wrongKey) }, []string{"snapshots"}, 1, "wrong key"},
		{"missing repository", func() {
			os.WriteFile(e.policy, bytes.Replace(policyText, []byte(e.repo), []byte(e.repo+"-gone"), 1), 0o600)
		}, []string{"backup", "db"}, 1, "does not exist"},
		{"unreachable database", func() {
			os.WriteFile(e.policy, bytes.Replace(policyText, []byte(fmt.Sprint("port=", e.pg.Port)), []byte("port=1"), 1), 0o600)
		}, []string{"backup", "db"}, 1, "connect"},
		{"unknown asset", nil, []string{"backup", "nope"}, 2, `unknown asset "nope"`},
		{"malformed policy", func() { e.policy = bad }, []string{"snapshots"}, 2, "key_fil"},
		{"usage", nil, []string{"restore", "db"}, 2, "--to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := e.policy
			defer func() {
				e.policy = saved
				os.WriteFile(e.policy, policyText, 0o600)
			}()
			if tc.setup != nil {
				tc.setup()
			}
			r := e.run(tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.expect) {
				t.Fatalf("stderr is not one line mentioning %q:\n%s", tc.expect, r.stderr)
			}
		})
	}
	// A refused action is still an audit event: its seal is the one thing
	// a failed command may add to the repository (audit/, new objects only).
	var changed []string
	for _, l := range strings.Split(treeChanges(before, treeDigest(t, e.repo)), "\n") {
		if l != "" && !strings.HasPrefix(l, "+ "+filepath.Join(e.repo, "audit")+"/") {
			changed = append(changed, l)
		}
	}
	if len(changed) > 0 {
		t.Fatalf("a failed command changed the repository:\n%s", strings.Join(changed, "\n"))
	}
}

func TestWALPushAndFetchRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table x as select 1")
	e.switchAndWait()
	seg := e.sql("select last_archived_wal from pg_stat_archiver")
	src := filepath.Join(e.pg.DataDir, "pg_wal", seg)
	copyOf := filepath.Join(e.dir, seg)
	// Fetch it back and push the identical file again: success.
	e.mustRun("wal-fetch", "db", seg, copyOf)
	if st, err := os.Stat(src); err == nil {
		orig, _ := os.ReadFile(src)
		got, _ := os.ReadFile(copyOf)
		if st.Size() > 0 && !bytes.Equal(orig, got) {
			t.Fatal("fetched segment differs from the server's")
		}
	}
	e.mustRun("wal-push", "db", copyOf)
	// Same name, different content: refused, original kept.
	data, _ := os.ReadFile(copyOf)
	data[len(data)-100] ^= 0xff
	changed := filepath.Join(e.dir, "changed", seg)
	os.MkdirAll(filepath.Dir(changed), 0o700)
	os.WriteFile(changed, data, 0o600)
	if r := e.run("wal-push", "db", changed); r.code != 1 || !strings.Contains(r.stderr, "different content") {
		t.Fatalf("push of different content: exit %d: %s", r.code, r.stderr)
	}
	again := filepath.Join(e.dir, "again")
	e.mustRun("wal-fetch", "db", seg, again)
	if got, _ := os.ReadFile(again); bytes.Equal(got, data) {
		t.Fatal("archived segment was overwritten")
	}
	// Absent file: exit 1, nothing written.
	absent := filepath.Join(e.dir, "absent")
	if r := e.run("wal-fetch", "db", "00000001000000FF000000FF", absent); r.code != 1 {
		t.Fatalf("absent segment: exit %d: %s", r.code, r.stderr)
	}
	if _, err := os.Stat(absent); err == nil {
		t.Fatal("absent segment left a file")
	}
	// A hole below archived segments is not "absent": recovery must stop.
	e.sql("insert into x select 2")
	e.switchAndWait()
	holeDir := filepath.Join(e.repo, "wal", "db", "00000001")
	entries, err := os.ReadDir(holeDir)
	if err != nil || len(entries) < 2 {
		t.Fatalf("want two archived segments in %s: %v", holeDir, err)
	}
	hole := entries[0].Name()
	os.Remove(filepath.Join(holeDir, hole))
	if r := e.run("wal-fetch", "db", hole, absent); r.code != exitWALFetchAbort || !strings.Contains(r.stderr, "missing") {
		t.Fatalf("segment missing below archived ones: exit %d, want %d: %s", r.code, exitWALFetchAbort, r.stderr)
	}
	// Unreachable repository: the abort status, never 1.
	os.Rename(e.repo, e.repo+".moved")
	r := e.run("wal-fetch", "db", seg, absent)
	os.Rename(e.repo+".moved", e.repo)
	if r.code != exitWALFetchAbort {
		t.Fatalf("unreachable repository: exit %d, want %d: %s", r.code, exitWALFetchAbort, r.stderr)
	}
	// A malformed call is never "absent" either.
	if r := e.run("wal-fetch", "db", seg); r.code != exitWALFetchAbort {
		t.Fatalf("wal-fetch with a missing argument: exit %d", r.code)
	}
}

// TestRestoreFollowsNewTimeline restores, promotes the copy (timeline 2)
// and lets it archive into the same asset, as after a real failover; a
// later restore from the original base must follow timeline 2.
func TestRestoreFollowsNewTimeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table ledger (id int, note text)")
	e.sql("insert into ledger select g, 'timeline 1' from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	e.sql("insert into ledger select g, 'timeline 1 after backup' from generate_series(1001, 2000) g")
	e.switchAndWait()
	e.pg.Stop(t) // the old primary is gone

	dir := filepath.Join(t.TempDir(), "promoted")
	e.mustRun("restore", "db", "--to", dir) // archiving stays on: it replaces the original
	c := pgtest.Open(t, dir, nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	c.Psql(t, "postgres", "checkpoint")
	if tli := c.Psql(t, "postgres", "select timeline_id from pg_control_checkpoint()"); tli != "2" {
		t.Fatalf("timeline after promotion is %s, want 2", tli)
	}
	c.Psql(t, "postgres", "insert into ledger select g, 'timeline 2' from generate_series(2001, 2500) g")
	switchAndWait(t, c)
	if _, err := os.Stat(filepath.Join(e.repo, "wal", "db", "history", "00000002.history")); err != nil {
		t.Fatalf("timeline history not archived: %v", err)
	}
	c.Stop(t)

	again := e.restoreAndStart()
	if got := again.Psql(t, "postgres", "select count(*) from ledger"); got != "2500" {
		t.Fatalf("restore after a timeline switch has %s rows, want 2500 (timeline 2 not followed)", got)
	}
	if r := e.run("verify", "--read-data"); r.code != 0 {
		t.Fatalf("verify after a timeline switch: %s%s", r.stdout, r.stderr)
	}
}
