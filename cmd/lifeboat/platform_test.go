package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/gitrepo/gitrepotest"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// platformEnv is a platform of every kind, each asset backed up to
// primary and copied to offsite with lifeboat copy: a ledger cluster
// (tier1), a dump of it and a config tree (tier2), a staging SQLite, a git
// repository and a bucket of uploads on MinIO (tier3).
type platformEnv struct {
	*env
	offsite string
	// sqlitePacks are the packs only the staging SQLite's backup wrote.
	sqlitePacks []string
}

const platformPolicy = `state_dir: %[1]s
repositories:
  - name: primary
    url: file://%[2]s
    key_file: %[3]s
  - name: offsite
    url: file://%[4]s
    key_file: %[3]s
tiers:
  tier1: { rpo: 24h, rto: 1h }
  tier2: { rpo: 24h, rto: 2h }
  tier3: { rpo: 24h, rto: 4h }
groups:
  payments: [ledger, orders]
platform_drill:
  schedule: "0 3 1 */6 *"
  repository: offsite
assets:
  - name: ledger
    kind: postgres
    tier: tier1
    pgdata: %[5]s
    dsn: "%[6]s"
    repositories: [primary, offsite]
    drill:
      checks:
        - name: ledger has rows
          sql: "select count(*) >= 1000 from t"
  - name: orders
    kind: pg_dump
    tier: tier2
    dsn: "%[6]s"
    repositories: [primary, offsite]
  - name: config
    kind: files
    tier: tier2
    paths: [%[7]s]
    repositories: [primary, offsite]
  - name: staging
    kind: sqlite
    tier: tier3
    path: %[8]s
    repositories: [primary, offsite]
  - name: source
    kind: git
    tier: tier3
    remotes: [%[9]s]
    repositories: [primary, offsite]
  - name: uploads
    kind: bucket
    tier: tier3
    url: s3://uploads/?endpoint=%[10]s&region=%[11]s&path_style=true
    access_key: %[12]s
    secret_key: ${%[13]s}
    repositories: [primary, offsite]
`

func newPlatformEnv(t *testing.T) *platformEnv {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "primary")}
	pe := &platformEnv{env: e, offsite: filepath.Join(dir, "offsite")}
	archive := fmt.Sprintf("%s -c %s wal-push ledger %%p", e.bin, e.policy)
	e.pg = pgtest.Start(t, pgtest.Options{Checksums: true, NoStart: true, Conf: map[string]string{
		"archive_mode": "on", "archive_command": archive, "wal_level": "replica", "archive_timeout": "0",
	}})
	config := filepath.Join(dir, "config")
	writeFile(t, filepath.Join(config, "app.yaml"), "listen: :8080\n", 0o644, time.Now())
	writeFile(t, filepath.Join(config, "bank", "endpoints.yaml"), "url: https://bank.example\n", 0o600, time.Now())
	staging := filepath.Join(dir, "staging.db")
	source := gitrepotest.Source(t, dir, "web", 4096)
	srv := s3test.Start(t)
	srv.CreateBucket(t, "uploads", false)
	for key, body := range map[string]string{"invoices/1.pdf": "invoice one", "avatars/ada.png": "a picture"} {
		if _, err := srv.Client(t).PutObject(t.Context(), &s3api.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String(key),
			Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	secret := testEnv(t, "LB_TEST_PLATFORM_UPLOADS", srv.SecretKey)
	policy := fmt.Sprintf(platformPolicy, filepath.Join(dir, "state"), e.repo, filepath.Join(dir, "repo.key"), pe.offsite,
		e.pg.DataDir, e.pg.DSN("postgres"), config, staging, source, srv.Endpoint, srv.Region, srv.AccessKey, secret)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.pg.Start(t)
	e.mustRun("repo", "init")

	e.sql("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 2000) g")
	for _, a := range []string{"ledger", "orders", "config", "source", "uploads"} {
		e.mustRun("backup", a)
	}
	e.sql("insert into t select g, 'after' from generate_series(2001, 2500) g")
	e.switchAndWait()

	// The staging database goes last, with content no other asset has, so
	// that the packs its backup adds hold its data alone.
	db, err := sql.Open("sqlite", "file:"+staging)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 256<<10)
	for i := range junk {
		junk[i] = byte(rand.Uint32())
	}
	if _, err := db.Exec("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB); INSERT INTO blobs (b) VALUES (?)", junk); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before := packNames(t, e.repo)
	e.mustRun("backup", "staging")
	for _, p := range packNames(t, e.repo) {
		if !slices.Contains(before, p) {
			pe.sqlitePacks = append(pe.sqlitePacks, p)
		}
	}
	if len(pe.sqlitePacks) == 0 {
		t.Fatal("the staging backup wrote no pack of its own")
	}
	e.mustRun("copy")
	return pe
}

