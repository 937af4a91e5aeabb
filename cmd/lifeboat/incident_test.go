package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// newIncidentEnv is a policy with two files assets kept in a primary and a
// copy, whose retention keeps only the newest snapshot of the day, and a
// third asset whose directory is missing, so that its backup fails.
func newIncidentEnv(t *testing.T) (*env, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	srcs := map[string]string{}
	for _, name := range []string{"web-config", "uploads"} {
		src := filepath.Join(dir, "src-"+name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		srcs[name] = src
	}
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
  - name: offsite
    url: file://%s
    key_file: %s
assets:
  - name: web-config
    kind: files
    paths: [%s]
    repositories: [primary, offsite]
    retention: { daily: 1 }
  - name: gone
    kind: files
    paths: [%s]
    repositories: [primary]
  - name: uploads
    kind: files
    paths: [%s]
    repositories: [primary, offsite]
    retention: { daily: 1 }
`, filepath.Join(dir, "state"), e.repo, filepath.Join(dir, "repo.key"), filepath.Join(dir, "offsite"), filepath.Join(dir, "repo.key"),
		srcs["web-config"], filepath.Join(dir, "no-such-dir"), srcs["uploads"])
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init")
	return e, srcs
}

type pinnedSnapshotJSON struct {
	ID         string `json:"id"`
	Asset      string `json:"asset"`
	Repository string `json:"repository"`
	Pin        *struct {
		Reason string `json:"reason"`
		By     string `json:"by"`
	} `json:"pin"`
}

func (e *env) pinnedSnapshots(args ...string) []pinnedSnapshotJSON {
	e.t.Helper()
	var rows []pinnedSnapshotJSON
	if err := json.Unmarshal([]byte(e.mustRun(append([]string{"snapshots", "--json"}, args...)...)), &rows); err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// An incident snapshot of every asset: a failing asset does not stop the
// others and is named; each new snapshot is held, with its reason and
// actor, in the primary and the copy; expire, which removes every other
// older snapshot, keeps it; the report lists the hold.
func TestIncidentSnapshotSurvivesExpire(t *testing.T) {
	t.Parallel()
	e, srcs := newIncidentEnv(t)
	write := func(round int) {
		for name, src := range srcs {
			if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte(fmt.Sprintf("%s round %d\n", name, round)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r := e.run("backup", "web-config", "--pin"); r.code != 2 || !strings.Contains(r.stderr, "--pin needs --reason") {
		t.Fatalf("--pin without --reason: exit %d, %s", r.code, r.stderr)
	}
	if r := e.run("backup", "web-config", "--all"); r.code != 2 {
		t.Fatalf("an ASSET with --all: exit %d, %s", r.code, r.stderr)
	}
	if len(e.pinnedSnapshots()) != 0 {
		t.Fatal("a refused backup stored a snapshot")
	}
	write(1)
	e.mustRun("backup", "web-config")
	write(2)
	const reason = "INC-4711 suspected ransomware, held for forensics by the incident commander"
	r := e.run("backup", "--all", "--pin", "--reason", reason)
	if r.code != 1 || !strings.Contains(r.stderr, "1 of 3 assets failed: gone") {
		t.Fatalf("backup --all with a failing asset: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, name := range []string{"web-config", "uploads"} {
		if !strings.Contains(r.stdout, "incident snapshot ") || !strings.Contains(r.stdout, " of "+name+" held in primary, offsite: "+reason) {
			t.Fatalf("no hold reported for %s:\n%s", name, r.stdout)
		}
	}
	held := map[string]string{} // asset -> held snapshot
	for _, repository := range []string{"primary", "offsite"} {
		for _, s := range e.pinnedSnapshots("--repository", repository) {
			if s.Pin == nil {
				continue
			}
			if s.Pin.Reason != reason || !strings.Contains(s.Pin.By, "@") {
				t.Fatalf("hold in %s: reason %q by %q", repository, s.Pin.Reason, s.Pin.By)
			}
			if prev, ok := held[s.Asset]; ok && prev != s.ID {
				t.Fatalf("%s: %s held in one repository, %s in another", s.Asset, prev, s.ID)
			}
			held[s.Asset] = s.ID
		}
	}
	if len(held) != 2 {
		t.Fatalf("held snapshots: %v, want one of web-config and one of uploads", held)
	}
	// Two later backups: retention (the newest of the day) would now
	// remove every snapshot but the last.
	for round := 3; round <= 4; round++ {
		write(round)
		e.mustRun("backup", "web-config")
		e.mustRun("backup", "uploads")
	}
	e.mustRun("expire")
	for _, repository := range []string{"primary", "offsite"} {
		kept := map[string][]string{}
		for _, s := range e.pinnedSnapshots("--repository", repository) {
			kept[s.Asset] = append(kept[s.Asset], s.ID)
		}
		for asset, id := range held {
			if len(kept[asset]) != 2 || kept[asset][0] != id {
				t.Fatalf("%s after expire in %s: %v, want the held %s and the newest", asset, repository, kept[asset], id[:8])
			}
		}
	}
	if out := e.mustRun("snapshots", "web-config"); !strings.Contains(out, "held: "+held["web-config"][:8]+" in primary since ") || !strings.Contains(out, ": "+reason+"\n") {
		t.Fatalf("snapshots does not show the hold:\n%s", out)
	}
	// The held snapshot still restores, with what it held.
	to := filepath.Join(t.TempDir(), "r")
	e.mustRun("restore", "web-config", "--snapshot", held["web-config"][:8], "--to", to)
	got, err := os.ReadFile(filepath.Join(to, srcs["web-config"], "f.txt"))
	if err != nil || string(got) != "web-config round 2\n" {
		t.Fatalf("restored incident snapshot: %q, %v", got, err)
	}
	// The DR report (its runbook) and the audit trail list the hold.
	if out := e.mustRun("report"); !strings.Contains(out, "| `"+held["uploads"][:8]+"` | offsite |") || !strings.Contains(out, "INC-4711") {
		t.Fatalf("the report does not list the hold:\n%s", out)
	}
	if out := e.mustRun("audit", "--json"); !strings.Contains(out, "INC-4711") {
		t.Fatalf("the audit trail does not record the hold:\n%s", out)
	}
}
