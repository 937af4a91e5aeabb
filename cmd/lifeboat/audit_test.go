package main

import (
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// auditPassphrase unlocks the vault repository: a secret of the policy
// that no event may show.
const auditPassphrase = "correct-horse-battery-staple-41"

// newAuditEnv is a files asset backed up to a primary and a copy, and a
// third repository opened by passphrase. state_dir is relative, so that
// the policy and the state directory can be copied to play another copy
// of this host (or a fresh one) against the same repositories.
func newAuditEnv(t *testing.T) (*env, string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "a.conf"), "a = 1\n", 0o600, time.Now())
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	key := filepath.Join(dir, "repo.key")
	policy := fmt.Sprintf(`state_dir: state
repositories:
  - name: primary
    url: file://%s
    key_file: %s
  - name: offsite
    url: file://%s
    key_file: %s
  - name: vault
    url: file://%s
    passphrase: %s
assets:
  - name: app
    kind: files
    paths: [%q]
    repositories: [primary, offsite]
    retention: { daily: 1 }
`, e.repo, key, filepath.Join(dir, "offsite"), key, filepath.Join(dir, "vault"), auditPassphrase, src)
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return e, src
}

// auditEvents lists the trail (audit --json); args are added to the call.
func (e *env) auditEvents(args ...string) []audit.Event {
	e.t.Helper()
	var events []audit.Event
	out := e.mustRun(append([]string{"audit", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &events); err != nil {
		e.t.Fatalf("audit --json: %v\n%s", err, out)
	}
	return events
}

// TestAuditRecordsEveryAction runs every action a files asset has, and
// finds exactly one event of each, with the fields an auditor asks for,
// and no secret of the policy or the command line in any of them.
func TestAuditRecordsEveryAction(t *testing.T) {
	t.Parallel()
	e, _ := newAuditEnv(t)
	e.mustRun("repo", "init")
	e.mustRun("backup", "app")
	e.mustRun("backup", "app")
	snaps := e.snapshotIDs("app")
	keyHex, err := os.ReadFile(filepath.Join(e.dir, "repo.key"))
	if err != nil {
		t.Fatal(err)
	}
	// Secrets on the command line: a DSN's password, a URL's, the vault's
	// passphrase and the repository key itself.
	reason := fmt.Sprintf("hold for case 7 host=db password=dsnpw0rd postgres://u:urlpw0rd@db/x %s %s", auditPassphrase, strings.TrimSpace(string(keyHex)))
	e.mustRun("pin", snaps[0], "--reason", reason)
	e.mustRun("unpin", snaps[0])
	e.mustRun("copy", "app")
	// Run as from an SSH session.
	verify := exec.Command(e.bin, "-c", e.policy, "verify", "--repository", "primary")
	verify.Env = append(os.Environ(), "SSH_CONNECTION=203.0.113.9 51234 10.0.0.1 22")
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	e.mustRun("restore", "app", "--to", filepath.Join(e.dir, "restored"))
	e.mustDrill("app")
	e.mustRun("expire", "--repository", "primary", "--grace", "1h")
	e.mustRun("repo", "add-key", "primary", "--key-file", filepath.Join(e.dir, "second.key"))
	if r := e.run("restore", "app", "--snapshot", "ffffffff", "--to", filepath.Join(e.dir, "nowhere")); r.code == 0 {
		t.Fatal("restore of a snapshot that does not exist succeeded")
	}

	events := e.auditEvents()
	count := map[string]int{}
	byType := map[string][]audit.Event{}
	for _, ev := range events {
		count[ev.Type]++
		byType[ev.Type] = append(byType[ev.Type], ev)
	}
	want := map[string]int{audit.TypeRepoInit: 3, audit.TypeBackup: 2, audit.TypePin: 1, audit.TypeUnpin: 1, audit.TypeCopy: 1,
		audit.TypeVerify: 1, audit.TypeRestore: 2, audit.TypeDrill: 1, audit.TypeExpire: 1, audit.TypeDelete: 1, audit.TypeKeyAdd: 1}
	for typ, n := range want {
		if count[typ] != n {
			t.Errorf("%d %s events, want %d", count[typ], typ, n)
		}
	}
	if len(events) != 15 {
		t.Errorf("%d events, want 15: %v", len(events), count)
	}
	uid := os.Getuid()
	host, _ := os.Hostname()
	for i, ev := range events {
		if ev.Seq != uint64(i+1) || ev.Time.IsZero() || ev.Start.IsZero() || ev.Time.Before(ev.Start) || ev.Time.Location() != time.UTC ||
			ev.Actor.UID != uid || ev.Actor.User == "" || ev.Actor.Host != host || len(ev.Args) == 0 || ev.Outcome == "" || ev.Chain == "" {
			t.Errorf("event %d lacks a field: %+v", i+1, ev)
		}
	}
	b := byType[audit.TypeBackup][1]
	if b.Asset != "app" || b.Outcome != audit.OK || b.Snapshot != snaps[1] || b.Repository != "primary" || b.Actor.Keys["primary"] == "" ||
		strings.Join(b.Args, " ") != "-c "+e.policy+" backup app" {
		t.Errorf("backup event: %+v", b)
	}
	if p := byType[audit.TypePin][0]; p.Snapshot != snaps[0] || p.Outcome != audit.OK {
		t.Errorf("pin event: %+v", p)
	}
	if d := byType[audit.TypeDelete][0]; d.Snapshot != snaps[0] || d.Asset != "app" || d.Repository != "primary" || d.Details["object"] != "snapshot" {
		t.Errorf("delete event: %+v", d)
	}
	if r := byType[audit.TypeRestore]; r[0].Outcome != audit.OK || r[0].Snapshot != snaps[1] || r[1].Outcome != audit.Failed || r[1].Error == "" {
		t.Errorf("restore events: %+v", r)
	}
	if d := byType[audit.TypeDrill][0]; d.Details["passed"] != "true" || d.Details["drill"] == "" || d.Snapshot == "" {
		t.Errorf("drill event: %+v", d)
	}
	if v := byType[audit.TypeVerify][0]; v.Repository != "primary" || v.Outcome != audit.OK || v.Source.SSH != "203.0.113.9:51234" {
		t.Errorf("verify event: %+v", v)
	}

	// No secret anywhere: the listing, both exports, the seals.
	jsonl := e.mustRun("audit", "export", "--format", "jsonl")
	csvOut := e.mustRun("audit", "export", "--format", "csv")
	rows, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
	if err != nil || len(rows) != len(events)+1 || len(strings.Split(strings.TrimSpace(jsonl), "\n")) != len(events) {
		t.Fatalf("exports: %v, %d csv rows, jsonl:\n%s", err, len(rows), jsonl)
	}
	listing := e.mustRun("audit")
	for _, secret := range []string{"dsnpw0rd", "urlpw0rd", auditPassphrase, strings.TrimSpace(string(keyHex))} {
		for what, text := range map[string]string{"jsonl": jsonl, "csv": csvOut, "listing": listing} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the secret %q", what, secret)
			}
		}
	}
	if !strings.Contains(jsonl, "hold for case 7") {
		t.Errorf("the reason's words are gone with its secrets:\n%s", jsonl)
	}
	if got := e.auditEvents("--asset", "app"); len(got) != count[audit.TypeBackup]+count[audit.TypeRestore]+count[audit.TypeDrill]+count[audit.TypeCopy]+count[audit.TypeDelete] {
		t.Errorf("--asset app: %d events", len(got))
	}
	if got := e.auditEvents("--since", "2000-01-01"); len(got) != len(events) {
		t.Errorf("--since 2000-01-01: %d events", len(got))
	}
	if got := e.auditEvents("--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); len(got) != 0 {
		t.Errorf("--since an hour ahead: %d events", len(got))
	}
	if r := e.run("audit", "--asset", "nope"); r.code != 2 {
		t.Errorf("--asset nope: exit %d", r.code)
	}
	if r := e.run("audit", "export", "--format", "xml"); r.code != 2 || !strings.Contains(r.stderr, "jsonl or csv") {
		t.Errorf("--format xml: exit %d: %s", r.code, r.stderr)
	}
	out := e.mustRun("audit", "verify")
	if !strings.Contains(out, "audit trail intact") || !strings.Contains(out, fmt.Sprintf("%d events", len(events))) {
		t.Errorf("audit verify:\n%s", out)
	}
}

