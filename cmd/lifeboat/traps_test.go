package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// The traps of a DBA's first day (issue 13) that preflight_test.go,
// info_test.go and internal/app's state directory tests leave: each is
// refused in one line that names what to do, with a non-zero exit, and
// changes nothing it should not.

// isOneLine reports whether a command's stderr is exactly one line.
func isOneLine(stderr string) bool {
	return strings.Count(stderr, "\n") == 1 && strings.HasSuffix(stderr, "\n")
}

// TestTrapReadOnlyRepository: a repository this user may not write is
// refused as a permission problem, never blamed on a backup that is not
// running, before the first backup (the asset's identity is the first
// write) and after one (the asset's lock is); nothing in it changes.
func TestTrapReadOnlyRepository(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table t as select g from generate_series(1, 100) g")
	refused := func(when string) {
		t.Helper()
		writable := readOnly(t, e.repo)
		before := treeDigest(t, e.repo)
		r := e.run("backup", "db")
		after := treeDigest(t, e.repo)
		writable()
		if r.code == 0 || !isOneLine(r.stderr) || !strings.Contains(r.stderr, "permission denied") ||
			!strings.Contains(r.stderr, e.repo) || strings.Contains(r.stderr, "another backup") {
			t.Fatalf("backup into a read-only repository %s: exit %d, want one line saying permission denied in %s:\n%s%s",
				when, r.code, e.repo, r.stdout, r.stderr)
		}
		if after != before {
			t.Fatalf("backup into a read-only repository %s changed it", when)
		}
	}
	refused("before the first backup")
	e.mustRun("backup", "db")
	refused("after a backup")
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots, want the one taken while the repository was writable", n)
	}
}

// readOnly takes the write permission off every directory under dir (as
// a read-only mount or a wrong owner would) and returns what gives it
// back; the test's end gives it back too.
func readOnly(t *testing.T, dir string) (writable func()) {
	t.Helper()
	modes := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		modes[p] = fi.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, m := range modes {
		if err := os.Chmod(p, m&^0o222); err != nil {
			t.Fatal(err)
		}
	}
	writable = func() {
		for p, m := range modes {
			os.Chmod(p, m)
		}
	}
	t.Cleanup(writable)
	return writable
}

// TestTrapRepositoryOfAnotherUser: a file:// repository another OS user
// owns (root's, here; postgres's when root runs lifeboat) is refused for
// writing, saying whom to run as, instead of leaving files its owner
// cannot read; --as-owner is root's alone; nothing is written.
func TestTrapRepositoryOfAnotherUser(t *testing.T) {
	t.Parallel()
	foreign := pgtest.ForeignDir(t)
	fi, err := os.Stat(foreign)
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid))
	owner := "uid " + uid
	if u, err := user.LookupId(uid); err == nil {
		owner = u.Username
	}
	e := newEnv(t, false)
	own := e.repo
	e.repo, e.repoURL = foreign, "file://"+foreign
	e.writePolicy(filepath.Join(e.dir, "repo.key"))

	refused := func(wants []string, args ...string) {
		t.Helper()
		before := treeDigest(t, foreign)
		r := e.run(args...)
		ok := r.code != 0 && isOneLine(r.stderr)
		for _, w := range wants {
			ok = ok && strings.Contains(r.stderr, w)
		}
		if !ok {
			t.Fatalf("lifeboat %s into %s's repository: exit %d, want one line with %q:\n%s%s",
				strings.Join(args, " "), owner, r.code, wants, r.stdout, r.stderr)
		}
		if treeDigest(t, foreign) != before {
			t.Fatalf("lifeboat %s wrote into %s's repository", strings.Join(args, " "), owner)
		}
	}
	runAs := []string{
		fmt.Sprintf("%s belongs to %s but this runs as %s", foreign, owner, pgtest.TestUser),
		fmt.Sprintf("run as %s (runuser -u %s -- lifeboat ...), or as root with --as-owner", owner, owner),
	}

	refused(runAs, "repo", "init")
	if left, _ := os.ReadDir(foreign); len(left) != 0 {
		t.Fatalf("repo init left %s in %s's directory", left[0].Name(), owner)
	}

	// A repository there (this test's own, copied in, as if root had made
	// it): reading it is allowed, writing it is not.
	t.Cleanup(func() { emptyDir(t, foreign) })
	copyTree(t, own, foreign)
	refused(runAs, "backup", "db")
	refused([]string{"--as-owner lets only root write on another user's behalf"}, "backup", "db", "--as-owner")
	if out := e.mustRun("snapshots", "db", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("snapshots after refused backups: %s", out)
	}
}

// copyTree copies the files and directories under src into dst, with
// their modes.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.Mkdir(target, fi.Mode().Perm()|0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()|0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Chmod(target, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// emptyDir removes what is in dir, leaving dir.
func emptyDir(t *testing.T, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Error(err)
		return
	}
	for _, en := range entries {
		p := filepath.Join(dir, en.Name())
		filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(q, 0o700)
			}
			return nil
		})
		if err := os.RemoveAll(p); err != nil {
			t.Error(err)
		}
	}
}