// packNames lists a file repository's packs, relative to it.
func packNames(t *testing.T, repoDir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(repoDir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// freshHost is what lifeboat sees on a new host: a policy like the
// platform's but with a state directory that does not exist yet, and an
// empty HOME.
type freshHost struct {
	policy, state, home string
}

func (pe *platformEnv) freshHost() freshHost {
	t := pe.t
	t.Helper()
	dir := t.TempDir()
	h := freshHost{policy: filepath.Join(dir, "lifeboat.yaml"), state: filepath.Join(dir, "state"), home: filepath.Join(dir, "home")}
	if err := os.Mkdir(h.home, 0o700); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(pe.policy)
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.Replace(doc, []byte("state_dir: "+filepath.Join(pe.dir, "state")), []byte("state_dir: "+h.state), 1)
	if err := os.WriteFile(h.policy, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// run runs lifeboat on the fresh host.
func (h freshHost) run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-c", h.policy}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HOME="+h.home)
	return runCommand(t, cmd)
}

// exercise runs drill --platform on the fresh host with a work directory
// of the test's, checks that every throwaway target is gone afterwards,
// and returns the exercise's report.
func (h freshHost) exercise(t *testing.T, bin string, args ...string) (result, *evidence.PlatformReport) {
	t.Helper()
	work := t.TempDir()
	res := h.run(t, bin, append([]string{"drill", "--platform", "--json", "--work-dir", work}, args...)...)
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Fatalf("the exercise left %s behind in its work directory\nstderr: %s", left[0].Name(), res.stderr)
	}
	if pids := processesUnder(work); len(pids) != 0 {
		t.Fatalf("processes %v still run from the exercise's work directory", pids)
	}
	var rep evidence.PlatformReport
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("drill --platform --json: %v\nstdout: %s\nstderr: %s", err, res.stdout, res.stderr)
	}
	return res, &rep
}