// snapshotIDs are the full ids of the asset's snapshots, oldest first.
func (e *env) snapshotIDs(assetName string) []string {
	e.t.Helper()
	var snaps []struct {
		ID   string    `json:"id"`
		Stop time.Time `json:"stop_time"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("snapshots", assetName, "--json")), &snaps); err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(snaps, func(a, b struct {
		ID   string    `json:"id"`
		Stop time.Time `json:"stop_time"`
	}) int {
		return a.Stop.Compare(b.Stop)
	})
	var ids []string
	for _, s := range snaps {
		if !slices.Contains(ids, s.ID) {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) != 2 {
		e.t.Fatalf("%d snapshots of %s, want 2", len(ids), assetName)
	}
	return ids
}

// copyHost copies the policy and the state directory into a new
// directory: another copy of this host, against the same repositories.
func (e *env) copyHost(withState bool) *env {
	e.t.Helper()
	c := *e
	c.dir = e.t.TempDir()
	c.policy = filepath.Join(c.dir, "lifeboat.yaml")
	data, err := os.ReadFile(e.policy)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(c.policy, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if withState {
		copyDir(e.t, filepath.Join(e.dir, "state"), filepath.Join(c.dir, "state"))
	}
	return &c
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// catalogDB opens the catalog of a state directory for tampering.
func catalogDB(t *testing.T, e *env) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+catalog.Path(filepath.Join(e.dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// rewriteChain rewrites the catalog's chain as someone with the host's
// files (but not the repository's history) can: change the events, then
// recompute every hash so that the chain holds together on its own.
func rewriteChain(t *testing.T, db *sql.DB, change func([]*audit.Event) []*audit.Event) {
	t.Helper()
	rows, err := db.Query(`SELECT body FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var events []*audit.Event
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			t.Fatal(err)
		}
		ev, err := audit.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	rows.Close()
	events = change(events)
	mustExec(t, db, `DELETE FROM audit_events`)
	var last uint64
	var h audit.Hash
	for _, ev := range events {
		r, err := audit.Append(ev.Chain, last, h, ev)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, `INSERT INTO audit_events (seq, time, body, hash) VALUES (?, ?, ?, ?)`, r.Seq, r.Time.Format(time.RFC3339Nano), r.Body, r.Hash[:])
		last, h = r.Seq, r.Hash
	}
}