// switchSegment ends the current WAL segment, waits until it is archived
// and returns its name.
func switchSegment(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	out := c.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn()); select pg_switch_wal()")
	seg, _, _ := strings.Cut(out, "\n")
	c.WaitArchived(t, seg, 60*time.Second)
	return seg
}

// TestTrapDrillOverWALGap: with a segment missing from the archived WAL
// after the backup, a drill to any point is refused before its cluster is
// written (no write phase, nothing restored, its work directory empty),
// naming the segment; so are a restore to the end of the WAL and one to a
// time past the gap.
func TestTrapDrillOverWALGap(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false, func(e *env) { e.assetExtra = drillPolicy })
	e.sql("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	// A time within the WAL before the gap, with a commit after it: a
	// target the archive can reach, were it not for the gap after.
	e.sql("insert into t values (1001, 'before')")
	reachable := e.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
	e.sql("insert into t values (1002, 'after')")
	before := switchSegment(t, e.pg)
	e.sql("insert into t values (1003, 'lost')")
	missing := switchSegment(t, e.pg)
	e.sql("insert into t values (1004, 'beyond')")
	switchSegment(t, e.pg)
	var removed bool
	for _, p := range walFiles(t, e.repo) {
		if filepath.Base(p) == missing {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			removed = true
		}
	}
	if !removed {
		t.Fatalf("segment %s is not in the repository: %v", missing, walFiles(t, e.repo))
	}
	past := time.Now().UTC().Format(time.RFC3339Nano)

	stored := storedDrills(e.repo)
	for _, args := range [][]string{{"--latest"}, {"--time", reachable}, {"--random-point"}, {"--time", past}} {
		res, rep := e.drill(args...) // fails if anything is left in the work directory
		if res.code == 0 || !isOneLine(res.stderr) || !strings.Contains(res.stderr, "WAL segment "+missing+" is missing") {
			t.Fatalf("drill %v over the gap at %s: exit %d, want one line naming it:\n%s%s", args, missing, res.code, res.stdout, res.stderr)
		}
		if rep == nil || rep.Passed || !strings.Contains(rep.Error, missing) {
			t.Fatalf("drill %v over the gap: report %+v", args, rep)
		}
		// Refused before the restore began: nothing was written.
		for _, ph := range rep.Phases {
			if ph.Name != evidence.PhaseFetch {
				t.Errorf("drill %v over the gap went on to phase %s (phases %s)", args, ph.Name, phaseNames(rep))
			}
		}
		if rep.Bytes != 0 || rep.Snapshot != "" {
			t.Errorf("drill %v over the gap restored snapshot %q, %d bytes", args, rep.Snapshot, rep.Bytes)
		}
	}
	// A refused drill is still evidence.
	if n := storedDrills(e.repo); n != stored+4 {
		t.Errorf("%d drill reports stored, want %d", n, stored+4)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "WAL segment " + missing + " is missing"},
		{[]string{"--time", past}, "is not before the newest commit that can be restored"},
	} {
		dir := filepath.Join(t.TempDir(), "restored")
		r := e.run(append([]string{"restore", "db", "--to", dir}, tc.args...)...)
		if r.code == 0 || !isOneLine(r.stderr) || !strings.Contains(r.stderr, tc.want) {
			t.Fatalf("restore %v over the gap: exit %d, want one line with %q:\n%s%s", tc.args, r.code, tc.want, r.stdout, r.stderr)
		}
		if tc.args != nil && (!strings.Contains(r.stderr, "segment "+before) || !strings.Contains(r.stderr, "segment "+missing+" is missing")) {
			t.Errorf("restore %v does not name %s, the last segment before the gap, and %s, the missing one:\n%s", tc.args, before, missing, r.stderr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("restore %v over the gap left %s behind (%v)", tc.args, dir, err)
		}
	}
}