// TestPlatformExerciseFreshHost: with the primary repository gone and a
// new host's empty HOME and state directory, drill --platform from the
// copy restores every kind in tier order and passes, reporting each tier
// against its RTO; the report is in the new catalog, in the copy and in
// lifeboat report. A damaged pack of one asset then fails that asset and
// the exercise, the others complete, and no throwaway target is left.
func TestPlatformExerciseFreshHost(t *testing.T) {
	t.Parallel()
	pe := newPlatformEnv(t)
	// The primary region is lost.
	gone := pe.repo + ".lost"
	if err := os.Rename(pe.repo, gone); err != nil {
		t.Fatal(err)
	}
	h := pe.freshHost()

	res, rep := h.exercise(t, pe.bin, "--fresh-host", "--parallel", "2")
	if res.code != 0 || !rep.Passed || len(rep.Failed) != 0 {
		t.Fatalf("exercise: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if _, err := os.Stat(pe.repo); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the fresh host touched the primary repository's place: %v", err)
	}
	if !rep.FreshHost || rep.Repository != "offsite" || rep.Parallel != 2 || rep.RTOSeconds <= 0 {
		t.Errorf("report: %+v", rep)
	}
	var tiers []string
	for _, tr := range rep.Tiers {
		tiers = append(tiers, tr.Tier+"="+strings.Join(tr.Assets, "+"))
		if tr.RTOMet == nil || !*tr.RTOMet || !tr.Passed || tr.RTOSeconds <= 0 || tr.RTOTargetSeconds <= 0 {
			t.Errorf("tier %s: %+v", tr.Tier, tr)
		}
	}
	if got := strings.Join(tiers, " "); got != "tier1=ledger tier2=orders+config tier3=staging+source+uploads" {
		t.Fatalf("tiers %s", got)
	}
	kinds := map[string]bool{}
	for _, m := range rep.Members {
		kinds[m.Kind] = true
		if !m.Passed || m.Drill == "" || m.RTOSeconds <= 0 {
			t.Errorf("member %+v", m)
		}
		t.Logf("%s (%s, %s): RTO %.2fs, RPO %.2fs, %s → %s", m.Asset, m.Kind, m.Tier, m.RTOSeconds, m.RPOSeconds,
			m.Started.Format(time.StampMilli), m.Ended.Format(time.StampMilli))
	}
	if len(kinds) != 6 {
		t.Errorf("kinds drilled: %v", kinds)
	}
	// The platform is back when its last asset is: a tier starts once the
	// tier before has restored its data, so an earlier tier's checks may
	// end after a later tier's drills.
	slowest := 0.0
	for _, tr := range rep.Tiers {
		slowest = max(slowest, tr.RTOSeconds)
	}
	if slowest != rep.RTOSeconds {
		t.Errorf("platform RTO %.3f, the slowest tier back after %.3f", rep.RTOSeconds, slowest)
	}
	// The evidence travels with the copy.
	if _, err := os.Stat(filepath.Join(pe.offsite, "drills", evidence.PlatformName, rep.ID)); err != nil {
		t.Errorf("the exercise's report is not in the copy: %v", err)
	}

	// A damaged pack of the staging database, in the copy.
	for _, p := range pe.sqlitePacks {
		flipBytes(t, filepath.Join(pe.offsite, p))
	}
	res, bad := h.exercise(t, pe.bin, "--fresh-host", "--whole-tiers")
	if res.code != exitFailure || bad.Passed || strings.Join(bad.Failed, ",") != "staging" {
		t.Fatalf("exercise over a damaged pack: exit %d, failed %v\nstdout: %s\nstderr: %s", res.code, bad.Failed, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "staging") {
		t.Errorf("stderr does not name the failed asset: %s", res.stderr)
	}
	for _, m := range bad.Members {
		if m.Passed != (m.Asset != "staging") || m.Drill == "" {
			t.Errorf("member %+v", m)
		}
	}
	// --whole-tiers: no drill of a tier starts before every drill of the
	// tier before has ended.
	checkTierOrder(t, bad, func(m evidence.Member) time.Time { return m.Ended })

	// lifeboat report on the new host shows both exercises, their member
	// drills with them (the primary is back, for the sizes it reads).
	if err := os.Rename(gone, pe.repo); err != nil {
		t.Fatal(err)
	}
	out := h.run(t, pe.bin, "report", "--format", "json")
	if out.code != 0 {
		t.Fatalf("report: %s", out.stderr)
	}
	var doc struct {
		Schedule []struct {
			Asset, Result string
			Drills        int
		} `json:"testing_schedule"`
		Log []struct {
			Drill, Asset string
			Date         time.Time
			Passed       bool
			RTOSeconds   float64          `json:"rto_seconds"`
			Phases       []evidence.Phase `json:"phases"`
		} `json:"test_results"`
	}
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	row := slices.IndexFunc(doc.Schedule, func(s struct {
		Asset, Result string
		Drills        int
	}) bool {
		return s.Asset == "Full DR failover drill"
	})
	if row < 0 || doc.Schedule[row].Drills != 2 || doc.Schedule[row].Result != "fail" {
		t.Errorf("testing schedule: %+v", doc.Schedule)
	}
	// Tier order, from the phase times the member drills recorded: no
	// drill of a tier starts before every drill of the tier before has
	// restored its data (fetch and write done).
	// Each phase is recorded to the millisecond (rounded), so a sum of n
	// phases may lie up to n/2 ms after the moment it measures: the
	// earliest the write can have ended is the sum less that.
	restoredAt := map[string]time.Time{}
	for _, l := range doc.Log {
		at := l.Date
		for i, ph := range l.Phases {
			at = at.Add(time.Duration(ph.Seconds * float64(time.Second)))
			if ph.Name == evidence.PhaseWrite {
				restoredAt[l.Drill] = at.Add(-time.Duration(i+1) * time.Millisecond / 2)
			}
		}
	}
	checkTierOrder(t, rep, func(m evidence.Member) time.Time {
		// Phases are timed from just after the drill's start: the sum
		// lies at or before the moment the tier's gate opened.
		if at, ok := restoredAt[m.Drill]; ok {
			if m.Restored.Before(at) {
				t.Errorf("%s: restored at %s, its phases end the write at %s", m.Asset, m.Restored, at)
			}
			return at
		}
		t.Errorf("%s: no write phase recorded", m.Asset)
		return m.Ended
	})
	platformLines, drillLines := 0, 0
	for _, l := range doc.Log {
		switch {
		case l.Drill == rep.ID:
			platformLines++
			if l.Asset != "Full DR failover drill" || !l.Passed || l.RTOSeconds != rep.RTOSeconds {
				t.Errorf("log line %+v", l)
			}
		case l.Drill == bad.ID:
			platformLines++
		default:
			drillLines++
		}
	}
	if platformLines != 2 || drillLines != 12 {
		t.Errorf("%d platform lines and %d drill lines in the log, want 2 and 12 (6 assets, twice)", platformLines, drillLines)
	}
	md := h.run(t, pe.bin, "report")
	if !strings.Contains(md.stdout, "| Full DR failover drill |") || !strings.Contains(md.stdout, "Platform exercise "+rep.ID) {
		t.Errorf("markdown report lacks the exercise:\n%s", md.stdout)
	}

	// Stopped while the ledger's throwaway server runs: the exercise ends
	// aborted, and leaves no target behind.
	work := t.TempDir()
	cmd := exec.Command(pe.bin, "-c", h.policy, "drill", "--platform", "--json", "--work-dir", work)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A throwaway server, not lifeboat itself (its --work-dir names work).
	self := fmt.Sprint(cmd.Process.Pid) + " "
	if !eventually(60*time.Second, func() bool {
		return slices.ContainsFunc(processesUnder(work), func(p string) bool { return !strings.HasPrefix(p, self) })
	}) {
		cmd.Process.Kill()
		t.Fatal("no throwaway server started")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err == nil {
		t.Fatal("a stopped exercise exited 0")
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Fatalf("the stopped exercise left %s behind", left[0].Name())
	}
	if pids := processesUnder(work); len(pids) != 0 {
		t.Fatalf("processes %v still run from the stopped exercise's work directory", pids)
	}
	var stopped evidence.PlatformReport
	if err := json.Unmarshal(stdout.Bytes(), &stopped); err != nil || !stopped.Aborted || stopped.Passed {
		t.Fatalf("stopped exercise: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
}

// checkTierOrder fails when a drill of a later tier started before the
// moment done says every drill of the tier before was done with.
func checkTierOrder(t *testing.T, rep *evidence.PlatformReport, done func(evidence.Member) time.Time) {
	t.Helper()
	var prevEnd time.Time
	prevTier := ""
	for _, tr := range rep.Tiers {
		var end time.Time
		for _, m := range rep.Members {
			if m.Tier != tr.Tier {
				continue
			}
			if m.Started.Before(prevEnd) {
				t.Errorf("%s (tier %s) started %s, before tier %s was done at %s", m.Asset, tr.Tier,
					m.Started.Format(time.StampMilli), prevTier, prevEnd.Format(time.StampMilli))
			}
			if d := done(m); d.After(end) {
				end = d
			}
		}
		prevEnd, prevTier = end, tr.Tier
	}
}

// flipBytes damages a file in its middle.
func flipBytes(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) / 3; i < len(data)/3+64 && i < len(data); i++ {
		data[i] ^= 0xff
	}
	os.Chmod(path, 0o600)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPlatformExerciseRefusals: wrong calls of drill --platform are usage
// errors on one line, before anything is drilled; an asset that is not
// kept in the repository named fails the exercise and is named.
func TestPlatformExerciseRefusals(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a.txt"), "a\n", 0o644, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	e.mustRun("backup", "app-config")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "--platform", "app-config"}, "drill --platform takes no ASSET"},
		{[]string{"drill", "app-config", "--group", "g"}, "--group, --fresh-host, --parallel and --whole-tiers apply to drill --platform"},
		{[]string{"drill", "--platform", "--fresh-host"}, "--fresh-host needs --repository"},
		{[]string{"drill", "--platform", "--group", "nope"}, `no group is called "nope"`},
		{[]string{"drill", "--platform", "--repository", "nowhere"}, "nowhere"},
		{[]string{"drill", "--platform", "--latest"}, "apply to one asset"},
	} {
		r := e.run(c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if n := storedDrills(e.repo); n != 0 {
		t.Fatalf("%d drill reports stored by refused exercises", n)
	}

	// A second repository the asset is not kept in.
	doc, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.Replace(doc, []byte("assets:\n"), []byte(fmt.Sprintf("  - name: elsewhere\n    url: file://%s\n    key_file: %s\nassets:\n",
		filepath.Join(e.dir, "elsewhere"), filepath.Join(e.dir, "repo.key"))), 1)
	if err := os.WriteFile(e.policy, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init", "elsewhere")
	r := e.run("drill", "--platform", "--repository", "elsewhere")
	if r.code != exitFailure || !strings.Contains(r.stdout, "asset app-config is not kept in repository elsewhere") ||
		!strings.Contains(r.stderr, "failed: 1 of 1 assets failed: app-config") {
		t.Fatalf("exercise from a repository the asset is not in: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Every asset the policy keeps in the primary passes from it, in the
	// human form too.
	r = e.run("drill", "--platform")
	if r.code != 0 || !strings.Contains(r.stdout, ": PASSED") || !strings.Contains(r.stdout, "(no tier)") {
		t.Fatalf("exercise: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("%s", r.stdout)
}
