package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/gitrepo/gitrepotest"
)

// drillAsset runs lifeboat drill of asset with a work directory of the
// test's, and checks that the throwaway target is gone afterwards whatever
// the outcome: nothing left in the work directory, and no process (a
// throwaway PostgreSQL) still running from it.
func (e *env) drillAsset(asset string, args ...string) (result, *evidence.DrillReport) {
	e.t.Helper()
	work := e.t.TempDir()
	res := e.run(append([]string{"drill", asset, "--json", "--work-dir", work}, args...)...)
	if left, _ := os.ReadDir(work); len(left) != 0 {
		e.t.Fatalf("the drill left %s behind in its work directory", left[0].Name())
	}
	if pids := processesUnder(work); len(pids) != 0 {
		e.t.Fatalf("processes %v still run from the drill's work directory %s", pids, work)
	}
	if strings.TrimSpace(res.stdout) == "" {
		return res, nil
	}
	rep, err := evidence.Unmarshal([]byte(res.stdout))
	if err != nil {
		e.t.Fatalf("drill --json: %v\n%s\nstderr: %s", err, res.stdout, res.stderr)
	}
	return res, rep
}

// mustDrill is drillAsset for a drill that must pass.
func (e *env) mustDrill(asset string, args ...string) *evidence.DrillReport {
	e.t.Helper()
	res, rep := e.drillAsset(asset, args...)
	if res.code != 0 || rep == nil || !rep.Passed || rep.Error != "" || len(rep.Issues) != 0 {
		e.t.Fatalf("drill %s %v: exit %d\nstdout: %s\nstderr: %s", asset, args, res.code, res.stdout, res.stderr)
	}
	if rep.Asset != asset || rep.Trigger != "manual" || rep.RTOSeconds <= 0 || rep.Snapshot == "" {
		e.t.Errorf("drill report: %+v", rep)
	}
	var phases []string
	for _, p := range rep.Phases {
		phases = append(phases, fmt.Sprintf("%s %.3fs", p.Name, p.Seconds))
	}
	e.t.Logf("drill %s %v: RTO %.3fs (%s), %d bytes, RPO %.3fs", asset, args, rep.RTOSeconds, strings.Join(phases, ", "), rep.Bytes, rep.RPOSeconds)
	return rep
}

// processesUnder lists the processes whose command line names dir.
func processesUnder(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, ent := range entries {
		if ent.Name()[0] < '0' || ent.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, ent.Name()+" ("+strings.ReplaceAll(string(cmdline), "\x00", " ")+")")
		}
	}
	return pids
}

// phaseNames lists a report's phases in order.
func phaseNames(r *evidence.DrillReport) string {
	var names []string
	for _, p := range r.Phases {
		if p.Seconds < 0 {
			names = append(names, p.Name+"(negative)")
			continue
		}
		names = append(names, p.Name)
	}
	return strings.Join(names, ",")
}

// checkNamed is the report's check of that name; it fails the test when
// there is none.
func checkNamed(t *testing.T, r *evidence.DrillReport, name string) evidence.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return evidence.Check{}
}