// TestTrapStopDuringScheduledDrill: an operator's SIGTERM to serve while
// a scheduled drill runs stops the drill, and it is recorded as aborted
// everywhere (runs, the catalog's and the repository's drill reports, the
// report, check and metrics), never as failed; serve exits cleanly and
// leaves no server behind.
func TestTrapStopDuringScheduledDrill(t *testing.T) {
	t.Parallel()
	hold := filepath.Join(t.TempDir(), "hold")
	// The check waits while the file hold exists: the drill stays under
	// way for as long as the test needs.
	checks := fmt.Sprintf(`      checks:
        - name: held
          sql: "select count(*) >= 0 from generate_series(1, 1200) where case when pg_stat_file('%s', true) is null then false else pg_sleep(0.1)::text = '' end"
`, hold)
	scheduled := "    drill:\n      point: latest\n      schedule: \"@every 2s\"\n" + checks
	e := startEnv(t, false, func(e *env) { e.assetExtra = scheduled })
	e.sql("create table t as select g from generate_series(1, 100) g")
	e.mustRun("backup", "db")
	if res, rep := e.drill(); res.code != 0 || rep == nil || !rep.Passed {
		t.Fatalf("manual drill: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}

	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The daemon's drills make their work directories in its TMPDIR.
	tmp := t.TempDir()
	d := e.serveWithEnv([]string{"TMPDIR=" + tmp}, "--stop-timeout", "60s")
	waitFor(t, 120*time.Second, "the scheduled drill's server to take connections", func() bool {
		pids, _ := filepath.Glob(filepath.Join(tmp, "lifeboat-drill-*", "data", "postmaster.pid"))
		for _, p := range pids {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "ready") {
				return true
			}
		}
		return false
	}, d.stderr.String)
	if code := d.stop(90 * time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM during a drill:\n%s", code, d.stderr)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the stopped drill left %s behind", left[0].Name())
	}
	if pids := processesUnder(tmp); len(pids) != 0 {
		t.Errorf("processes %v outlived the stopped drill", pids)
	}
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}

	// runs: the one drill that started is aborted (slots that came while
	// it ran were skipped).
	var drills []runRow
	for _, r := range e.runs() {
		if r.Kind == "drill" && r.Result != "skipped" {
			drills = append(drills, r)
		}
	}
	if len(drills) != 1 || drills[0].Result != "aborted" || !strings.Contains(drills[0].Error, "daemon stopped") {
		t.Fatalf("runs after a stop during a drill: %+v\n%s", drills, d.stderr)
	}

	// The drill's report, in the catalog: aborted, neither passed nor
	// failed.
	reps := e.drillReports()
	if len(reps) != 2 || !reps[0].Aborted || reps[0].Passed || reps[0].Trigger == "manual" || !reps[1].Passed {
		t.Fatalf("drill reports after the stop: %d, newest %+v", len(reps), reps[0])
	}

	// The report, from the catalog and from the repository's copies.
	for _, args := range [][]string{nil, {"--repository", "primary"}} {
		var doc struct {
			Summary struct {
				Drills     int      `json:"drills"`
				Passed     int      `json:"passed"`
				Failed     int      `json:"failed"`
				Aborted    int      `json:"aborted"`
				FailedLast []string `json:"failed_last"`
			} `json:"summary"`
			Results []struct {
				Drill   string `json:"drill"`
				Passed  bool   `json:"passed"`
				Aborted bool   `json:"aborted"`
			} `json:"test_results"`
		}
		out := e.mustRun(append([]string{"report", "--format", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("report %v: %v\n%s", args, err, out)
		}
		s := doc.Summary
		if s.Drills != 2 || s.Passed != 1 || s.Failed != 0 || s.Aborted != 1 || len(s.FailedLast) != 0 {
			t.Errorf("report %v summary: %+v", args, s)
		}
		if len(doc.Results) != 2 || doc.Results[0].Drill != reps[0].ID || !doc.Results[0].Aborted || doc.Results[0].Passed {
			t.Errorf("report %v results: %+v", args, doc.Results)
		}
	}
	if md := e.mustRun("report", "--format", "md"); strings.Contains(md, "Newest drill failed") || !strings.Contains(md, "ABORTED") {
		t.Errorf("report --format md after an aborted drill:\n%s", md)
	}

	// check: the passing drill stands; the aborted one is no failure.
	r := e.run("check", "--json")
	var results []health.Result
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
		t.Fatalf("check --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	var drill *health.Result
	for i := range results {
		if results[i].Check == health.CheckDrill {
			drill = &results[i]
		}
	}
	if r.code != 0 || drill == nil || !drill.OK || !strings.HasPrefix(drill.Message, "drill passed") {
		t.Fatalf("check after an aborted drill: exit %d, drill %+v\n%s%s", r.code, drill, r.stdout, r.stderr)
	}

	// Metrics, seeded from the catalog by the next start: the last drill
	// shown is the one that passed.
	e.setAsset("    drill:\n      point: latest\n" + checks)
	port := freeTCPPort(t)
	f, err := os.OpenFile(e.policy, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "metrics: { listen: \"127.0.0.1:%d\" }\n", port)
	f.Close()
	d = e.serve()
	var text string
	waitFor(t, 30*time.Second, "the drill series", func() bool {
		text = scrape(t, port)
		return strings.Contains(text, `lifeboat_drill_last_passed{asset="db"}`)
	}, func() string { return text })
	if !strings.Contains(text, `lifeboat_drill_last_passed{asset="db"} 1`) {
		t.Errorf("/metrics after an aborted drill:\n%s", grepLines(text, "lifeboat_drill"))
	}
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, d.stderr)
	}
}
