package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// fleetFilesEnv is one agent of a fleet that backs up a files asset every
// second into a repository of its own; its records go to the shared
// catalog at url.
func fleetFilesEnv(t *testing.T, host, url, asset string) *env {
	t.Helper()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: t.TempDir()}
	e.policy, e.repo = filepath.Join(e.dir, "lifeboat.yaml"), filepath.Join(e.dir, "repo")
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "app.conf"), "host "+host+"\n", 0o600, time.Now())
	doc := fmt.Sprintf(`catalog: '%s'
host: %s
check: { interval: 1s }
state_dir: %s
tiers:
  gold: { rpo: 1h, rto: 1h }
repositories:
  - { name: primary, url: "file://%s", key_file: %s }
assets:
  - name: %s
    kind: files
    tier: gold
    paths: [%s]
    schedule: "@every 1s"
    repositories: [primary]
`, url, host, filepath.Join(e.dir, "state"), e.repo, filepath.Join(e.dir, "repo.key"), asset, src)
	if err := os.WriteFile(e.policy, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init")
	return e
}

// TestFleetReadsShowEveryHost runs two lifeboat serve agents on one
// PostgreSQL catalog, each backing up an asset of the same name: runs,
// status, check and report on either show both hosts, apart.
func TestFleetReadsShowEveryHost(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	url := fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", pg.SocketDir, pg.Port)
	a := fleetFilesEnv(t, "web-1", url, "app")
	b := fleetFilesEnv(t, "web-2", url, "app")
	da, db := a.serve(), b.serve()
	hostsOf := func(rows []runRow) map[string]int {
		n := map[string]int{}
		for _, r := range rows {
			if r.Result == "ok" {
				n[r.Host]++
			}
		}
		return n
	}
	var rows []runRow
	waitFor(t, 60*time.Second, "both hosts' runs in the fleet catalog", func() bool {
		rows = a.runs()
		n := hostsOf(rows)
		return n["web-1"] >= 2 && n["web-2"] >= 2
	}, func() string { return fmt.Sprintf("runs: %+v\nweb-1:\n%s\nweb-2:\n%s", rows, da.stderr, db.stderr) })
	// The same from the other host, and one host at a time.
	if n := hostsOf(b.runs()); n["web-1"] == 0 || n["web-2"] == 0 {
		t.Errorf("runs from web-2: %v", n)
	}
	var only []runRow
	if err := json.Unmarshal([]byte(b.mustRun("runs", "--json", "--host", "web-1")), &only); err != nil || len(only) == 0 {
		t.Fatalf("runs --host web-1: %v", err)
	}
	for _, r := range only {
		if r.Host != "web-1" {
			t.Errorf("runs --host web-1 lists a run of %s", r.Host)
		}
	}
	if out := a.mustRun("runs", "--limit", "4"); !strings.HasPrefix(out, "HOST") {
		t.Errorf("runs has no HOST column:\n%s", out)
	}

	// Each agent's check publishes its asset: status lists both.
	waitFor(t, 60*time.Second, "both hosts' assets published", func() bool {
		out := a.mustRun("status")
		return strings.Contains(out, "web-1  ") && strings.Contains(out, "web-2  ")
	}, func() string { return a.mustRun("status") })
	var st struct {
		Fleet []struct {
			Host, Name, State string
			LastBackup        time.Time `json:"last_backup"`
		} `json:"fleet"`
	}
	if err := json.Unmarshal([]byte(b.mustRun("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Fleet) != 2 || st.Fleet[0].Host != "web-1" || st.Fleet[1].Host != "web-2" || st.Fleet[0].LastBackup.IsZero() ||
		st.Fleet[0].State != "ok" {
		t.Errorf("status --json fleet: %+v", st.Fleet)
	}
	if out := a.mustRun("check"); !strings.Contains(out, "fleet catalog: 2 assets") {
		t.Errorf("check does not list the fleet:\n%s", out)
	}
	// The report holds both: the other host's asset under host/name.
	if md := a.mustRun("report", "--format", "md"); !strings.Contains(md, "web-2/app") {
		t.Errorf("the report of web-1 does not show web-2's asset:\n%s", md)
	}
	// The dashboard of web-1 lists both hosts' assets, each its own row.
	token := strings.TrimSpace(a.mustRun("web", "token", "create", "--role", "viewer"))
	_, addr := startDashboard(t, a, "web", "--listen", "127.0.0.1:0")
	var api []struct {
		Host, Name, State string
		LastBackup        time.Time `json:"last_backup"`
	}
	if code := getJSON(t, addr, "/api/assets", token, &api); code != http.StatusOK {
		t.Fatalf("GET /api/assets: %d", code)
	}
	seen := map[string]bool{}
	for _, r := range api {
		seen[r.Host+"/"+r.Name] = r.State == "ok" && !r.LastBackup.IsZero()
	}
	if len(api) != 2 || !seen["web-1/app"] || !seen["web-2/app"] {
		t.Errorf("GET /api/assets on web-1: %+v, want web-1/app and web-2/app, both ok with a backup", api)
	}
	// The other host's asset has a page too, from what its agent published.
	var remote struct {
		Host, Name, State string
		Remote            bool
		LastBackup        time.Time `json:"last_backup"`
	}
	if code := getJSON(t, addr, "/api/assets/web-2/app", token, &remote); code != http.StatusOK || !remote.Remote || remote.Host != "web-2" ||
		remote.State != "ok" || remote.LastBackup.IsZero() {
		t.Errorf("GET /api/assets/web-2/app on web-1: %d %+v, want web-2's app, remote, ok with a backup", code, remote)
	}

	for _, d := range []*daemonProc{da, db} {
		if code := d.stop(30 * time.Second); code != 0 {
			t.Errorf("serve exited %d:\n%s", code, d.stderr)
		}
	}
}