// TestAuditVerifyCatchesTampering deletes, edits and reorders events of
// a copy of the host's catalog, rewrites its chain so that it holds
// together, and rolls the catalog back to an older copy: audit verify
// names the first bad event and exits 1 every time. A fresh state
// directory, with only the repositories, verifies what their seals hold.
func TestAuditVerifyCatchesTampering(t *testing.T) {
	t.Parallel()
	e, src := newAuditEnv(t)
	e.mustRun("repo", "init")
	e.mustRun("backup", "app")
	old := e.copyHost(true) // the catalog as it was after four events
	for i := range 3 {
		writeFile(t, filepath.Join(src, "b.conf"), strconv.Itoa(i), 0o600, time.Now())
		e.mustRun("backup", "app")
	}
	e.mustRun("verify", "--repository", "offsite")
	if out := e.mustRun("audit", "verify"); !strings.Contains(out, "8 events") || !strings.Contains(out, "audit trail intact") {
		t.Fatalf("intact trail:\n%s", out)
	}

	tests := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB)
		seq    int
		reason string
	}{
		{"edited", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_events SET body = CAST(replace(CAST(body AS TEXT), '"outcome":"ok"', '"outcome":"failed"') AS BLOB) WHERE seq = 5`)
		}, 5, "does not match its stored hash"},
		{"deleted", func(t *testing.T, db *sql.DB) { mustExec(t, db, `DELETE FROM audit_events WHERE seq = 6`) }, 6, "missing (deleted)"},
		{"reordered", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, `UPDATE audit_events SET seq = -1 WHERE seq = 5`)
			mustExec(t, db, `UPDATE audit_events SET seq = 5 WHERE seq = 7`)
			mustExec(t, db, `UPDATE audit_events SET seq = 7 WHERE seq = -1`)
		}, 5, "reordered"},
		{"edited, chain rewritten", func(t *testing.T, db *sql.DB) {
			rewriteChain(t, db, func(evs []*audit.Event) []*audit.Event { evs[5].Actor.User = "someone-else"; return evs })
		}, 6, "differs from the event sealed in repository"},
		{"deleted, chain rewritten", func(t *testing.T, db *sql.DB) {
			rewriteChain(t, db, func(evs []*audit.Event) []*audit.Event { return append(evs[:4], evs[5:]...) })
		}, 5, "sealed in repository"},
		{"reordered, chain rewritten", func(t *testing.T, db *sql.DB) {
			rewriteChain(t, db, func(evs []*audit.Event) []*audit.Event { evs[4], evs[6] = evs[6], evs[4]; return evs })
		}, 5, "sealed in repository"},
		{"newest deleted", func(t *testing.T, db *sql.DB) { mustExec(t, db, `DELETE FROM audit_events WHERE seq >= 7`) }, 7, "missing on this host but sealed in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := e.copyHost(true).forTest(t)
			tt.tamper(t, catalogDB(t, h))
			r := h.run("audit", "verify")
			want := fmt.Sprintf("event %d is the first broken link", tt.seq)
			if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, tt.reason) {
				t.Fatalf("audit verify: exit %d, want 1 and %q (%s)\nstdout: %s\nstderr: %s", r.code, want, tt.reason, r.stdout, r.stderr)
			}
		})
	}
	t.Run("rolled back", func(t *testing.T) {
		t.Parallel()
		h := old.forTest(t)
		r := h.run("audit", "verify")
		if r.code != 1 || !strings.Contains(r.stderr, "event 5 is the first broken link: events 5..8 are missing on this host") {
			t.Fatalf("rolled back catalog: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("fresh host", func(t *testing.T) {
		t.Parallel()
		h := e.copyHost(false).forTest(t)
		r := h.run("audit", "verify")
		if r.code != 0 || !strings.Contains(r.stdout, "vouch for events 1..8") || !strings.Contains(r.stdout, "audit trail intact") {
			t.Fatalf("fresh host: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})
}

// TestAuditWALPushOnePerMinute archives segments through a real
// PostgreSQL: the pushes of a minute are one event, recorded by the
// first push of a later minute or by the audit commands once the minute
// is over, and the backup is one event of its own.
func TestAuditWALPushOnePerMinute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.mustRun("backup", "db")
	for range 3 {
		e.switchAndWait()
	}
	archived, err := strconv.Atoi(strings.TrimSpace(e.sql("SELECT archived_count FROM pg_stat_archiver")))
	if err != nil {
		t.Fatal(err)
	}
	// The minute of the last push must be over before it is an event.
	events := e.auditEvents("--clock-offset", "2m")
	pushes, failed, minutes := 0, 0, map[time.Time]bool{}
	backups := 0
	for _, ev := range events {
		switch ev.Type {
		case audit.TypeWALPush:
			n, _ := strconv.Atoi(ev.Details["pushes"])
			f, _ := strconv.Atoi(ev.Details["failed"])
			pushes, failed = pushes+n, failed+f
			m := ev.Start.Truncate(time.Minute)
			if minutes[m] || ev.Time.Truncate(time.Minute) != m || ev.Asset != "db" || (ev.Outcome == audit.OK) != (f == 0) || ev.Actor.Keys["primary"] == "" {
				t.Errorf("wal-push event: %+v", ev)
			}
			minutes[m] = true
		case audit.TypeBackup:
			backups++
			if ev.Snapshot == "" || ev.Outcome != audit.OK {
				t.Errorf("backup event: %+v", ev)
			}
		}
	}
	if pushes-failed != archived || len(minutes) == 0 || len(minutes) > 3 || backups != 1 {
		t.Fatalf("%d pushes in %d wal-push events, PostgreSQL archived %d; %d backups\n%+v", pushes, len(minutes), archived, backups, events)
	}
	if out := e.mustRun("audit", "verify", "--clock-offset", "2m"); !strings.Contains(out, "audit trail intact") {
		t.Fatalf("audit verify:\n%s", out)
	}
}

// sealFiles lists the audit seals a file repository holds.
func sealFiles(t *testing.T, repoDir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(repoDir, "audit"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestAuditExpireKeepsYoungSeals: expire removes no seal younger than
// audit.retention, and past it removes all but the newest of the chain,
// which still vouches for every event before it.
func TestAuditExpireKeepsYoungSeals(t *testing.T) {
	t.Parallel()
	e, _ := newAuditEnv(t)
	e.mustRun("repo", "init")
	e.mustRun("backup", "app")
	e.mustRun("backup", "app")
	before := len(sealFiles(t, e.repo))
	if before < 3 {
		t.Fatalf("%d seals in the primary after three actions", before)
	}
	e.mustRun("expire", "--repository", "primary")
	if n := len(sealFiles(t, e.repo)); n != before+1 {
		t.Fatalf("expire within the retention: %d seals, want %d (none removed, its own added)", n, before+1)
	}
	e.mustRun("expire", "--repository", "primary", "--dry-run", "--clock-offset", "9700h")
	if n := len(sealFiles(t, e.repo)); n != before+2 {
		t.Fatalf("dry run: %d seals, want %d", n, before+2)
	}
	e.mustRun("expire", "--repository", "primary", "--clock-offset", "9700h")
	if n := len(sealFiles(t, e.repo)); n != 2 {
		t.Fatalf("past the retention: %d seals, want 2 (the newest before, and the expire's own)", n)
	}
	var removed *audit.Event
	for _, ev := range e.auditEvents() {
		if ev.Type == audit.TypeDelete && ev.Details["object"] == "audit seals" {
			removed = &ev
		}
	}
	if removed == nil || removed.Details["seals"] != strconv.Itoa(before+1) || removed.Repository != "primary" {
		t.Fatalf("no delete event for the seals: %+v", removed)
	}
	if out := e.mustRun("audit", "verify"); !strings.Contains(out, "audit trail intact") {
		t.Fatalf("audit verify after the seals went:\n%s", out)
	}
}
