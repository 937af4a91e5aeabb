package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

const drillPolicy = `    drill:
      point: latest
      checks:
        - name: t has rows
          sql: "select count(*) >= 1000 from t"
        - name: at least 1000
          sql: "select count(*) from t"
          expect: ">= 1000"
`

// drillEnv is a cluster with a table, a full backup and archived WAL after
// it, ready to be drilled.
func drillEnv(t *testing.T, extra string) *env {
	t.Helper()
	e := startEnv(t, true, func(e *env) { e.assetExtra = extra })
	e.sql("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	e.sql("insert into t select g, 'after' from generate_series(1001, 1500) g")
	e.switchAndWait()
	e.sql("insert into t select g, 'later' from generate_series(1501, 1600) g")
	e.switchAndWait()
	return e
}

// drill runs lifeboat drill of the env's asset db (see drillAsset).
func (e *env) drill(args ...string) (result, *evidence.DrillReport) {
	e.t.Helper()
	return e.drillAsset("db", args...)
}

func TestDrillHealthyBackupPasses(t *testing.T) {
	t.Parallel()
	e := drillEnv(t, drillPolicy)
	res, rep := e.drill()
	if res.code != 0 || rep == nil || !rep.Passed {
		t.Fatalf("drill: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for _, ph := range []string{evidence.PhaseFetch, evidence.PhaseWrite, evidence.PhaseReplay, evidence.PhaseStart, evidence.PhaseChecks} {
		found := false
		for _, p := range rep.Phases {
			found = found || (p.Name == ph && p.Seconds >= 0)
		}
		if !found {
			t.Errorf("phase %s missing from %+v", ph, rep.Phases)
		}
	}
	if rep.RTOSeconds <= 0 || rep.Recovered.IsZero() || rep.RPOSeconds < 0 || rep.RPOSeconds > 120 {
		t.Errorf("RTO %v, recovered %v, RPO %v", rep.RTOSeconds, rep.Recovered, rep.RPOSeconds)
	}
	if rep.WALFiles < 2 {
		t.Errorf("WAL files replayed: %d, want the two segments archived after the backup at least", rep.WALFiles)
	}
	if rep.RTOTargetSeconds != 3600 || rep.RPOTargetSeconds != 300 || rep.RTOMet == nil || !*rep.RTOMet || !*rep.RPOMet {
		t.Errorf("objectives: %+v", rep)
	}
	// The last transaction that came back is the last one archived: the
	// 'later' rows were committed before the second switch.
	names := map[string]bool{}
	for _, c := range rep.Checks {
		names[c.Name] = c.Passed
	}
	if !names["t has rows"] || !names["at least 1000"] || len(rep.Checks) != 3 {
		t.Errorf("checks: %+v", rep.Checks)
	}
	// The report is in the catalog and in the repository.
	if stored := storedDrills(e.repo); stored != 1 {
		t.Errorf("%d drill reports in the repository, want 1", stored)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state", "catalog.db")); err != nil {
		t.Errorf("catalog: %v", err)
	}

	// The archive as it stood when a drill began is all its recovery
	// sees: wal-fetch refuses later segments as not archived (exit 1).
	segs := walFiles(t, e.repo)
	first, last := filepath.Base(segs[0]), filepath.Base(segs[len(segs)-1])
	dest := filepath.Join(t.TempDir(), last)
	if r := e.run("wal-fetch", "--until", first, "db", last, dest); r.code != 1 || !strings.Contains(r.stderr, "after "+first) {
		t.Errorf("wal-fetch --until %s %s: exit %d, %s", first, last, r.code, r.stderr)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Error("wal-fetch --until wrote a segment after the bound")
	}
	e.mustRun("wal-fetch", "--until", last, "db", last, dest)

	// A random point lies between the backup and the last commit archived,
	// and what came back is at most the target.
	before := time.Now()
	res, rep = e.drill("--random-point")
	if res.code != 0 || !rep.Passed || rep.Point != "random" {
		t.Fatalf("random drill: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if rep.Target.After(before) || rep.Recovered.After(rep.Target) || rep.Target.Before(rep.SnapshotTime) {
		t.Errorf("random drill: snapshot %v target %v recovered %v", rep.SnapshotTime, rep.Target, rep.Recovered)
	}
}

func TestDrillFailures(t *testing.T) {
	t.Parallel()
	e := drillEnv(t, drillPolicy+`        - name: impossible
          sql: "select count(*) from t"
          expect: ">= 1000000"
`)
	// A validation query whose expectation is not met fails the drill and
	// is named.
	res, rep := e.drill()
	if res.code == 0 || rep == nil || rep.Passed || !strings.Contains(rep.Error, `"impossible"`) {
		t.Fatalf("failing check: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "impossible") {
		t.Errorf("stderr does not name the check: %s", res.stderr)
	}

	// A missing WAL segment in the range fails and is named.
	segs := walFiles(t, e.repo)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 archived segments, have %v", segs)
	}
	missing := segs[len(segs)-2]
	data, err := os.ReadFile(missing)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(missing)
	res, rep = e.drill()
	name := filepath.Base(missing)
	if res.code == 0 || rep == nil || rep.Passed || !strings.Contains(rep.Error, name) {
		t.Fatalf("missing segment %s: exit %d\n%s\n%s", name, res.code, res.stdout, res.stderr)
	}
	os.WriteFile(missing, data, 0o600)

	// A damaged pack fails and is named.
	pack := largestFile(t, filepath.Join(e.repo, "data"))
	orig, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), orig...)
	for i := len(bad) / 3; i < len(bad)/3+64; i++ {
		bad[i] ^= 0xff
	}
	os.Chmod(pack, 0o600)
	if err := os.WriteFile(pack, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	res, rep = e.drill()
	packName := filepath.Base(pack)
	if res.code == 0 || rep == nil || rep.Passed || !strings.Contains(rep.Error, "pack "+packName[:8]) {
		t.Fatalf("damaged pack %s: exit %d\n%s\n%s", packName, res.code, res.stdout, res.stderr)
	}
	os.WriteFile(pack, orig, 0o600)

	// Every drill, failed ones included, is evidence.
	if n := storedDrills(e.repo); n != 3 {
		t.Errorf("%d drill reports stored, want 3", n)
	}
}

// walFiles lists the archived WAL segments of the repository, in order.
func walFiles(t *testing.T, repoDir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(repoDir, "wal"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(d.Name()) == 24 {
			out = append(out, p)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return filepath.Base(out[i]) < filepath.Base(out[j]) })
	return out
}

func largestFile(t *testing.T, dir string) string {
	t.Helper()
	var best string
	var size int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return nil
	})
	if best == "" {
		t.Fatalf("no file under %s", dir)
	}
	return best
}