// storedDrills counts the drill reports a file repository holds.
func storedDrills(repoDir string) int {
	n := 0
	filepath.WalkDir(filepath.Join(repoDir, "drills"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// damagePack flips bytes in the middle of the repository's largest pack
// and returns its name and a function that puts it back.
func damagePack(t *testing.T, repoDir string) (string, func()) {
	t.Helper()
	pack := largestFile(t, filepath.Join(repoDir, "data"))
	orig, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), orig...)
	for i := len(bad) / 3; i < len(bad)/3+64 && i < len(bad); i++ {
		bad[i] ^= 0xff
	}
	os.Chmod(pack, 0o600)
	if err := os.WriteFile(pack, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(pack), func() {
		if err := os.WriteFile(pack, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// expectDamagedPack runs a drill of asset over a damaged pack: it must fail
// and name the pack, and its report must still be stored.
func expectDamagedPack(t *testing.T, e *env, asset string) {
	t.Helper()
	before := storedDrills(e.repo)
	pack, repair := damagePack(t, e.repo)
	res, rep := e.drillAsset(asset)
	if res.code != exitFailure || rep == nil || rep.Passed || !strings.Contains(rep.Error, "pack "+pack[:8]) {
		t.Fatalf("drill over damaged pack %s: exit %d\nstdout: %s\nstderr: %s", pack, res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "pack "+pack[:8]) {
		t.Errorf("stderr does not name pack %s: %s", pack, res.stderr)
	}
	if n := storedDrills(e.repo); n != before+1 {
		t.Errorf("%d drill reports stored after the failed drill, want %d", n, before+1)
	}
	repair()
	e.mustDrill(asset)
}

// setDrill rewrites the policy file: base followed by the asset's drill
// section with these checks (YAML list items, indented for the asset).
func setDrill(t *testing.T, e *env, base, checks string) {
	t.Helper()
	if err := os.WriteFile(e.policy, []byte(base+"    drill:\n      point: latest\n      checks:\n"+checks), 0o600); err != nil {
		t.Fatal(err)
	}
}

const sqliteDrillChecks = `        - name: has rows
          sql: "select count(*) >= 3 from accounts"
        - name: at least 3 accounts
          sql: "select count(*) from accounts"
          expect: ">= 3"
        - name: first is alice
          sql: "select owner from accounts where id = 1"
          expect: "= alice"
`

// TestDrillKindSQLite: a drill of a SQLite asset restores to a temporary
// file, passes integrity_check and the policy's queries, and leaves
// nothing behind; a random point picks one of the snapshots, a time the
// newest taken by then; an unmet expectation fails the drill and names the
// query, and so does a damaged pack.
func TestDrillKindSQLite(t *testing.T) {
	t.Parallel()
	e, path := newSQLiteEnv(t)
	base, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	setDrill(t, e, string(base), sqliteDrillChecks)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL); CREATE INDEX accounts_owner ON accounts(owner)"); err != nil {
		t.Fatal(err)
	}
	for i, owner := range []string{"alice", "bob", "carol"} {
		// Each snapshot holds three accounts more than the one before, so
		// every one of them passes the checks; account 1 is alice's.
		for j := 0; j < 3; j++ {
			name := fmt.Sprintf("%s-%d", owner, j)
			if i == 0 && j == 0 {
				name = "alice"
			}
			if _, err := db.Exec("INSERT INTO accounts (owner) VALUES (?)", name); err != nil {
				t.Fatal(err)
			}
		}
		if out := e.mustRun("backup", "staging-db"); !snapshotLine.MatchString(out) {
			t.Fatalf("backup printed %q", out)
		}
	}
	var rows []snapshotRow
	if err := json.Unmarshal([]byte(e.mustRun("snapshots", "staging-db", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	snaps := map[string]snapshotRow{}
	var newest snapshotRow
	for _, r := range rows {
		snaps[r.ID] = r
		if r.StopTime.After(newest.StopTime) {
			newest = r
		}
	}
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots, want 3", len(snaps))
	}

	before := time.Now()
	rep := e.mustDrill("staging-db")
	if rep.Kind != "sqlite" || rep.Point != "latest" || rep.Repository != "primary" || rep.Snapshot != newest.ID {
		t.Errorf("latest drill: kind %s point %s repository %s snapshot %s, want the newest %s", rep.Kind, rep.Point, rep.Repository, rep.Snapshot, newest.ID)
	}
	if got := phaseNames(rep); got != "fetch,write,checks" {
		t.Errorf("phases %s, want fetch,write,checks", got)
	}
	// A latest drill plays a failure now: what the snapshot missed since
	// it was taken is the RPO.
	if rep.Target.Before(before) || rep.Recovered.After(rep.Target) || rep.RPOSeconds <= 0 || rep.Bytes <= 0 {
		t.Errorf("latest drill: target %v recovered %v RPO %v bytes %d", rep.Target, rep.Recovered, rep.RPOSeconds, rep.Bytes)
	}
	if c := checkNamed(t, rep, "PRAGMA integrity_check"); !c.Passed || c.Got != "ok" || c.Type != evidence.CheckIntegrity {
		t.Errorf("integrity check: %+v", c)
	}
	for name, got := range map[string]string{"has rows": "1", "at least 3 accounts": "9", "first is alice": "alice"} {
		if c := checkNamed(t, rep, name); !c.Passed || c.Got != got || c.Type != evidence.CheckQuery || c.Detail != "" {
			t.Errorf("check %q: %+v, want passed with %s", name, c, got)
		}
	}
	if len(rep.Checks) != 4 {
		t.Errorf("%d checks, want 4: %+v", len(rep.Checks), rep.Checks)
	}
	if n := storedDrills(e.repo); n != 1 {
		t.Errorf("%d drill reports in the repository, want 1", n)
	}

	// A random point is one of the snapshots, restored to its own moment;
	// over enough drills, more than one of them.
	seen := map[string]bool{}
	for i := 0; i < 20 && len(seen) < 2; i++ {
		rep := e.mustDrill("staging-db", "--random-point")
		s, ok := snaps[rep.Snapshot]
		if !ok || rep.Point != "random" {
			t.Fatalf("random drill restored snapshot %q (point %s), not one of %v", rep.Snapshot, rep.Point, slices.Collect(maps.Keys(snaps)))
		}
		if !rep.SnapshotTime.Equal(s.StopTime) || !rep.Target.Equal(rep.Recovered) || rep.RPOSeconds != 0 {
			t.Errorf("random drill of %s (stop %v): snapshot time %v target %v recovered %v RPO %v",
				s.ID, s.StopTime, rep.SnapshotTime, rep.Target, rep.Recovered, rep.RPOSeconds)
		}
		seen[rep.Snapshot] = true
	}
	if len(seen) < 2 {
		t.Errorf("20 random drills all restored %v", seen)
	}

	// A time picks the newest snapshot taken by then; before the first
	// there is none.
	sorted := slices.SortedFunc(maps.Values(snaps), func(a, b snapshotRow) int { return a.StopTime.Compare(b.StopTime) })
	at := sorted[1].StopTime
	rep = e.mustDrill("staging-db", "--time", at.Format(time.RFC3339Nano))
	if rep.Point != "time" || rep.Snapshot != sorted[1].ID || !rep.Target.Equal(at) || rep.RPOSeconds < 0 {
		t.Errorf("drill --time %v: point %s snapshot %s target %v RPO %v, want snapshot %s", at, rep.Point, rep.Snapshot, rep.Target, rep.RPOSeconds, sorted[1].ID)
	}
	early := sorted[0].StopTime.Add(-time.Second).Format(time.RFC3339Nano)
	if res, _ := e.drillAsset("staging-db", "--time", early); res.code != exitFailure || !strings.Contains(res.stderr, "has no snapshot taken before") {
		t.Errorf("drill --time before the first snapshot: exit %d: %s", res.code, res.stderr)
	}

	// Unmet expectations fail the drill; each is named, the first in the
	// error.
	setDrill(t, e, string(base), sqliteDrillChecks+`        - name: impossible
          sql: "select count(*) from accounts"
          expect: ">= 1000"
        - name: first is bob
          sql: "select owner from accounts where id = 1"
          expect: "= bob"
        - name: no accounts
          sql: "select count(*) = 0 from accounts"
`)
	res, rep := e.drillAsset("staging-db")
	if res.code != exitFailure || rep == nil || rep.Passed || !strings.Contains(rep.Error, `check "impossible": returned 9, expected at least 1000`) ||
		!strings.Contains(rep.Error, "(and 2 more)") {
		t.Fatalf("failing checks: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "impossible") || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
		t.Errorf("stderr is not one line naming the check: %q", res.stderr)
	}
	for name, detail := range map[string]string{
		"impossible":   "returned 9, expected at least 1000",
		"first is bob": `returned "alice", expected "bob"`,
		"no accounts":  `returned "0", expected true`,
	} {
		if c := checkNamed(t, rep, name); c.Passed || c.Detail != detail {
			t.Errorf("check %q: %+v, want failed with %q", name, c, detail)
		}
		found := false
		for _, is := range rep.Issues {
			found = found || strings.Contains(is, fmt.Sprintf("check %q", name))
		}
		if !found {
			t.Errorf("issues do not name %q: %v", name, rep.Issues)
		}
	}
	if c := checkNamed(t, rep, "first is alice"); !c.Passed {
		t.Errorf("a good check failed beside the bad ones: %+v", c)
	}
	setDrill(t, e, string(base), sqliteDrillChecks)

	expectDamagedPack(t, e, "staging-db")
}

// TestDrillKindPGDump: a drill of a pg_dump asset loads the dump into a
// fresh cluster of its own, which passes pg_amcheck and the policy's
// queries in the dumped database; the tables whose data the asset
// excludes come back, empty.
func TestDrillKindPGDump(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, `    exclude_table_data: [jobs.queue, staff_sessions]
    drill:
      checks:
        - name: ledger rows
          sql: "select count(*) from ledger"
          expect: ">= 20000"
        - name: sessions table kept, without rows
          sql: "select to_regclass('public.staff_sessions') is not null and not exists (select from staff_sessions)"
        - name: queue rows
          sql: "select count(*) from jobs.queue"
          expect: "= 0"
        - name: owner role came with the globals
          sql: "select tableowner from pg_tables where tablename = 'owned'"
          expect: "= app_owner"
`)
	fillApp(t, e.pg)
	e.mustRun("backup", "dump")
	snaps := e.dumpSnapshots()
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots", len(snaps))
	}

	rep := e.mustDrill("dump")
	if rep.Kind != "pg_dump" || rep.Snapshot != snaps[0].ID || rep.Bytes <= 0 || rep.Recovered.IsZero() {
		t.Errorf("drill report: %+v", rep)
	}
	if got := phaseNames(rep); got != "fetch,start,write,checks" {
		t.Errorf("phases %s, want fetch,start,write,checks", got)
	}
	if c := checkNamed(t, rep, "pg_amcheck (heap and B-tree indexes, all databases)"); !c.Passed || c.Type != evidence.CheckIntegrity {
		t.Errorf("pg_amcheck: %+v", c)
	}
	for name, got := range map[string]string{
		"ledger rows":                       "20000",
		"sessions table kept, without rows": "t",
		"queue rows":                        "0",
		"owner role came with the globals":  "app_owner",
	} {
		if c := checkNamed(t, rep, name); !c.Passed || c.Got != got || c.Database != "app" {
			t.Errorf("check %q: %+v, want passed in app with %s", name, c, got)
		}
	}
	if len(rep.Checks) != 5 {
		t.Errorf("%d checks, want 5: %+v", len(rep.Checks), rep.Checks)
	}
}

// TestDrillKindFiles: a drill of a files asset restores the tree to a
// temporary directory and checks its size against the snapshot's.
func TestDrillKindFiles(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	now := time.Now()
	writeFile(t, filepath.Join(src, "app.conf"), "listen = 8080\n", 0o644, now)
	writeFile(t, filepath.Join(src, "secret.key"), "k\n", 0o600, now)
	writeFile(t, filepath.Join(src, "nested", "deep", "x.conf"), strings.Repeat("x = 1\n", 50000), 0o640, now)
	writeFile(t, filepath.Join(src, "empty"), "", 0o644, now)
	if err := os.Symlink("app.conf", filepath.Join(src, "current.conf")); err != nil {
		t.Fatal(err)
	}
	e := newFilesEnv(t, []string{src}, nil)
	id := e.filesBackup()

	rep := e.mustDrill("app-config")
	if rep.Kind != "files" || !strings.HasPrefix(rep.Snapshot, id) {
		t.Errorf("drill report: %+v", rep)
	}
	if got := phaseNames(rep); got != "fetch,write,checks" {
		t.Errorf("phases %s, want fetch,write,checks", got)
	}
	want := fmt.Sprint(len("listen = 8080\n") + len("k\n") + 50000*len("x = 1\n"))
	if c := checkNamed(t, rep, "restored bytes equal the snapshot's"); !c.Passed || c.Got != want || c.Expect != want {
		t.Errorf("bytes check: %+v, want %s bytes", c, want)
	}
	if fmt.Sprint(rep.Bytes) != want || len(rep.Checks) != 1 {
		t.Errorf("bytes %d, checks %+v", rep.Bytes, rep.Checks)
	}

	expectDamagedPack(t, e, "app-config")
}

// TestDrillKindGit: a drill of a git asset restores every repository as a
// bare one that git fsck accepts, with every ref as recorded.
func TestDrillKindGit(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	web := gitrepotest.Source(t, src, "web", 64<<10)
	ops := gitrepotest.Source(t, src, "ops", 8<<10)
	gitrepotest.Commit(t, ops, "ops.txt", "only ops\n")
	e := newGitEnv(t, []string{web, ops}, "")
	e.mustRun("backup", "source")
	snaps := e.gitSnapshots()
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots", len(snaps))
	}

	rep := e.mustDrill("source")
	if rep.Kind != "git" || rep.Snapshot != snaps[0].ID || rep.Bytes != snaps[0].BytesTotal {
		t.Errorf("drill report: %+v", rep)
	}
	if got := phaseNames(rep); !strings.HasPrefix(got, "fetch,write") {
		t.Errorf("phases %s, want fetch,write first", got)
	}
	refs := len(strings.Split(gitrepotest.Refs(t, web), "\n")) + len(strings.Split(gitrepotest.Refs(t, ops), "\n"))
	c := checkNamed(t, rep, "git fsck and every ref as recorded")
	if want := fmt.Sprintf("2 repositories, %d refs", refs); !c.Passed || c.Type != evidence.CheckIntegrity || c.Got != want {
		t.Errorf("git check: %+v, want passed with %q", c, want)
	}
}
