package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// TestRemoveKey: a retired key no longer opens the repository; the key
// this run opened with and the last key are refused; with key_remove in
// the policy's approvals, removal waits for approval; each removal is an
// audit event.
func TestRemoveKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "a.conf"), "a = 1\n", 0o600, time.Now())
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	oldKey, newKey := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	writePolicy := func(key, extra string) {
		t.Helper()
		policy := fmt.Sprintf(`state_dir: state
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: app
    kind: files
    paths: [%q]
    repositories: [primary]
%s`, e.repo, key, src, extra)
		if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keys := func() []struct {
		Key     string `json:"key"`
		Current bool   `json:"current"`
	} {
		t.Helper()
		var rows []struct {
			Key     string `json:"key"`
			Current bool   `json:"current"`
		}
		if err := json.Unmarshal([]byte(e.mustRun("repo", "keys", "primary", "--json")), &rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	writePolicy(oldKey, "")
	e.mustRun("repo", "init")
	e.mustRun("backup", "app")
	e.mustRun("repo", "add-key", "primary", "--key-file", newKey)
	rows := keys()
	if len(rows) != 2 || rows[0].Current == rows[1].Current {
		t.Fatalf("keys after add-key: %+v", rows)
	}
	var old, added string
	for _, r := range rows {
		if r.Current {
			old = r.Key
		} else {
			added = r.Key
		}
	}
	if r := e.run("repo", "remove-key", "primary", old); r.code == 0 || !strings.Contains(r.stderr, "this run opened") || !isOneLine(r.stderr) {
		t.Fatalf("removing the key in use: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("repo", "remove-key", "primary", "0000"); r.code == 0 || !strings.Contains(r.stderr, "no such key") {
		t.Fatalf("removing a key that is not there: exit %d: %s", r.code, r.stderr)
	}

	// Open with the new key and retire the old one: it opens nothing now.
	writePolicy(newKey, "")
	e.mustRun("repo", "remove-key", "primary", "keys/"+old)
	if rows := keys(); len(rows) != 1 || rows[0].Key != added || !rows[0].Current {
		t.Fatalf("keys after remove-key: %+v", rows)
	}
	if r := e.run("repo", "remove-key", "primary", added); r.code == 0 || !strings.Contains(r.stderr, "this run opened") {
		t.Fatalf("removing the last key: exit %d: %s", r.code, r.stderr)
	}
	writePolicy(oldKey, "")
	if r := e.run("snapshots", "app"); r.code == 0 {
		t.Fatalf("the retired key still opens the repository:\n%s", r.stdout)
	}

	// Under approvals, removal is a protected action.
	writePolicy(newKey, "")
	e.mustRun("repo", "add-key", "primary", "--key-file", oldKey)
	var readded string
	for _, r := range keys() {
		if !r.Current {
			readded = r.Key
		}
	}
	writePolicy(newKey, fmt.Sprintf(`approvals:
  allowed_signers: %s
  required: 2
  actions: [key_remove]
`, approvalKeys(t, t.TempDir(), []string{"alice", "bob"}, []string{"alice", "bob"})))
	if r := e.run("repo", "remove-key", "primary", readded); r.code != 3 || !requestID.MatchString(r.stderr) {
		t.Fatalf("remove-key under approvals: exit %d: %s", r.code, r.stderr)
	}
	if len(keys()) != 2 {
		t.Fatal("a removal waiting for approval removed the key")
	}
	var removals []string
	for _, ev := range e.auditEvents() {
		if ev.Type == "key-remove" {
			removals = append(removals, ev.Outcome+" "+ev.Details["key"])
		}
	}
	if !strings.Contains(strings.Join(removals, ","), "ok "+old) || !strings.Contains(strings.Join(removals, ","), "refused "+readded) {
		t.Fatalf("key-remove events: %v", removals)
	}
}