// TestServeDrillsAndMetrics: serve runs a scheduled drill, and /metrics
// holds the documented series with the values of the backup and the
// drills in the catalog.
func TestServeDrillsAndMetrics(t *testing.T) {
	t.Parallel()
	e := drillEnv(t, strings.Replace(drillPolicy, "      point: latest\n", "      point: latest\n      schedule: \"@every 3s\"\n", 1))
	port := freeTCPPort(t)
	f, err := os.OpenFile(e.policy, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "check: { interval: 1s }\nmetrics: { listen: \"127.0.0.1:%d\" }\n", port)
	f.Close()
	_, manual := e.drill()
	if manual == nil || !manual.Passed {
		t.Fatalf("manual drill: %+v", manual)
	}

	d := e.serve()
	waitFor(t, 120*time.Second, "a scheduled drill", func() bool {
		for _, r := range e.runs("db") {
			if r.Result == "ok" && r.Kind == "drill" && r.Trigger != "manual" {
				return true
			}
		}
		return false
	}, d.stderr.String)
	// The RTO exposed is one the catalog holds: the newest drill's. Drills
	// go on running every 3s, so a scrape that raced one is taken again.
	var text string
	waitFor(t, 30*time.Second, "the check's series and the newest drill's RTO", func() bool {
		text = scrape(t, port)
		newest := e.drillReports()[0]
		return strings.Contains(text, "lifeboat_check_last_run_timestamp_seconds ") && strings.Contains(text, `lifeboat_wal_archive_lag_seconds{asset="db"}`) &&
			strings.Contains(text, fmt.Sprintf(`lifeboat_drill_rto_seconds{asset="db"} %g`+"\n", newest.RTOSeconds))
	}, func() string { return grepLines(text, "lifeboat_") })
	if code := d.stop(60 * time.Second); code != 0 {
		t.Fatalf("serve exit %d\n%s", code, d.stderr)
	}

	for _, want := range []string{
		`lifeboat_backup_last_success_timestamp_seconds{asset="db",kind="postgres"}`,
		`lifeboat_backup_runs_total{asset="db",kind="postgres",result="ok"}`,
		`lifeboat_drill_last_passed{asset="db"} 1`,
		`lifeboat_drill_rto_target_seconds{asset="db"} 3600`,
		`lifeboat_drill_rpo_target_seconds{asset="db"} 300`,
		`lifeboat_check_failing{asset="db",check="wal_lag"} 0`,
		`lifeboat_drill_phase_seconds{asset="db",phase="wal_replay"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(text, "lifeboat_"))
		}
	}
	reports := e.drillReports()
	if len(reports) < 2 {
		t.Fatalf("%d drill reports, want the manual and a scheduled one", len(reports))
	}

	// The report renders from the catalog and from the repository's own
	// copies of the reports, with the values of the records.
	for _, args := range [][]string{nil, {"--repository", "primary"}} {
		var doc struct {
			Results []struct {
				Drill      string  `json:"drill"`
				RTOSeconds float64 `json:"rto_seconds"`
				RPOSeconds float64 `json:"rpo_seconds"`
				Passed     bool    `json:"passed"`
			} `json:"test_results"`
		}
		out := e.mustRun(append([]string{"report", "--format", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("report %v: %v\n%s", args, err, out)
		}
		if len(doc.Results) != len(reports) {
			t.Fatalf("report %v: %d drills, the catalog holds %d", args, len(doc.Results), len(reports))
		}
		for i, r := range reports {
			got := doc.Results[i]
			if got.Drill != r.ID || got.RTOSeconds != r.RTOSeconds || got.RPOSeconds != r.RPOSeconds || got.Passed != r.Passed {
				t.Errorf("report %v row %d: %+v, record %s RTO %v RPO %v passed %v", args, i, got, r.ID, r.RTOSeconds, r.RPOSeconds, r.Passed)
			}
		}
	}
	md := e.mustRun("report", "--format", "md")
	if !strings.Contains(md, "DR Test Results Log") || !strings.Contains(md, reports[0].ID) {
		t.Errorf("report --format md:\n%s", md)
	}
	html := filepath.Join(e.dir, "dr.html")
	e.mustRun("report", "--format", "html", "--out", html)
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "<html") {
		t.Errorf("report --out: %v", err)
	}
}

// drillReports reads the drill reports from the catalog, newest first.
func (e *env) drillReports() []*evidence.DrillReport {
	e.t.Helper()
	c, err := catalog.Open(e.t.Context(), filepath.Join(e.dir, "state", catalog.FileName))
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	reps, err := c.Drills(e.t.Context(), catalog.DrillFilter{Asset: "db"})
	if err != nil {
		e.t.Fatal(err)
	}
	return reps
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scrape reads /metrics; "" while the daemon does not answer yet.
func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// grepLines keeps the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
