package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// runbookBlock is the first command of the shell block titled title in
// the section of asset in a Markdown runbook.
func runbookBlock(t *testing.T, md, asset, title string) []string {
	t.Helper()
	start := strings.Index(md, "### "+asset+" (")
	if start < 0 {
		t.Fatalf("no section for %s:\n%s", asset, md)
	}
	// Up to the next heading: the blocks' comment lines start with "# ".
	section := md[start+4:]
	for _, h := range []string{"\n### ", "\n## "} {
		if end := strings.Index(section, h); end >= 0 {
			section = section[:end]
		}
	}
	re := regexp.MustCompile("(?s)```sh\n# " + regexp.QuoteMeta(title) + "\n(.*?)\n```")
	m := re.FindStringSubmatch(section)
	if m == nil {
		t.Fatalf("no %q block for %s:\n%s", title, asset, section)
	}
	var lines []string
	for _, l := range strings.Split(m[1], "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// runLine runs a runbook line through the shell as an engineer would,
// with this build as lifeboat.
func (e *env) runLine(line string) string {
	e.t.Helper()
	line = strings.Replace(line, "lifeboat ", e.bin+" ", 1)
	out, err := exec.Command("/bin/sh", "-c", line).CombinedOutput()
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The runbook of a policy with a postgres, a sqlite and a files asset in
// two tiers: every asset in recovery order, and its restore lines,
// copied and run, bring each one back; the forecast says "no drill yet"
// until a drill is recorded, then gives a time.
func TestRunbookRestoresEveryAsset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	conf := filepath.Join(e.dir, "conf")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "app.conf"), []byte("listen = 8080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	appDB := filepath.Join(e.dir, "app.db")
	if out, err := exec.Command("sqlite3", appDB, "create table t(x); insert into t values (1), (2), (3);").CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v %s", err, out)
	}
	root := filepath.Join(e.dir, "scratch")
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: %s
    key_file: %s
tiers:
  standard: { rpo: 24h, rto: 4h }
  critical: { rpo: 5m, rto: 1h }
runbook: { path: %s }
report: { path: dr-report.md, format: md }
assets:
  - name: conf
    kind: files
    tier: standard
    paths: [%s]
    repositories: [primary]
  - name: db
    kind: postgres
    tier: critical
    pgdata: %s
    dsn: "%s"
    repositories: [primary]
    drill:
      checks:
        - name: ledger rows
          sql: "select count(*) >= 1000 from ledger"
  - name: app
    kind: sqlite
    tier: critical
    path: %s
    repositories: [primary]
    drill:
      checks:
        - name: three rows
          sql: "select count(*) = 3 from t"
`, filepath.Join(e.dir, "state"), e.repoURL, filepath.Join(e.dir, "repo.key"), filepath.Join(e.dir, "runbook.md"), conf,
		e.pg.DataDir, e.pg.DSN("postgres"), appDB)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.sql("create table ledger (id int primary key)")
	e.sql("insert into ledger select g from generate_series(1, 1000) g")
	e.mustRun("backup", "--all")
	time.Sleep(1100 * time.Millisecond) // a moment between the two batches, to the second
	between := e.sql("select to_char(now() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || 'Z'")
	time.Sleep(1100 * time.Millisecond)
	e.sql("insert into ledger select g from generate_series(1001, 1500) g")
	e.switchAndWait()

	md := e.mustRun("runbook", "--restore-to", root)
	for _, heading := range []string{"## 1. critical", "### db (postgres)", "### app (sqlite)", "## 2. standard", "### conf (files)"} {
		if !strings.Contains(md, heading) {
			t.Fatalf("the runbook lacks %q:\n%s", heading, md)
		}
	}
	if !(strings.Index(md, "### db (postgres)") < strings.Index(md, "### app (sqlite)") && strings.Index(md, "### app (sqlite)") < strings.Index(md, "### conf (files)")) {
		t.Fatalf("assets out of recovery order:\n%s", md)
	}
	if n := strings.Count(md, "RTO forecast: no drill yet"); n != 3 {
		t.Fatalf("%d assets without a forecast say no drill yet, want 3:\n%s", n, md)
	}
	if !strings.Contains(md, "| primary | primary | `"+e.repoURL+"` |") {
		t.Fatalf("the runbook does not say where the backups are:\n%s", md)
	}

	// files: the newest point, and the check line counts what came back.
	latest := runbookBlock(t, md, "conf", "Restore the latest point")
	e.runLine(latest[0])
	if got, err := os.ReadFile(filepath.Join(root, "conf", conf, "app.conf")); err != nil || string(got) != "listen = 8080\n" {
		t.Fatalf("conf restored by %q: %q, %v", latest[0], got, err)
	}
	if got := e.runLine(runbookBlock(t, md, "conf", "Check it")[0]); got != "1" {
		t.Fatalf("the files check counts %q, want 1", got)
	}

	// sqlite: the newest point, then the integrity check and the drill's query.
	e.runLine(runbookBlock(t, md, "app", "Restore the latest point")[0])
	checks := runbookBlock(t, md, "app", "Check it")
	if got := e.runLine(checks[0]); got != "ok" {
		t.Fatalf("integrity_check of the restored database: %q", got)
	}
	if got := e.runLine(checks[1]); got != "1" {
		t.Fatalf("the drill's query on the restored database: %q", got)
	}

	// postgres: the newest point (every row), and a time between the
	// batches (the line with its time replaced, as the runbook says).
	dbLatest := runbookBlock(t, md, "db", "Restore the latest point")
	if !strings.Contains(dbLatest[0], "--archive-off") {
		t.Fatalf("a scratch restore of postgres must not archive: %s", dbLatest[0])
	}
	e.runLine(dbLatest[0])
	c := pgtest.Open(t, filepath.Join(root, "db"), nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "1500" {
		t.Fatalf("db restored to the newest point has %s rows, want 1500", got)
	}
	c.Stop(t)
	toTime := runbookBlock(t, md, "db", "Restore an earlier point")
	line := regexp.MustCompile(`--time \S+`).ReplaceAllString(toTime[0], "--time "+between)
	line = strings.Replace(line, filepath.Join(root, "db"), filepath.Join(root, "db-earlier"), 1)
	if line == toTime[0] {
		t.Fatalf("no --time in %q", toTime[0])
	}
	e.runLine(line)
	c = pgtest.Open(t, filepath.Join(root, "db-earlier"), nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "1000" {
		t.Fatalf("db restored to %s has %s rows, want 1000", between, got)
	}

	// A drill gives the sqlite asset its forecast and last result.
	e.mustRun("drill", "app")
	md = e.mustRun("runbook", "--restore-to", root)
	app := md[strings.Index(md, "### app (sqlite)"):strings.Index(md, "## 2. standard")]
	if strings.Contains(app, "no drill yet") || !strings.Contains(app, "RTO forecast: ") || !strings.Contains(app, " PASS from primary, RTO ") {
		t.Fatalf("after a drill, the runbook says:\n%s", app)
	}
	// serve writes it to the policy's runbook path as it starts (and after
	// every drill and reload: internal/daemon's TestRunbookAfterDrillAndReload).
	d := e.serve()
	written := filepath.Join(e.dir, "runbook.md")
	if !eventually(60*time.Second, func() bool {
		b, err := os.ReadFile(written)
		return err == nil && strings.Contains(string(b), " PASS from primary, RTO ")
	}) {
		t.Fatalf("serve wrote no runbook with the drill to %s\n%s", written, d.stderr)
	}
	// And the DR report to the report path (relative: beside the policy),
	// with the drill in its results log.
	report := filepath.Join(filepath.Dir(e.policy), "dr-report.md")
	if !eventually(60*time.Second, func() bool {
		b, err := os.ReadFile(report)
		return err == nil && strings.Contains(string(b), "## Recovery runbook") && strings.Contains(string(b), "DR Test Results Log")
	}) {
		t.Fatalf("serve wrote no DR report to %s\n%s", report, d.stderr)
	}
	if code := d.stop(time.Minute); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, d.stderr)
	}
	// The DR report carries the runbook.
	if rep := e.mustRun("report"); !strings.Contains(rep, "## Recovery runbook") || !strings.Contains(rep, "### app (sqlite) · critical") {
		t.Fatalf("the DR report lacks the runbook:\n%s", rep)
	}
}
