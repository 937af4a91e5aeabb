package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// approvalKeys makes an SSH key for each name in dir (ed25519: an
// sk-ssh-ed25519 key needs a FIDO authenticator to be made, and
// ssh-keygen verifies both alike) and returns an allowed_signers file
// listing those in listed as <name>@example.com.
func approvalKeys(t *testing.T, dir string, names, listed []string) string {
	t.Helper()
	var allowed strings.Builder
	for _, n := range names {
		key := filepath.Join(dir, n)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", n, "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range listed {
			if l == n {
				f := strings.Fields(string(pub))
				fmt.Fprintf(&allowed, "%s@example.com %s %s\n", n, f[0], f[1])
			}
		}
	}
	path := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(path, []byte(allowed.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var requestID = regexp.MustCompile(`request ([0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}) (created|already open)`)

type approvalRow struct {
	ID         string            `json:"id"`
	Action     string            `json:"action"`
	Asset      string            `json:"asset"`
	Args       map[string]string `json:"args"`
	Requester  string            `json:"requester"`
	Signatures int               `json:"signatures"`
	Approvers  []string          `json:"approvers"`
	Status     string            `json:"status"`
}

// TestApprovalOfAProductionRestore: a production restore without approval
// exits 3 and leaves a request; it runs once with two approvals other than
// the requester's, and never again.
func TestApprovalOfAProductionRestore(t *testing.T) {
	t.Parallel()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	// The requester's own key is listed: its signature must still not count.
	signers := approvalKeys(t, keys, []string{"alice", "bob", "mallory", me.Username}, []string{"alice", "bob", me.Username})
	e := startEnv(t, false, func(e *env) {
		e.assetExtra = fmt.Sprintf(`    production: true
approvals:
  allowed_signers: %s
  required: 2
  actions: [restore_production, unpin, expire]
`, signers)
	})
	e.sql("create table ledger (id int primary key)")
	e.sql("insert into ledger select generate_series(1, 100)")
	e.mustRun("backup", "db")
	e.switchAndWait()

	target := filepath.Join(t.TempDir(), "restored")
	restore := []string{"restore", "db", "--to", target, "--archive-off", "--production"}
	r := e.run(restore...)
	m := requestID.FindStringSubmatch(r.stderr)
	if r.code != 3 || m == nil || m[2] != "created" {
		t.Fatalf("production restore without approval: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	id := m[1]
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a refused restore wrote %s: %v", target, err)
	}
	// Asked again, the same open request is named, not a second one.
	if r := e.run(restore...); r.code != 3 || !strings.Contains(r.stderr, id+" already open") {
		t.Fatalf("asked again: exit %d: %s", r.code, r.stderr)
	}
	// A restore onto the asset's own data directory is production too.
	if r := e.run("restore", "db", "--to", e.pg.DataDir, "--archive-off"); r.code != 3 || !strings.Contains(r.stderr, "restore_production of db needs approval") {
		t.Fatalf("restore onto pgdata: exit %d: %s", r.code, r.stderr)
	}
	// A restore elsewhere, without --production, needs none.
	e.mustRun("restore", "db", "--to", filepath.Join(t.TempDir(), "scratch"), "--archive-off")

	rows := func() map[string]approvalRow {
		t.Helper()
		var rs []approvalRow
		if err := json.Unmarshal([]byte(e.mustRun("approvals", "--json", "--all")), &rs); err != nil {
			t.Fatal(err)
		}
		out := map[string]approvalRow{}
		for _, r := range rs {
			out[r.ID] = r
		}
		return out
	}
	if row := rows()[id]; row.Action != "restore_production" || row.Asset != "db" || row.Args["to"] != target ||
		row.Args["production"] != "true" || !strings.HasPrefix(row.Requester, me.Username+"(uid ") || row.Status != "open" {
		t.Fatalf("approvals lists %+v", row)
	}
	if out := e.mustRun("approvals", "--show", id); !strings.Contains(out, `arg "to" "`+target+`"`) {
		t.Fatalf("approvals --show:\n%s", out)
	}
	approved := append(restore, "--approval", id)
	refused := func(what, want string, args ...string) {
		t.Helper()
		r := e.run(args...)
		if r.code == 0 || r.code == 3 || !strings.Contains(r.stderr, want) {
			t.Fatalf("%s: exit %d, want a refusal saying %q:\n%s", what, r.code, want, r.stderr)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("%s: the restore wrote %s", what, target)
		}
	}
	refused("no signature", "has 0 of the 2 approvals", approved...)
	e.mustRun("approve", id, "--key", filepath.Join(keys, "alice"))
	refused("one signature of two", "has 1 of the 2 approvals", approved...)
	refused("the requester approving", "requester's", "approve", id, "--key", filepath.Join(keys, me.Username))
	refused("a key outside allowed_signers", "is not in "+signers, "approve", id, "--key", filepath.Join(keys, "mallory"))
	if row := rows()[id]; row.Signatures != 1 || strings.Join(row.Approvers, ",") != "alice@example.com" {
		t.Fatalf("after refused approvals: %+v", row)
	}
	// Another request, approved by both, does not stand for this one.
	other := filepath.Join(t.TempDir(), "other")
	r = e.run("restore", "db", "--to", other, "--archive-off", "--production")
	m = requestID.FindStringSubmatch(r.stderr)
	if r.code != 3 || m == nil {
		t.Fatalf("second request: exit %d: %s", r.code, r.stderr)
	}
	e.mustRun("approve", m[1], "--key", filepath.Join(keys, "alice"))
	e.mustRun("approve", m[1], "--key", filepath.Join(keys, "bob"))
	refused("another request's approval", "approval request "+m[1]+" is for", append(restore, "--approval", m[1])...)

	// Bob signs elsewhere, the text approvals --show prints.
	text := filepath.Join(t.TempDir(), "request.txt")
	if err := os.WriteFile(text, []byte(e.mustRun("approvals", "--show", id)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-Y", "sign", "-n", "lifeboat-approval", "-f", filepath.Join(keys, "bob"), text).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v: %s", err, out)
	}
	e.mustRun("approve", id, "--signature", text+".sig")
	if row := rows()[id]; row.Status != "approved" || strings.Join(row.Approvers, ",") != "alice@example.com,bob@example.com" {
		t.Fatalf("approved: %+v", row)
	}
	refused("expired", "expired at", append(approved, "--clock-offset", "25h")...)
	refused("another target", "this run asks for", "restore", "db", "--to", target+"2", "--archive-off", "--production", "--approval", id)

	e.mustRun(approved...)
	if _, err := os.Stat(filepath.Join(target, "PG_VERSION")); err != nil {
		t.Fatalf("the approved restore did not restore: %v", err)
	}
	if err := os.RemoveAll(target); err != nil {
		t.Fatal(err)
	}
	refused("used", "used already", approved...)
	// Someone who may delete removes the use mark: this host remembers.
	if err := os.Remove(filepath.Join(e.repo, "approvals", id, "used")); err != nil {
		t.Fatal(err)
	}
	refused("used, mark deleted", "used on this host before", approved...)

	// Unpin is protected; a dry-run expire is not.
	snap := e.snapshots()[0].ID
	e.mustRun("pin", snap, "--reason", "audit hold")
	if r := e.run("unpin", snap); r.code != 3 || !strings.Contains(r.stderr, "unpin of db needs approval") {
		t.Fatalf("unpin without approval: exit %d: %s", r.code, r.stderr)
	}
	e.mustRun("expire", "--dry-run")

	// Every step of the approval is an audit event naming the request.
	count := map[string]int{}
	for _, ev := range e.auditEvents() {
		if ev.Request == id {
			count[ev.Type+" "+ev.Outcome]++
		}
	}
	for _, want := range []string{"approval-requested ok", "approval-granted ok", "approval-used ok", "approval-refused refused", "restore refused", "restore ok"} {
		if count[want] == 0 {
			t.Errorf("no %q event for request %s: %v", want, id, count)
		}
	}
	if count["approval-used ok"] != 1 {
		t.Errorf("the request was used %d times, want once: %v", count["approval-used ok"], count)
	}
}
